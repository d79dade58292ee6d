/**
 * The `Agent` interface (SPEC §2.4): what the runtime calls to answer a prompt.
 */
import type { HistoryMessage, SessionCloseReason, SessionInfo, Usage } from "../../machines/session.machine.js";
import type { RuntimeParams } from "../providers/params.js";
import type { ToolReport } from "../tools/tool-call.js";

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
  emit: (delta: string) => void;
  /** Reports what the operator should know (a parameter the provider cannot send) as a `prompt.warning` event. */
  warn: (message: string) => void;
  /**
   * Reports a tool call of this prompt's model as a `tool.called` or `tool.completed` event; the runtime adds
   * the session, request and agent. The tool loop of `MultiProviderCompanionAgent` calls it; an agent that
   * runs tools of its own may too.
   */
  reportTool: (report: ToolReport) => void;
  /**
   * Asks another agent (a runtime id such as `writer`, or a bus id such as `claude-code://qa`) through the bus:
   * a `task_request` from `troupe://<this agent>`, answered by the recipient's `task_response`. A string is
   * sent as `payload.prompt`. Rejects with the answer's error, TIMEOUT, CANCELLED when this prompt is
   * aborted, and CONFIG when the runtime has no bus (SPEC §3.6).
   */
  ask: (agentId: string, message: string | Record<string, unknown>, options?: AskOptions) => Promise<AskReply>;
}

/** Options of `ctx.ask`. */
export interface AskOptions {
  /** How long to wait for the answer. Default: the bus's `messageTimeout`. */
  timeoutMs?: number;
}

/** What `ctx.ask` resolves with: the answer's `text` (or its payload as JSON), its usage, and the whole payload. */
export interface AskReply {
  text: string;
  usage?: Usage;
  payload: Record<string, unknown>;
}

/** What an agent answers. `stopReason` defaults to `end_turn`. */
export interface AgentReply {
  text: string;
  stopReason?: StopReason;
  usage?: Usage;
}

/** Why a model stopped; `input_required`: the agent asks something back, and the session's next prompt answers it (docs/a2a.md). */
export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "content_filter" | "cancelled" | "input_required";

/**
 * How conversations (`runtime.converse`, SPEC §4) use an agent: agent.yaml's `session:` block. Defaults:
 * trigger `mention`, isolation `shared`, 30 minutes idle, a window of 30 messages.
 */
export interface ConversationSettings {
  /** `mention`: a conversation starts only when a message names `@<agent>`; follow-ups in its thread continue it. */
  trigger?: "mention" | "always";
  /** `shared`: one session per user and agent across threads; `per_thread`: one per thread. */
  isolation?: "shared" | "per_thread";
  idleTimeoutMinutes?: number;
  historyWindow?: number;
}

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
  /** How conversations use this agent (agent.yaml `session:`). */
  conversation?: ConversationSettings;
  /**
   * The ids of the agents merged into this one (agent.yaml `routing: inline`): they have no session of their
   * own, so a conversation's `@<id>` of one addresses this agent, and `troupe delegate` names this one.
   */
  inlined?: readonly string[];
}
