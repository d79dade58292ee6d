/**
 * The utility tools the bundled team names: what each computes, their schemas, and their bad arguments.
 */
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { BridgeError, calculateTool, currentTimeTool, diffStatsTool, jsonCheckTool, utilityTools, wordCountTool } from "../../src/index.js";
import type { Tool, ToolContext } from "../../src/tools/tool.js";

const CONTEXT: ToolContext = {
  session: { sessionId: "s-1", agentId: "orchestrator", metadata: {} },
  agentId: "orchestrator",
  requestId: "r-1",
  callId: "call-1",
  signal: new AbortController().signal,
  ask: () => Promise.reject(new BridgeError("CONFIG", "no bus in this test")),
};

/** Parses the model's arguments as the loop does, then runs the tool. */
async function call(tool: Tool, args: unknown): Promise<unknown> {
  return tool.execute(tool.parse(args), CONTEXT);
}

describe("calculate", () => {
  it("evaluates with precedence, right-associative powers, signs under powers, functions and constants", async () => {
    const tool = calculateTool();
    const results = [];
    for (const expression of ["1 + 2 * 3", "2 ^ 3 ^ 2", "-2^2", "(1200 * 0.15) / 4", "max(1, sqrt(16), 3) % 3", "round(pi * 100) / 100", "1.5e3 + .5"]) {
      results.push(((await call(tool, { expression })) as { result: number }).result);
    }
    expect(results).toEqual([7, 512, -4, 45, 1, 3.14, 1500.5]);
  });

  it("refuses what is not arithmetic with CONFIG saying where, and never evaluates code", async () => {
    const tool = calculateTool();
    const failures = await Promise.all(
      ["2 +", "1 2", "process.exit(1)", "1 / 0", "(".repeat(150) + "1" + ")".repeat(150)].map((expression) =>
        Promise.resolve()
          .then(() => call(tool, { expression }))
          .then(
            () => "answered",
            (error: BridgeError) => `${error.type} ${error.message}`,
          ),
      ),
    );
    expect(failures).toEqual([
      "CONFIG expression: expected a number, found the end",
      'CONFIG expression: unexpected "2" at character 3',
      'CONFIG expression: unknown name "process" (known: pi, e, sqrt, abs, round, floor, ceil, min, max)',
      "CONFIG expression: the result is not a finite number (Infinity): a division by zero?",
      "CONFIG expression: nested more than 100 deep",
    ]);
  });

  it("describes its arguments as JSON Schema and refuses missing or unknown ones naming the field", () => {
    const tool = calculateTool();
    expect(tool.inputSchema).toEqual({
      type: "object",
      properties: { expression: { type: "string", minLength: 1, maxLength: 1000, description: 'e.g. "(1200 * 0.15) / 4"' } },
      required: ["expression"],
      additionalProperties: false,
    });
    expect(() => tool.parse({})).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "expression" }) }));
    expect(() => tool.parse({ expression: "1", code: "x" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "code" }) }),
    );
  });
});

describe("current_time", () => {
  it("reads the clock, in UTC and in the time zone asked for; an unknown zone is CONFIG", async () => {
    const clock = new SimulatedClock();
    clock.set(Date.UTC(2026, 10, 30, 13, 5, 9));
    const tool = currentTimeTool(clock);

    // How the date is written out is ICU's (a comma after the weekday or not): the hours and the zone are checked.
    expect(await call(tool, {})).toEqual({
      iso: "2026-11-30T13:05:09.000Z",
      timeZone: "UTC",
      local: expect.stringMatching(/^Monday,? 30 November 2026 at 13:05:09 UTC$/),
    });
    expect(await call(tool, { timeZone: "Asia/Tokyo" })).toMatchObject({
      iso: "2026-11-30T13:05:09.000Z",
      local: expect.stringMatching(/^Monday,? 30 November 2026 at 22:05:09 /),
    });
    await expect(Promise.resolve().then(() => call(tool, { timeZone: "Mars/Olympus" }))).rejects.toMatchObject({
      type: "CONFIG",
      message: 'timeZone: unknown time zone "Mars/Olympus"',
    });
  });
});

describe("word_count, json_check, diff_stats", () => {
  it("counts words, characters (not UTF-16 units) and lines", async () => {
    expect(await call(wordCountTool(), { text: "Save  changes\nnow 🙂" })).toEqual({ words: 4, characters: 19, lines: 2 });
    expect(await call(wordCountTool(), { text: "   " })).toEqual({ words: 0, characters: 3, lines: 1 });
  });

  it("says whether a text is JSON and what its top level is", async () => {
    expect(await call(jsonCheckTool(), { text: '{"id": 1, "name": "x"}' })).toEqual({ valid: true, type: "object", keys: ["id", "name"] });
    expect(await call(jsonCheckTool(), { text: "[1, 2, 3]" })).toEqual({ valid: true, type: "array", length: 3 });
    expect(await call(jsonCheckTool(), { text: '{"id": 1,}' })).toMatchObject({ valid: false, error: expect.any(String) });
  });

  it("counts a diff's lines per file by its hunk headers, so a removed '-- comment' is not a file header", async () => {
    const diff = [
      "diff --git a/src/api.ts b/src/api.ts",
      "--- a/src/api.ts",
      "+++ b/src/api.ts",
      "@@ -1,3 +1,4 @@",
      " import x",
      "-old()",
      "+next()",
      "+more()",
      " end",
      "diff --git a/db/schema.sql b/db/schema.sql",
      "--- a/db/schema.sql",
      "+++ b/db/schema.sql",
      "@@ -10,2 +10,1 @@",
      "--- a removed SQL comment",
      " kept",
      "\\ No newline at end of file",
    ].join("\n");

    expect(await call(diffStatsTool(), { diff })).toEqual({
      files: [
        { path: "src/api.ts", added: 2, removed: 1 },
        { path: "db/schema.sql", added: 0, removed: 1 },
      ],
      added: 2,
      removed: 2,
    });
  });

  it("names every utility tool once", () => {
    expect(utilityTools().map((tool) => tool.name)).toEqual(["current_time", "calculate", "word_count", "json_check", "diff_stats"]);
  });
});
