/**
 * What passes between the tool loop and a provider: the tools a model may call, the calls it made, their
 * results, and the rounds of one prompt so far. Each provider maps these onto its API's own format (OpenAI
 * `tools` / `tool_calls` / role `tool`, Anthropic `tool_use` / `tool_result`, Gemini `functionDeclarations` /
 * `functionCall` / `functionResponse`).
 */
import { messageOf } from "../errors.js";
import type { Tool } from "./tool.js";

/** What a provider sends of a tool: its name, description and parameters as JSON Schema. */
export type ToolDeclaration = Pick<Tool, "name" | "description" | "inputSchema">;

/** One call the model asked for. */
export interface ToolCall {
  /** The call's id: OpenAI `tool_calls[].id`, Anthropic `tool_use.id`, Gemini `functionCall.id` (or one troupe made up when Gemini gives none). */
  callId: string;
  /** The tool's name as the model wrote it (it may name no registered tool). */
  name: string;
  /** The arguments as JSON text: as the model wrote them (OpenAI), or as troupe serialized them (Anthropic, Gemini, mock). */
  argumentsJson: string;
}

/** The id troupe gives a call the model gave none (Gemini, a mock step): `call_<round>_<n>`, `index` counting from 0 and n from 1. */
export function fallbackCallId(round: number, index: number): string {
  return `call_${round}_${index + 1}`;
}

/** A call's arguments parsed, or why they could not be. */
export type ParsedArguments = { ok: true; value: unknown } | { ok: false; message: string };

/** The model's arguments as a value. No arguments at all (`""`, as OpenAI sends for a tool without parameters) is `{}`. */
export function parseArguments(argumentsJson: string): ParsedArguments {
  if (argumentsJson.trim() === "") return { ok: true, value: {} };
  try {
    return { ok: true, value: JSON.parse(argumentsJson) as unknown };
  } catch (error) {
    return { ok: false, message: `the arguments are not JSON (${messageOf(error)}): ${argumentsJson.slice(0, 200)}` };
  }
}

/**
 * A call's arguments as the object that Anthropic (`tool_use.input`) and Gemini (`functionCall.args`) take
 * back in the next round: `{}` when the model's JSON was broken or not an object (the loop told it so).
 */
export function argumentsObjectOf(call: Pick<ToolCall, "argumentsJson">): Record<string, unknown> {
  const parsed = parseArguments(call.argumentsJson);
  const value = parsed.ok ? parsed.value : undefined;
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

/** What a call gave, as the model reads it. */
export interface ToolResult {
  callId: string;
  name: string;
  /** The tool's return value as JSON (a string as it is), or the error's message when `isError`. */
  content: string;
  /** The tool threw, or could not run (unknown tool, bad arguments): Anthropic `is_error`, Gemini `error`. */
  isError: boolean;
}

/** One round of a prompt: the model's turn that asked for tools, and what they gave. */
export interface ToolRound {
  /** The text the model wrote before its calls (often empty). */
  text: string;
  calls: ToolCall[];
  /**
   * The model's turn in the provider's own format, sent back as it is in the next call (opaque to the loop):
   * it keeps what troupe does not read but the API requires back, such as Anthropic thinking blocks or
   * Gemini thought signatures. Only the provider that made it reads it.
   */
  modelTurn?: unknown;
  results: ToolResult[];
}

/** The tool side of one model call. */
export interface ToolRequest {
  /** The tools the model may call. */
  tools: readonly ToolDeclaration[];
  /** `auto`: the model may call tools; `none`: it must answer in text (the last call, once `maxToolRounds` is used up). */
  choice: "auto" | "none";
  /** The earlier rounds of this prompt, oldest first: sent after the history and the prompt. */
  rounds: readonly ToolRound[];
}

/** Why a call gave no result: the model named no registered tool, its arguments failed the schema, the tool threw, or the prompt was cancelled. */
export type ToolFailureKind = "unknown_tool" | "bad_arguments" | "threw" | "cancelled";

/** A call that failed, as `tool.completed` reports it. */
export interface ToolFailure {
  kind: ToolFailureKind;
  message: string;
}

/** A model asked for a tool (`tool.called`). */
export interface ToolCalledReport {
  type: "tool.called";
  tool: string;
  callId: string;
  /** The round of the prompt, from 1. */
  round: number;
  /** The arguments as the model gave them: parsed JSON, or the text itself when it is not JSON. */
  args: unknown;
}

/** A tool call ended (`tool.completed`): with a result (`ok`), or with the failure the model was told about. */
export interface ToolCompletedReport {
  type: "tool.completed";
  tool: string;
  callId: string;
  round: number;
  ok: boolean;
  /** From the call until its result, on the agent's clock. */
  durationMs: number;
  error?: ToolFailure;
}

/** What the tool loop reports through `PromptContext.reportTool`; the runtime adds the session, request and agent. */
export type ToolReport = ToolCalledReport | ToolCompletedReport;
