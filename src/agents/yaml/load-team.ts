/**
 * Loading a team: every agent.yaml of a folder, read with `yaml`, each field checked against the runtime's
 * tools and providers. Every problem is a CONFIG error naming its file, line and field
 * (`agents/backend.yaml:7: capabilities[0].tools[1]: unknown tool "deploy" (known: …)`); a folder with several
 * problems names them all, one per line.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { z } from "zod";
import { BridgeError } from "../../errors.js";
import type { ConversationSettings } from "../agent.js";
import { agentFileSchema, fieldsAt, type AgentFile, type AgentFileContext, type RoutingSetting } from "./agent-file.js";
import { positionOf } from "./source-positions.js";
import { yamlPackage } from "./yaml-package.js";

/** The largest agent.yaml read, in bytes: a prompt is text, not a data set. */
export const MAX_AGENT_FILE_BYTES = 256 * 1024;
/** The file names read from a team folder. */
const AGENT_FILE_NAME = /^[^.].*\.ya?ml$/;

/** One capability of an agent: a prompt for the model and the tools it brings. */
export interface CapabilitySpec {
  name: string;
  /** Trimmed; empty when the file gives none. */
  prompt: string;
  /** Tool names, each known to the runtime, without repeats. */
  tools: string[];
}

/** One agent of a team, as its file describes it, checked. */
export interface AgentSpec {
  /** Its name: the runtime id. */
  id: string;
  /** The file it came from, as the folder was named: `agents/backend.yaml`. */
  file: string;
  /** The line of its `name:`. */
  line: number;
  /** `default: true`. */
  isDefault: boolean;
  description?: string;
  provider?: string;
  model?: string;
  systemPrompt?: string;
  routing: RoutingSetting;
  capabilities: CapabilitySpec[];
  /** The `session:` block. */
  conversation: ConversationSettings;
}

/** The agents of one folder, and which of them is the default agent. */
export interface AgentTeam {
  /** The folder, as it was named. */
  dir: string;
  /** In file-name order. */
  agents: AgentSpec[];
  defaultAgentId: string;
  /** Why it is the default: `default: true`, or the only agent of the folder. */
  defaultReason: string;
}

/** One problem of a team folder. `line` is missing for a problem of the folder as a whole. */
export interface AgentFileIssue {
  file: string;
  line?: number;
  column?: number;
  /** The field, as `capabilities[0].tools[1]`; none for a YAML syntax error or a folder problem. */
  field?: string;
  message: string;
}

/** What a team's files are checked against. */
export interface LoadTeamOptions extends AgentFileContext {
  /** Ids that agents of the folder may not take, with what holds each (`the built-in agent`). */
  takenIds?: ReadonlyMap<string, string>;
}

/** `file:line: field: message`. */
export function formatIssue(issue: AgentFileIssue): string {
  const where = issue.line === undefined ? issue.file : `${issue.file}:${issue.line}`;
  return issue.field === undefined ? `${where}: ${issue.message}` : `${where}: ${issue.field}: ${issue.message}`;
}

/** The CONFIG error of these problems: all of them in the message, the first one's place in the details. */
function teamError(issues: AgentFileIssue[]): BridgeError {
  const [first] = issues;
  return new BridgeError("CONFIG", issues.map(formatIssue).join("\n"), { ...first, issues });
}

/** `capabilities[0].tools[1]`. */
function fieldName(path: readonly PropertyKey[]): string {
  return path.reduce<string>((name, step) => (typeof step === "number" ? `${name}[${step}]` : name === "" ? String(step) : `${name}.${String(step)}`), "");
}

/** A value as a message quotes it. */
function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a mapping";
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}…"` : text;
}

const EXPECTED: Record<string, string> = {
  string: "text",
  number: "a number",
  int: "a whole number",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
};

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce<unknown>((node, step) => (typeof node === "object" && node !== null ? (node as Record<PropertyKey, unknown>)[step] : undefined), value);
}

/** A zod issue as a person reads it, with the value the file holds there. */
function messageOf(issue: z.core.$ZodIssue, value: unknown): string {
  if (issue.code === "invalid_type") {
    return value === undefined ? "missing (required)" : `expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeValue(value)}`;
  }
  if (issue.code === "invalid_value") return `expected one of ${issue.values.map(String).join(", ")} (got ${describeValue(value)})`;
  return issue.message;
}

/** The problems of a zod failure, each placed in the file. */
function schemaIssues(
  error: z.ZodError,
  file: string,
  place: (path: readonly PropertyKey[], key?: string) => { line: number; column: number },
  value: unknown,
): AgentFileIssue[] {
  return error.issues.flatMap((issue): AgentFileIssue[] => {
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({
        file,
        ...place(issue.path, key),
        field: fieldName([...issue.path, key]),
        message: `unknown field ${JSON.stringify(key)} (fields: ${fieldsAt(issue.path).join(", ")})`,
      }));
    }
    return [{ file, ...place(issue.path), field: fieldName(issue.path) || "(file)", message: messageOf(issue, valueAt(value, issue.path)) }];
  });
}

function firstLine(message: string): string {
  return (message.split("\n")[0] ?? message).replace(/ at line \d+, column \d+:?$/, "");
}

function specOf(parsed: AgentFile, file: string, line: number): AgentSpec {
  const { session } = parsed;
  return {
    id: parsed.name,
    file,
    line,
    isDefault: parsed.default === true,
    ...(parsed.description === undefined ? {} : { description: parsed.description }),
    ...(parsed.provider === undefined ? {} : { provider: parsed.provider }),
    ...(parsed.model === undefined ? {} : { model: parsed.model }),
    ...(parsed.system_prompt === undefined || parsed.system_prompt === "" ? {} : { systemPrompt: parsed.system_prompt }),
    routing: parsed.routing,
    capabilities: parsed.capabilities.map((capability) => ({ name: capability.name, prompt: capability.prompt, tools: [...new Set(capability.tools)] })),
    conversation: {
      ...(session?.trigger === undefined ? {} : { trigger: session.trigger }),
      ...(session?.isolation === undefined ? {} : { isolation: session.isolation }),
      ...(session?.idle_timeout_minutes === undefined ? {} : { idleTimeoutMinutes: session.idle_timeout_minutes }),
      ...(session?.history_window === undefined ? {} : { historyWindow: session.history_window }),
    },
  };
}

/** One file's agent, or its problems. */
export type ParsedAgentFile =
  { spec: AgentSpec; issues?: undefined; lineOf: (path: readonly PropertyKey[]) => number } | { spec?: undefined; issues: AgentFileIssue[] };

/** Parses and checks the text of one agent.yaml; `file` is how its problems name it. */
export function parseAgentFile(file: string, text: string, context: AgentFileContext): ParsedAgentFile {
  const { LineCounter, parseDocument } = yamlPackage();
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (document.errors.length > 0) {
    return {
      issues: document.errors.map((error) => {
        const { line, col } = lines.linePos(error.pos[0]);
        const message = error.code === "MULTIPLE_DOCS" ? "one agent per file: this file holds several YAML documents (---)" : firstLine(error.message);
        return { file, line, column: col, message: `invalid YAML: ${message}` };
      }),
    };
  }
  if (document.contents === null) return { issues: [{ file, line: 1, column: 1, field: "(file)", message: "empty: an agent file needs at least a name" }] };
  const value: unknown = document.toJS({ maxAliasCount: 100 });
  const parsed = agentFileSchema(context).safeParse(value);
  const place = (path: readonly PropertyKey[], key?: string) => positionOf(document, lines, path, key);
  if (!parsed.success) return { issues: schemaIssues(parsed.error, file, place, value).sort((a, b) => (a.line ?? 0) - (b.line ?? 0)) };
  return { spec: specOf(parsed.data, file, place(["name"]).line), lineOf: (path) => place(path).line };
}

/** The agent files (`*.yaml`, `*.yml`) of a folder, in name order; a folder that is missing or not one is CONFIG. */
export function listAgentFiles(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === "ENOENT" ? "no such folder" : code === "ENOTDIR" ? "not a folder" : `cannot read: ${(error as Error).message}`;
    throw new BridgeError("CONFIG", `${dir}: ${reason}`, { file: dir });
  }
  return names
    .filter((name) => AGENT_FILE_NAME.test(name))
    .sort()
    .map((name) => join(dir, name))
    .filter((file) => statSync(file).isFile());
}

function readAgentFile(file: string): string | AgentFileIssue {
  const { size } = statSync(file);
  if (size > MAX_AGENT_FILE_BYTES) return { file, message: `too large: ${size} bytes (at most ${MAX_AGENT_FILE_BYTES})` };
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    return { file, message: `cannot read: ${(error as Error).message}` };
  }
}

/** The team's default agent: the one marked `default: true`, or the folder's only agent. */
function chooseDefault(dir: string, agents: AgentSpec[]): { defaultAgentId: string; defaultReason: string } | AgentFileIssue {
  const marked = agents.find((agent) => agent.isDefault);
  if (marked !== undefined) return { defaultAgentId: marked.id, defaultReason: "default: true" };
  if (agents.length === 1) return { defaultAgentId: agents[0]!.id, defaultReason: `the only agent of ${dir}` };
  return { file: dir, message: `no default agent: mark one with default: true (agents: ${agents.map((agent) => agent.id).join(", ")})` };
}

/**
 * Loads every `*.yaml` (and `*.yml`) of `dir` as one agent each. Fails with CONFIG when the folder is missing,
 * holds no agent file, or any file has a problem: YAML syntax, an unknown field, a bad value, an unknown tool or
 * provider, an agent name used twice or taken, two defaults or none among several agents.
 */
export function loadAgentTeam(dir: string, options: LoadTeamOptions): AgentTeam {
  const files = listAgentFiles(dir);
  if (files.length === 0) throw new BridgeError("CONFIG", `${dir}: no agent files (*.yaml) in this folder`, { file: dir });
  const issues: AgentFileIssue[] = [];
  const agents: AgentSpec[] = [];
  for (const file of files) {
    const text = readAgentFile(file);
    if (typeof text !== "string") {
      issues.push(text);
      continue;
    }
    const parsed = parseAgentFile(file, text, options);
    if (parsed.issues !== undefined) {
      issues.push(...parsed.issues);
      continue;
    }
    const { spec, lineOf } = parsed;
    const twin = agents.find((agent) => agent.id === spec.id);
    const takenBy = options.takenIds?.get(spec.id);
    const defaultAgent = spec.isDefault ? agents.find((agent) => agent.isDefault) : undefined;
    if (twin !== undefined) {
      issues.push({ file, line: spec.line, field: "name", message: `duplicate agent ${JSON.stringify(spec.id)} (also in ${twin.file}:${twin.line})` });
    } else if (takenBy !== undefined) {
      issues.push({ file, line: spec.line, field: "name", message: `agent ${JSON.stringify(spec.id)} exists already (${takenBy})` });
    } else if (defaultAgent !== undefined) {
      issues.push({
        file,
        line: lineOf(["default"]),
        field: "default",
        message: `${defaultAgent.id} (${defaultAgent.file}:${defaultAgent.line}) is the default agent already`,
      });
    } else {
      agents.push(spec);
    }
  }
  if (issues.length > 0) throw teamError(issues);
  const chosen = chooseDefault(dir, agents);
  if ("message" in chosen) throw teamError([chosen]);
  return { dir, agents, ...chosen };
}
