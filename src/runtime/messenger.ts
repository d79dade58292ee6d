/**
 * How an in-process agent reaches other agents: `ctx.ask` goes through the runtime's messenger, which a
 * `CommunicationBus` attaches (`runtime.attachMessenger`), so that asking a local agent, a worker or a remote
 * WebSocket agent is the same bus delivery (SPEC §3.6). A runtime without a bus has no messenger.
 */
import type { AskReply } from "../agents/agent.js";

/** One `ctx.ask`, from the asking agent (its runtime id) to `agentId` (a runtime id or a bus id). */
export interface AskRequest {
  from: string;
  /** The bridge session of the asking prompt: the asked agent answers its asks in a session of their own. */
  sessionId: string;
  /** The asking prompt's request id (with `sessionId`, it tells how deep in a chain of asks the prompt is). */
  requestId: string;
  agentId: string;
  /** A prompt (sent as `payload.prompt`) or a whole payload. */
  message: string | Record<string, unknown>;
  timeoutMs?: number;
  /** The asking prompt's signal: when it aborts, the ask is cancelled. */
  signal: AbortSignal;
}

/** What carries asks between agents: the bus the runtime is attached to. */
export interface Messenger {
  ask(request: AskRequest): Promise<AskReply>;
}
