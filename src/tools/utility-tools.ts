/**
 * Small built-in tools that agent.yaml files can name (the bundled team in `agents/` does): each computes
 * from its arguments alone, never touching the network, files or processes.
 */
import { z } from "zod";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import { evaluateArithmetic, MAX_EXPRESSION_LENGTH } from "./arithmetic.js";
import type { Tool } from "./tool.js";
import { defineTool } from "./define-tool.js";

/** The longest text `word_count`, `json_check` and `diff_stats` take, in characters. */
const MAX_TOOL_TEXT_LENGTH = 1_000_000;
/** The most keys or files a tool lists. */
const MAX_LISTED = 100;

const text = (what: string) => z.string().max(MAX_TOOL_TEXT_LENGTH).describe(what);

/** `current_time`: the time now, in UTC and, with `timeZone`, in that IANA zone. */
export function currentTimeTool(clock: Clock = systemClock): Tool {
  return defineTool({
    name: "current_time",
    description: "The current date and time: ISO 8601 in UTC, and written out in a time zone (default UTC).",
    parameters: z.strictObject({ timeZone: z.string().min(1).max(64).optional().describe('an IANA time zone, e.g. "Europe/Paris"') }),
    execute: ({ timeZone = "UTC" }) => {
      const now = new Date(clock.now());
      let local: string;
      try {
        local = new Intl.DateTimeFormat("en-GB", { dateStyle: "full", timeStyle: "long", timeZone }).format(now);
      } catch {
        throw new BridgeError("CONFIG", `timeZone: unknown time zone ${JSON.stringify(timeZone)}`, { field: "timeZone" });
      }
      return { iso: now.toISOString(), timeZone, local };
    },
  });
}

/** `calculate`: an arithmetic expression's value. */
export function calculateTool(): Tool {
  return defineTool({
    name: "calculate",
    description: "Evaluate an arithmetic expression exactly as written: + - * / % ^, parentheses, pi, e, sqrt, abs, round, floor, ceil, min, max.",
    parameters: z.strictObject({ expression: z.string().min(1).max(MAX_EXPRESSION_LENGTH).describe('e.g. "(1200 * 0.15) / 4"') }),
    execute: ({ expression }) => ({ expression, result: evaluateArithmetic(expression) }),
  });
}

/** `word_count`: words, characters and lines of a text. */
export function wordCountTool(): Tool {
  return defineTool({
    name: "word_count",
    description: "Count the words, characters and lines of a text (e.g. to keep copy within a length).",
    parameters: z.strictObject({ text: text("the text to count") }),
    execute: ({ text: counted }) => {
      const trimmed = counted.trim();
      return {
        words: trimmed === "" ? 0 : trimmed.split(/\s+/u).length,
        characters: [...counted].length,
        lines: counted === "" ? 0 : counted.split(/\r?\n/).length,
      };
    },
  });
}

function jsonTypeOf(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}

/** `json_check`: whether a text is JSON, and its shape. */
export function jsonCheckTool(): Tool {
  return defineTool({
    name: "json_check",
    description: "Check that a text is valid JSON; say where it is not, or what its top-level value is (type, keys or length).",
    parameters: z.strictObject({ text: text("the JSON text to check") }),
    execute: ({ text: json }) => {
      let value: unknown;
      try {
        value = JSON.parse(json);
      } catch (error) {
        return { valid: false, error: (error as Error).message };
      }
      const type = jsonTypeOf(value);
      if (type === "object") return { valid: true, type, keys: Object.keys(value as object).slice(0, MAX_LISTED) };
      if (type === "array") return { valid: true, type, length: (value as unknown[]).length };
      return { valid: true, type };
    },
  });
}

/** `diff_stats`: the files of a unified diff and the lines each adds and removes. */
export function diffStatsTool(): Tool {
  return defineTool({
    name: "diff_stats",
    description: "Summarise a unified diff (git diff): the files it changes and the lines each adds and removes.",
    parameters: z.strictObject({ diff: text("the unified diff") }),
    execute: ({ diff }) => {
      const files: { path: string; added: number; removed: number }[] = [];
      // Inside a hunk, its header's line counts say which lines are its own: a removed line `-- x` reads like a `---` header.
      let oldLeft = 0;
      let newLeft = 0;
      for (const line of diff.split(/\r?\n/)) {
        const file = files.at(-1);
        if (oldLeft > 0 || newLeft > 0) {
          if (line.startsWith("\\")) continue; // "\ No newline at end of file"
          if (!line.startsWith("+")) oldLeft -= 1;
          if (!line.startsWith("-")) newLeft -= 1;
          if (file !== undefined && line.startsWith("+")) file.added += 1;
          if (file !== undefined && line.startsWith("-")) file.removed += 1;
          continue;
        }
        const header = /^\+\+\+ (?:b\/)?(.+?)\t?$/.exec(line);
        const hunk = /^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@/.exec(line);
        if (header !== null) files.push({ path: header[1]!, added: 0, removed: 0 });
        else if (hunk !== null) {
          oldLeft = Number(hunk[1] ?? 1);
          newLeft = Number(hunk[2] ?? 1);
        }
      }
      return {
        files: files.slice(0, MAX_LISTED),
        added: files.reduce((sum, file) => sum + file.added, 0),
        removed: files.reduce((sum, file) => sum + file.removed, 0),
      };
    },
  });
}

/** Every utility tool: `current_time` (on `clock`), `calculate`, `word_count`, `json_check`, `diff_stats`. */
export function utilityTools(clock: Clock = systemClock): Tool[] {
  return [currentTimeTool(clock), calculateTool(), wordCountTool(), jsonCheckTool(), diffStatsTool()];
}
