/**
 * The `Provider` interface: one configured model API that a `MultiProviderCompanionAgent` answers with.
 */
import type { AgentReply, PromptContext, ProviderInfo } from "../agents/agent.js";
import type { Clock } from "../clock.js";
import type { ToolCall, ToolRequest } from "../tools/tool-call.js";
import type { RuntimeParams } from "./params.js";

/** RuntimeParams after a provider's defaults were applied: the model is always known. */
export type ResolvedRuntimeParams = RuntimeParams & { model: string };

/**
 * What a provider answers to one call: the agent's reply, and the tools the model asked for, if any. With
 * `toolCalls`, `stopReason` is `tool_use` and `text` what the model wrote before its calls.
 */
export interface ProviderReply extends AgentReply {
  toolCalls?: ToolCall[];
  /** The model's turn in this API's own format, for the next round (`ToolRound.modelTurn`). */
  modelTurn?: unknown;
}

/** A model API behind a common shape: validate parameters, then answer a prompt. */
export interface Provider {
  /** The id sessions bind to with `metadata.provider` (default: the provider's kind, e.g. `openai`). */
  readonly id: string;
  /** Models listed by `agents_discover`; the first is the default model. */
  readonly models: readonly string[];
  /** `{ id, models }` as `agents_discover` lists it. */
  describe(): ProviderInfo;
  /**
   * Applies this provider's defaults under `params` and checks the result against what this API accepts;
   * a value it refuses is CONFIG naming `<field>.<param>`.
   */
  resolveParams(params: RuntimeParams, field?: string): ResolvedRuntimeParams;
  /**
   * Answers one prompt: `ctx.runtimeParams` are the layers above this provider's defaults, `ctx.signal`
   * aborts the HTTP request, `ctx.emit` receives streamed text. With `tools`, the model may call them (in
   * the API's native format) and the earlier rounds of the prompt follow the prompt. Failures are `BridgeError`s.
   * The tool loop (`runToolLoop`) calls it once per round; a provider never runs tools itself.
   */
  complete(ctx: PromptContext, tools?: ToolRequest): Promise<ProviderReply>;
}

/** Something a provider wants its operator to know, e.g. a parameter it cannot send. */
export interface ProviderWarning {
  providerId: string;
  /** The RuntimeParams field concerned, e.g. `topK`. */
  field: string;
  message: string;
}

/** Options every provider accepts (SPEC §2.4). */
export interface ProviderOptions {
  /** Renames this instance, e.g. to register two OpenAI-compatible servers side by side. */
  id?: string;
  /** The API key; default: the provider's environment variable, read once at construction. */
  credentials?: { apiKey?: string };
  /** Where the API lives, e.g. `http://127.0.0.1:11434/v1` for Ollama behind `openAI()`. */
  baseURL?: string;
  /** Models to list; the first is used when no RuntimeParams names one. */
  models?: string[];
  /** The lowest layer of RuntimeParams, under session and prompt parameters. */
  defaults?: RuntimeParams;
  /** Time one attempt may take, answer streamed to the end. Default 600,000 (the SDKs' 10 minutes). */
  timeoutMs?: number;
  /** Retries of a transient failure (429, 408, 409, 5xx, connection, timeout). Default 2. */
  maxRetries?: number;
  /** First retry delay when the server names none; doubles per retry, with jitter. Default 500. */
  retryBaseDelayMs?: number;
  /**
   * Longest wait before a retry. Backoff is capped here; a `retry-after` asking for longer is not waited for:
   * the error is returned at once, its `details.retryAfterMs` telling the client when to try. Default 60,000.
   */
  retryMaxDelayMs?: number;
  /** Stream answers (deltas become `prompt.delta` events). Default true. */
  stream?: boolean;
  /** The clock of retry delays and timeouts; tests pass a simulated one. Default: the system clock. */
  clock?: Clock;
  /**
   * Told about parameters this API cannot take (e.g. `topK` on OpenAI). Default: one process warning per
   * provider and field.
   */
  onWarning?: (warning: ProviderWarning) => void;
}
