/**
 * The `Executor` interface: where agents run. The runtime owns sessions; an executor runs their prompts.
 */
import type { AgentActorRef, AgentInput } from "../../machines/agent.machine.js";
import type { PromptReply, RunPromptInput, SessionCloseReason, SessionInfo } from "../../machines/session.machine.js";
import type { AskReply } from "../agents/agent.js";
import type { BridgeError } from "../errors.js";
import type { RuntimeEventMap, RuntimeEventType } from "../events/event-hub.js";
import type { AskRequest } from "../runtime/messenger.js";
import type { ToolReport } from "../tools/tool-call.js";

/** An agent as `agents_discover` describes it; `status` comes from the agent's actor. */
export interface AgentDescriptor {
  id: string;
  name: string;
  description: string;
  capabilities: string[];
  status: "ready" | "busy" | "unavailable";
  providers?: Array<{ id: string; models: string[] }>;
  defaultProvider?: string;
  /** A remote A2A agent: where it is, and its agent card as fetched (none until it was reached). */
  a2a?: { url: string; card?: Record<string, unknown> };
}

/** An agent as its executor describes it: everything but its status, which is its actor's. */
export type AgentDescription = Omit<AgentDescriptor, "status">;

/** What the runtime offers an executor. */
export interface ExecutorHost {
  /** Fails a session because its agent's side is gone (e.g. its process crashed). Unknown ids are ignored. */
  failSession(sessionId: string, error: BridgeError): void;
  /** Sends an agent's `ctx.ask` through the bus the runtime is attached to (CONFIG without one). */
  ask(request: AskRequest): Promise<AskReply>;
  /** The actor of an agent (`agent:<id>`), whose state says whether it is online; undefined while the runtime is not running. */
  agentActor(agentId: string): AgentActorRef | undefined;
  /** Publishes an event on the runtime's hub (what a worker's process does: it starts, writes to stderr, exits). */
  emit<T extends RuntimeEventType>(type: T, actorId: string, fields: RuntimeEventMap[T]): void;
}

/** Where a running prompt reports what it streams: `prompt.delta`, `prompt.warning`, `tool.called` and `tool.completed` events. */
export interface PromptEmitter {
  delta: (text: string) => void;
  warning: (message: string) => void;
  tool: (report: ToolReport) => void;
}

/** Runs the agents of one kind (in this process, or in worker processes). */
export interface Executor {
  /** Shown in `bridge_health`. */
  readonly kind: string;
  /** Whether this executor's sessions expire by TTL and idle time. */
  readonly sessionsExpire: boolean;
  hasAgent(agentId: string): boolean;
  describeAgents(): AgentDescription[];
  /** The input of an agent's actor (what kind it is, who tells it it is online); without it, an in-process agent's. */
  agentInput?(agentId: string): AgentInput;
  /** Called once a session exists; a throw fails `sessions_create`. */
  openSession(session: SessionInfo): Promise<void>;
  /**
   * Called at `runtime.start()` for each session restored from the store (it was opened by an earlier
   * process). Without it, or when it throws, the restored session fails (`sessionValid: false`): an executor
   * whose sessions live in something that died with the process (an ACP worker's) cannot take them back.
   */
  reopenSession?(session: SessionInfo): Promise<void>;
  /** Answers one prompt; `signal` aborts it; `emit` streams pieces of the answer and warnings. */
  runPrompt(input: RunPromptInput, signal: AbortSignal, emit: PromptEmitter): Promise<PromptReply>;
  /** Told after the in-flight prompt of a session was cancelled by `sessions_cancel`. */
  promptCancelled(session: SessionInfo, requestId: string): void;
  /** Called once per session when it is over. */
  closeSession(session: SessionInfo, reason: SessionCloseReason): Promise<void>;
  /** Called once by the runtime before it starts. */
  attach?(host: ExecutorHost): void;
  /** Called once by `runtime.start()` once every agent's actor exists (to reach remote agents); never throws: what it cannot reach stays offline. */
  start?(): Promise<void>;
  stop?(): Promise<void>;
}
