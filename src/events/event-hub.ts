/**
 * The runtime's event stream in process: typed events, numbered, delivered to `runtime.on` listeners.
 */
import type { DeliveryEmitted } from "../../machines/delivery.machine.js";
import type { AgentKind } from "../../machines/agent.machine.js";
import type { PromptError, PromptCancelCause, Usage } from "../../machines/session.machine.js";
import type { WorkflowEmitted } from "../../machines/workflow.machine.js";
import type { Clock } from "../clock.js";
import type { ToolCalledReport, ToolCompletedReport } from "../tools/tool-call.js";

/** Fields every event has. `seq` grows by one per event delivered by this runtime. */
export interface EventBase {
  seq: number;
  ts: number;
  actorId: string;
  /** The cluster node the event happened on (a bus given `cluster` options; docs/cluster.md). */
  node?: string;
}

/** The fields of one emitted event of a machine, without its `type`. */
type FieldsOf<E extends { type: string }, T extends E["type"]> = Omit<Extract<E, { type: T }>, "type">;

/** A workflow session's events as the stream names them (SPEC §5), and the seed's names they come from (§3.4). */
export const WORKFLOW_EVENT_TYPES = {
  session_created: "workflow.created",
  participant_added: "workflow.participant_added",
  participant_removed: "workflow.participant_removed",
  workflow_updated: "workflow.step",
  context_updated: "workflow.context_updated",
  task_delegated: "workflow.task_delegated",
  task_completed: "workflow.task_completed",
  session_completed: "workflow.completed",
  session_terminated: "workflow.terminated",
} as const;

/**
 * What a prompt's events say besides the prompt: the agent that answers it, and the workflow session whose task
 * it runs when the bus opened its session for one (`metadata.bus.session_id`).
 */
export interface PromptOrigin {
  agentId: string;
  workflowId?: string;
}

/**
 * What a message's events say besides the delivery: its sender, and the workflow session it belongs to
 * (`sender.session_id`).
 */
export interface MessageOrigin {
  from: string;
  workflowId?: string;
}

/** The fields of a delivery's event on the stream. */
type MessageFields<T extends DeliveryEmitted["type"]> = FieldsOf<DeliveryEmitted, T> & MessageOrigin;

/** The events of the stream, by type (SPEC §5). */
export interface RuntimeEventMap {
  "actor.spawned": { parentId?: string; machine?: string; state?: string };
  "actor.transition": { from: string; to: string; event: string };
  "actor.stopped": { reason: string };
  "prompt.started": { sessionId: string; requestId: string } & PromptOrigin;
  "prompt.delta": { sessionId: string; requestId: string; delta: string } & PromptOrigin;
  "prompt.warning": { sessionId: string; requestId: string; message: string } & PromptOrigin;
  "prompt.completed": { sessionId: string; requestId: string; stopReason: string; usage?: Usage } & PromptOrigin;
  "prompt.failed": { sessionId: string; requestId: string; error: PromptError } & PromptOrigin;
  "prompt.cancelled": { sessionId: string; requestId: string; cause: PromptCancelCause } & PromptOrigin;
  /**
   * A prompt that was in flight or queued when the process ended, reported when `start()` restores its session:
   * it failed unanswered (TRANSPORT, `sessionValid: true`); the session came back idle.
   */
  "prompt.interrupted": { sessionId: string; requestId: string; error: PromptError } & PromptOrigin;
  /** A prompt's model asked for a tool (`tool`, `callId`, `round`, `args`); the tool loop runs it next. */
  "tool.called": { sessionId: string; requestId: string } & Omit<ToolCalledReport, "type"> & PromptOrigin;
  /** A tool call ended: `ok`, or `error: { kind, message }` (what the model was told instead), and `durationMs`. */
  "tool.completed": { sessionId: string; requestId: string } & Omit<ToolCompletedReport, "type"> & PromptOrigin;
  "message.accepted": MessageFields<"message.accepted">;
  "message.queued": MessageFields<"message.queued">;
  "message.delivered": MessageFields<"message.delivered">;
  "message.acknowledged": MessageFields<"message.acknowledged">;
  "message.retrying": MessageFields<"message.retrying">;
  "message.dead": MessageFields<"message.dead">;
  /** A workflow session was created; `session` is what `GET /sessions/:id` answers. */
  "workflow.created": { sessionId: string; session: unknown };
  "workflow.participant_added": FieldsOf<WorkflowEmitted, "participant_added">;
  "workflow.participant_removed": FieldsOf<WorkflowEmitted, "participant_removed">;
  "workflow.step": FieldsOf<WorkflowEmitted, "workflow_updated">;
  "workflow.context_updated": FieldsOf<WorkflowEmitted, "context_updated">;
  "workflow.task_delegated": FieldsOf<WorkflowEmitted, "task_delegated">;
  "workflow.task_completed": FieldsOf<WorkflowEmitted, "task_completed">;
  "workflow.completed": FieldsOf<WorkflowEmitted, "session_completed">;
  "workflow.terminated": FieldsOf<WorkflowEmitted, "session_terminated">;
  /** An ended (or deleted) workflow session was evicted: it is 404 from now on. */
  "workflow.evicted": { sessionId: string };
  "agent.online": { agentId: string; kind: AgentKind };
  /** `unavailable`: it will not come back (a worker that crashed too often). */
  "agent.offline": { agentId: string; kind: AgentKind; unavailable: boolean };
  "agent.busy": { agentId: string; kind: AgentKind };
  "agent.ready": { agentId: string; kind: AgentKind };
  /** An ACP worker's process started. */
  "worker.started": { workerId: string; pid: number };
  /** One line an ACP worker's process wrote to stderr. */
  "worker.stderr": { workerId: string; line: string };
  /**
   * An ACP worker's process ended, or its command could not be run (`spawnError`: the OS error code, e.g.
   * `ENOENT`). `reason` says which, for people; `stderr` is the last 4 KiB it wrote there; `stopped` is true
   * when troupe ended it (shutdown), false when it failed.
   */
  "worker.exited": { workerId: string; code: number | null; signal: string | null; reason: string; stopped: boolean; stderr: string; spawnError?: string };
  /** A request answered 500 (INTERNAL: a bug in troupe): what was asked and the error, with its stack. */
  "server.error": { method: string; path: string; message: string; stack?: string };
  /** This node took part in its cluster: it holds its lease, says it exists, and answers the other nodes; `server` is its NATS server (host:port). */
  "cluster.node_joined": ClusterEventFields & { server: string };
  /** This node is stopping: no more takeovers nor requests; it releases its lease once what it runs is stored. */
  "cluster.node_left": ClusterEventFields;
  /** This node lost its lease (`cause`: another node took it, it ran out without a renewal, a fenced write was refused): what it ran stops here. */
  "cluster.lease_lost": ClusterEventFields & { cause: LeaseLossCause; reason: string };
  /** This node took its lease back after losing it, and runs again what its records still name it for. */
  "cluster.lease_regained": ClusterEventFields & { workflows: number; sessions: number };
  /** This node took over node `fromNode` (dead, or stopped): its workflows and bridge sessions now run here. */
  "cluster.takeover": ClusterEventFields & { fromNode: string; workflows: number; sessions: number };
  /** This node's connection to NATS server `server` (host:port) broke: it refuses messages (503) until it is back. */
  "cluster.nats_disconnected": ClusterEventFields & { server: string };
  /** This node is connected to NATS again, to `server` (another one of a NATS cluster, maybe), after `downMs`. */
  "cluster.nats_reconnected": ClusterEventFields & { server: string; downMs: number };
  /** A scan for dead nodes failed (NATS or the store out of reach); said once per outage, the next scans try again. */
  "cluster.scan_failed": ClusterEventFields & { error: string };
}

/** What every `cluster.*` event carries: the node it happened on, set even outside the hub's stamping. */
interface ClusterEventFields {
  node: string;
}

/** Why a node lost its lease: another node took it, it ran out without an answered renewal, or the store refused a write fenced by it. */
export type LeaseLossCause = "taken" | "expired" | "write_refused";

/** The `cluster.*` event types: what a node reports of its part in its cluster (docs/cluster.md). */
export type ClusterEventType = Extract<RuntimeEventType, `cluster.${string}`>;

/** An event type of the stream. */
export type RuntimeEventType = keyof RuntimeEventMap;

/** Every event type, in the order of `RuntimeEventMap` (the record makes the compiler check that none is missing). */
export const RUNTIME_EVENT_TYPES = Object.keys({
  "actor.spawned": true,
  "actor.transition": true,
  "actor.stopped": true,
  "prompt.started": true,
  "prompt.delta": true,
  "prompt.warning": true,
  "prompt.completed": true,
  "prompt.failed": true,
  "prompt.cancelled": true,
  "prompt.interrupted": true,
  "tool.called": true,
  "tool.completed": true,
  "message.accepted": true,
  "message.queued": true,
  "message.delivered": true,
  "message.acknowledged": true,
  "message.retrying": true,
  "message.dead": true,
  "workflow.created": true,
  "workflow.participant_added": true,
  "workflow.participant_removed": true,
  "workflow.step": true,
  "workflow.context_updated": true,
  "workflow.task_delegated": true,
  "workflow.task_completed": true,
  "workflow.completed": true,
  "workflow.terminated": true,
  "workflow.evicted": true,
  "agent.online": true,
  "agent.offline": true,
  "agent.busy": true,
  "agent.ready": true,
  "worker.started": true,
  "worker.stderr": true,
  "worker.exited": true,
  "server.error": true,
  "cluster.node_joined": true,
  "cluster.node_left": true,
  "cluster.lease_lost": true,
  "cluster.lease_regained": true,
  "cluster.takeover": true,
  "cluster.nats_disconnected": true,
  "cluster.nats_reconnected": true,
  "cluster.scan_failed": true,
} satisfies Record<RuntimeEventType, true>) as RuntimeEventType[];

/** One event of the stream. */
export type RuntimeEvent<T extends RuntimeEventType = RuntimeEventType> = {
  [K in T]: EventBase & { type: K } & RuntimeEventMap[K];
}[T];

/** A listener of one type, or of every type with `"*"`. */
export type RuntimeEventListener<T extends RuntimeEventType | "*"> = (event: T extends RuntimeEventType ? RuntimeEvent<T> : RuntimeEvent) => void;

/** What a listener threw, as text; anything may be thrown, even a value that cannot become a string. */
function describeThrown(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    return String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}

/**
 * Delivers events to listeners; builds an event only when someone listens for its type. Every listener sees
 * events in `seq` order: an event emitted while listeners are being called (a listener that causes another
 * event) is delivered once the current one has reached every listener.
 */
export class EventHub {
  private readonly listeners = new Map<string, Set<(event: RuntimeEvent) => void>>();
  private seq = 0;
  /** Events emitted during a delivery, waiting for it to finish. */
  private readonly pending: RuntimeEvent[] = [];
  private delivering = false;
  /** The node id every event carries, once the runtime is a cluster node's. */
  private node: string | undefined;

  constructor(private readonly clock: Clock) {}

  /** Stamps every event from now on with the cluster node it happens on (undefined: none). */
  setNode(nodeId: string | undefined): void {
    this.node = nodeId;
  }

  /** The `seq` of the last event built (0 before the first). */
  get lastSeq(): number {
    return this.seq;
  }

  /** Adds a listener; returns the function that removes it. */
  on<T extends RuntimeEventType | "*">(type: T, listener: RuntimeEventListener<T>): () => void {
    let set = this.listeners.get(type);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(type, set);
    }
    const added = listener as (event: RuntimeEvent) => void;
    set.add(added);
    return () => {
      set.delete(added);
    };
  }

  /** Whether an event of this type would reach anyone. */
  wants(type: RuntimeEventType): boolean {
    return (this.listeners.get(type)?.size ?? 0) > 0 || (this.listeners.get("*")?.size ?? 0) > 0;
  }

  /** Delivers an event. A throwing listener is reported as a process warning and does not stop the others. */
  emit<T extends RuntimeEventType>(type: T, actorId: string, fields: RuntimeEventMap[T]): void {
    if (!this.wants(type)) return;
    const event = { seq: ++this.seq, ts: this.clock.now(), type, actorId, ...fields } as unknown as RuntimeEvent;
    if (this.node !== undefined && event.node === undefined) event.node = this.node;
    if (this.delivering) {
      this.pending.push(event);
      return;
    }
    this.delivering = true;
    try {
      this.deliver(event);
      for (let next = this.pending.shift(); next !== undefined; next = this.pending.shift()) this.deliver(next);
    } finally {
      this.delivering = false;
    }
  }

  /** Calls the listeners of the event's type, then those of every type. */
  private deliver(event: RuntimeEvent): void {
    this.call(this.listeners.get(event.type), event);
    this.call(this.listeners.get("*"), event);
  }

  private call(listeners: Set<(event: RuntimeEvent) => void> | undefined, event: RuntimeEvent): void {
    if (listeners === undefined) return;
    for (const listener of listeners) {
      try {
        listener(event);
      } catch (error) {
        // A listener's bug must not take the runtime (and every session) down with an uncaught exception.
        process.emitWarning(`troupe: a ${event.type} listener threw: ${describeThrown(error)}`, { code: "TROUPE_LISTENER" });
      }
    }
  }
}
