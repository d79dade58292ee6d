/**
 * Tools a model can call (SPEC §4): defined in code with `defineTool`, named in agent.yaml by `name`, run by
 * the tool loop of `MultiProviderCompanionAgent` through each provider's native tool calling.
 *
 * This file is the contract between the tool loop (providers, agents) and what defines tools (the agent.yaml
 * loader, the built-in `delegate_to_agent` and `memory_*` tools).
 */
import type { ZodType } from "zod";
import type { SessionInfo } from "../../machines/session.machine.js";
import type { PromptContext } from "../agents/agent.js";

/** A JSON Schema object, as a provider sends it to the model (`{ type: "object", properties, required }`). */
export type JsonSchema = Record<string, unknown>;

/** What a tool's `execute` gets besides its arguments. */
export interface ToolContext {
  /** The session of the prompt whose model called the tool. */
  session: SessionInfo;
  /** The agent whose model called the tool. */
  agentId: string;
  /** The prompt's request id. */
  requestId: string;
  /** The call's id as the model gave it (OpenAI `tool_calls[].id`, Anthropic `tool_use.id`, …). */
  callId: string;
  /** Aborted when the prompt is cancelled, times out, or its session closes: a running tool stops with it. */
  signal: AbortSignal;
  /** `ctx.ask` of the prompt: reaches another agent through the bus's typed delivery (SPEC §3.6). */
  ask: PromptContext["ask"];
}

/** What `defineTool` takes. `parameters` is a zod schema (its output typed) or a JSON Schema object. */
export interface ToolDefinition<Args> {
  /** The name the model calls and agent.yaml names: letters, digits, `_` and `-`, at most 64, a letter or `_` first (Gemini's rule). */
  name: string;
  description: string;
  parameters: ZodType<Args> | JsonSchema;
  /** Runs the call. What it returns goes back to the model as JSON (a string as it is); what it throws too, as an error. */
  execute(args: Args, ctx: ToolContext): unknown;
}

/** A tool, ready for the loop: its schema as JSON Schema and a parser of the model's arguments. */
export interface Tool<Args = unknown> {
  readonly name: string;
  readonly description: string;
  /** The parameters as JSON Schema, what providers send. */
  readonly inputSchema: JsonSchema;
  /** Checks the model's arguments; bad ones throw a `BridgeError` CONFIG naming the field. */
  parse(args: unknown): Args;
  execute(args: Args, ctx: ToolContext): unknown;
}
