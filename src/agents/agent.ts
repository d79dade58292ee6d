/**
 * The `Agent` interface (SPEC §2.4): what the runtime calls to answer a prompt.
 */
import type { HistoryMessage, SessionCloseReason, SessionInfo, Usage } from "../../machines/session.machine.js";
import type { RuntimeParams } from "../providers/params.js";

/** A provider an agent can answer with, as `agents_discover` lists it. */
export interface ProviderInfo {
  id: string;
  models: string[];
}

/** Everything an agent gets for one prompt. */
export interface PromptContext {
  session: SessionInfo;
  prompt: string;
  requestId: string;
  /** Session `metadata.runtimeParams` overridden by the prompt's own. */
  runtimeParams: RuntimeParams;
  /** Earlier turns of this session, oldest first, within the session's window. */
  history: HistoryMessage[];
  /** Aborted when the prompt is cancelled, times out, or its session closes. */
  signal: AbortSignal;
  /** Streams a piece of the answer as a `prompt.delta` event. */
  emit(delta: string): void;
  /** Reports what the operator should know (a parameter the provider cannot send) as a `prompt.warning` event. */
  warn(message: string): void;
}

/** What an agent answers. `stopReason` defaults to `end_turn`. */
export interface AgentReply {
  text: string;
  stopReason?: StopReason;
  usage?: Usage;
}

/** Why a model stopped. */
export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "content_filter" | "cancelled";

/** An agent the runtime can delegate to. */
export interface Agent {
  id: string;
  name?: string;
  description?: string;
  capabilities?: string[];
  providers?: ProviderInfo[];
  defaultProviderId?: string;
  prompt(ctx: PromptContext): Promise<AgentReply>;
  onSessionOpen?(session: SessionInfo): void | Promise<void>;
  onCancel?(ctx: { session: SessionInfo; requestId: string }): void;
  onSessionClose?(session: SessionInfo, reason: SessionCloseReason): void | Promise<void>;
}
