/**
 * The SessionManager of SPEC §3.4: workflow sessions, each an actor of the workflow machine built from its
 * steps, with the seed's positional API and events, and the correlation of `task_request` / `task_response`
 * messages with the steps of a session.
 */
import { randomUUID } from "node:crypto";
import { wholeCharEnd } from "../../machines/text.js";
import { z } from "zod";
import type { Actor, AnyActorRef } from "xstate";
import {
  createWorkflowMachine,
  pendingDispatchOf,
  RESERVED_STEP_NAMES,
  workflowDelayDueAt,
  workflowViewOf,
  type TaskOutcome,
  type TaskUsage,
  type WorkflowContext,
  type WorkflowDispatch,
  type WorkflowEmitted,
  type WorkflowEvent,
  type WorkflowInput,
  type WorkflowMachine,
  type WorkflowParticipant,
  type WorkflowStep,
  type WorkflowTask,
  type WorkflowView,
} from "../../machines/workflow.machine.js";
import type { Clock } from "../clock.js";
import { BridgeError, sessionNotFound, toBridgeError } from "../errors.js";
import { agentIdSchema, durationSchema, frameworkOf, inReplyToOf, taskIdOf, usageOf, type EnvelopeInput, type MessageEnvelope } from "../protocol/envelope.js";
import { parseDuration } from "../protocol/durations.js";
import { WORKFLOW_EVENT_TYPES, type RuntimeEvent } from "../events/event-hub.js";
import { BUS_AGENT_ID, isRuntimeFramework, ORCHESTRATOR_AGENT_ID } from "../runtime/bus-agents.js";
import { restorableLogic } from "../runtime/restore.js";
import type { PoolHost, Runtime } from "../runtime/runtime.js";
import { Outbox } from "../store/outbox.js";
import type { Store, WriteOptions } from "../store/store.js";
import { checkOwnerHoldsLease, type RecordOwner } from "../cluster/record-owner.js";
import { parseWith } from "../validation.js";
import { taskRequestsOf, type TasksDispatch } from "./dispatch.js";
import { loadWorkflows, workflowRecordIn, workflowRecordOf, type WorkflowRecord } from "./workflow-records.js";
import { keyCursor, MAX_PAGE_CHARS, pageHasRoom } from "../bus/pagination.js";

/** A session's lifecycle as the manager shows it. */
export type WorkflowSessionStatus = "active" | "completed" | "terminated";

/** A workflow session as `getSession` returns it. Times are epoch milliseconds. */
export interface WorkflowSession {
  session_id: string;
  status: WorkflowSessionStatus;
  initiator: string;
  participants: WorkflowParticipant[];
  workflow: WorkflowView & { steps: WorkflowStep[] };
  /** `auto`: troupe sends the steps' tasks and ends the workflow itself (SPEC §3.7). */
  dispatch: WorkflowDispatch;
  shared_context: Record<string, unknown>;
  tasks: WorkflowTask[];
  created_at: number;
  updated_at: number;
  completion?: { summary: string; artifacts: unknown[]; completed_at: number };
  termination?: { reason: string; details?: unknown; terminated_at: number };
}

/** Every event the session manager emits, with the seed's names (the event stream names them `workflow.*`); a workflow's `tasks_dispatch` becomes messages instead. */
export type SessionManagerEvent = { type: "session_created"; sessionId: string; session: WorkflowSession } | Exclude<WorkflowEmitted, TasksDispatch>;

/** The name of one session manager event. */
export type SessionManagerEventType = SessionManagerEvent["type"];

/** A listener of one session manager event type. */
export type SessionManagerListener<T extends SessionManagerEventType> = (event: Extract<SessionManagerEvent, { type: T }>) => void;

/** The seed's event of a stream event: the seed's name, without the stream's `seq`, `ts` and `actorId`. */
function seedEventOf(type: SessionManagerEventType, event: RuntimeEvent): SessionManagerEvent {
  const { seq: _seq, ts: _ts, actorId: _actorId, type: _type, ...fields } = event as RuntimeEvent & Record<string, unknown>;
  return { type, ...fields } as SessionManagerEvent;
}

/** A participant as `createSession` and `addParticipant` take it. */
export interface ParticipantInput {
  agent_id: string;
  framework?: string;
  role: string;
}

/** A step as `createSession` takes it. */
export type StepInput = WorkflowStep;

/** The options of `createSession` after the seed's four arguments. */
export interface CreateSessionOptions {
  /** `"auto"`: troupe sends each step's `task` to its required agents and ends the workflow itself. Default `"manual"`. */
  dispatch?: WorkflowDispatch;
}

/** What `updateWorkflow` takes. */
export interface WorkflowUpdate {
  current_step: string;
  completed_steps?: string[];
  pending_steps?: string[];
}

const stepName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[^.#]+$/, 'must not contain "." or "#"')
  .refine((name) => !(RESERVED_STEP_NAMES as readonly string[]).includes(name), `must not be ${RESERVED_STEP_NAMES.join(" or ")}`);
/** Participants of one session besides its initiator: the most `createSession` takes, and `addParticipant` keeps to. */
export const MAX_PARTICIPANTS = 1_000;

/**
 * Tasks one session records, each with its answer: a task_request that would delegate one more is CAPACITY,
 * and so is a move of an auto workflow into a step that would dispatch past it. Start another session then.
 */
export const MAX_SESSION_TASKS = 1_000;

/**
 * The most a workflow's steps may take, as JSON in UTF-8 bytes (413 past it): a workflow is kept, and read at
 * every restart and takeover, for its whole life.
 */
export const MAX_STEPS_BYTES = 256 * 1024;

/**
 * The most a workflow keeps of its tasks' results, as JSON in UTF-8 bytes: an answer that would take it past
 * this is kept as a preview (`keptOutcome`), as is any answer once it is reached. The answer itself reaches its
 * recipient whole; the workflow's record stays bounded (steps, results, and at most `MAX_SESSION_TASKS` previews).
 */
export const MAX_RESULTS_BYTES = 4 * 1024 * 1024;

/** The characters of a result's text a preview keeps, and of a failed task's error message. */
export const RESULT_PREVIEW_CHARS = 1_024;

/** Workflow records `clusterSessionsPage` reads at most at once (each may be a few MiB: its steps and results). */
const MAX_STORED_VIEWS_READ = 250;
/** Records `clusterSessionsPage` passes over (ended past their retention, unreadable) before it ends a page. */
const MAX_SKIPPED_PER_PAGE = 1_000;

/** A participant, as `addParticipant` and `POST /sessions/:id/participants` take it. */
export const participantSchema = z.strictObject({
  agent_id: agentIdSchema,
  framework: z.string().min(1).max(256).optional(),
  role: z.string().min(1).max(128),
});
const stepSchema = z.strictObject({
  name: stepName,
  required_agents: z.array(agentIdSchema).max(256),
  task: z.union([z.string().min(1).max(65_536), z.record(z.string(), z.unknown())]).optional(),
  timeout: durationSchema.optional(),
});
const sharedContextSchema = z.record(z.string(), z.unknown());
/** The arguments of `createSession`, as `POST /sessions` takes them. */
export const createSessionSchema = z.strictObject({
  initiator: agentIdSchema,
  participants: z.array(participantSchema).max(MAX_PARTICIPANTS),
  steps: z.array(stepSchema).min(1).max(256),
  shared_context: sharedContextSchema.default({}),
  dispatch: z.enum(["auto", "manual"]).default("manual"),
});
/** What `updateWorkflow` and `PATCH /sessions/:id/workflow` take. */
export const workflowUpdateSchema = z.strictObject({
  current_step: z.string().min(1),
  completed_steps: z.array(z.string()).optional(),
  pending_steps: z.array(z.string()).optional(),
});
/** What `completeSession` and `POST /sessions/:id/complete` take. */
export const completionSchema = z.strictObject({ summary: z.string().max(65_536).default(""), artifacts: z.array(z.unknown()).max(10_000).default([]) });
/** What `terminateSession` and `POST /sessions/:id/terminate` take. */
export const terminationSchema = z.strictObject({ reason: z.string().min(1).max(4_096), details: z.unknown().optional() });

type WorkflowActor = Actor<WorkflowMachine>;

/** Distinct step lists whose machine is kept for the next workflow with the same steps. */
const MACHINE_CACHE_SIZE = 64;

/** Freezes a value parsed from JSON, all the way down. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const nested of Object.values(value)) deepFreeze(nested);
    Object.freeze(value);
  }
  return value;
}

/** A workflow session's actor. Kept by reference while the session lives or is retained after it ended. */
interface SessionEntry {
  actor: WorkflowActor;
}

/** Options of the session manager. */
export interface SessionManagerOptions {
  clock: Clock;
  /** The runtime whose supervisor owns the workflow actors (in its workflow pool). */
  runtime: Runtime;
  /** How long an ended session stays readable before it is evicted; 0 evicts at once. */
  retentionMs: number;
  /** Largest shared context, as JSON in UTF-8 bytes (unbounded without). */
  maxSharedContextBytes?: number;
  /** Sends an envelope through the bus: how an auto workflow's tasks leave. Without it, `dispatch: "auto"` is CONFIG. */
  send?: (envelope: EnvelopeInput) => Promise<unknown>;
}

/** Where a pending task is, and who may answer it: its recipient, then its fallback agents. */
interface PendingTaskRef {
  sessionId: string;
  taskId: string;
  targets: string[];
}

function stringOf(value: unknown, fallback: string): string {
  return typeof value === "string" && value !== "" ? value : fallback;
}

/** Workflow sessions of one bus. Reach it as `bus.sessionManager`. */
export class SessionManager implements PoolHost {
  private readonly sessions = new Map<string, SessionEntry>();
  /** Sessions by status, counted from their machines' events, so `GET /metrics` costs O(1). */
  private readonly counts: Record<WorkflowSessionStatus, number> = { active: 0, completed: 0, terminated: 0 };
  /** What workflows being spawned emit (events, their first tasks), held back until `workflow.created` is out. */
  private readonly creating = new Map<string, Array<() => void>>();
  /** Events and tasks wait here until the change they come from is durable. */
  private readonly outbox: Outbox;
  /** When each ended session is evicted (epoch ms), as its record says. */
  private readonly evictAt = new Map<string, number>();
  /**
   * Workflows changed in this synchronous run and not written yet: each is written once, at the end of the run
   * (several transitions in one turn cost one serialization), and always before the flush its events wait for.
   */
  private readonly unwritten = new Map<string, AnyActorRef>();
  /** The bus is stopping: its sessions are evicted from memory, and stay in the store for the next start. */
  private stopping = false;
  /** How to stop each listener added with `on`, for `off`. */
  private readonly unsubscribers = new Map<(event: never) => void, Map<SessionManagerEventType, () => void>>();
  /** How many sessions each agent takes part in: they count as registered. */
  private readonly participation = new Map<string, { framework: string; sessions: number }>();
  /** Pending tasks by the `message_id` of their `task_request`, to correlate replies without `session_id`. */
  private readonly tasksByMessage = new Map<string, PendingTaskRef>();
  /** The `message_id`s of pending tasks by task id: a reply may name its task only by `metadata.task_id`. */
  private readonly messagesByTask = new Map<string, Set<string>>();
  /** Workflow machines by the JSON of their steps, least recently used first. */
  private readonly machines = new Map<string, WorkflowMachine>();
  /** In a cluster, the node this manager runs workflows for: its records name it, and its lease fences their writes. */
  private owner: RecordOwner | undefined;

  constructor(private readonly options: SessionManagerOptions) {
    options.runtime.attachPool("workflow", this);
    this.outbox = new Outbox(
      () => options.runtime.store,
      () => this.writeChanged(),
    );
  }

  /**
   * Creates a workflow session and returns its id (`sess_…`). The initiator is a participant too, with the
   * role `initiator`; every participant enters `active`. The session starts at the first step; with
   * `{ dispatch: "auto" }` troupe sends that step's task at once (SPEC §3.7).
   */
  createSession(
    initiatorAgentId: string,
    participants: ParticipantInput[],
    steps: StepInput[],
    sharedContext: Record<string, unknown> = {},
    options: CreateSessionOptions = {},
  ): string {
    const input = parseWith(
      createSessionSchema,
      {
        initiator: initiatorAgentId,
        participants,
        steps,
        shared_context: sharedContext,
        ...(options.dispatch === undefined ? {} : { dispatch: options.dispatch }),
      },
      "(arguments)",
    );
    checkOwnerHoldsLease(this.owner);
    if (input.dispatch === "auto" && this.options.send === undefined) {
      throw new BridgeError("CONFIG", 'dispatch: "auto" needs a bus to send the tasks through', { field: "dispatch" });
    }
    this.checkStepsSize(input.steps);
    this.checkSharedContextSize(input.shared_context);
    const at = this.options.clock.now();
    const members: WorkflowParticipant[] = [
      { agent_id: input.initiator, framework: frameworkOf(input.initiator), role: "initiator", status: "active", joined_at: at },
    ];
    for (const [index, participant] of input.participants.entries()) {
      if (members.some((member) => member.agent_id === participant.agent_id)) {
        const field = `participants.${index}.agent_id`;
        throw new BridgeError("CONFIG", `${field}: ${participant.agent_id} is listed twice (the initiator is a participant already)`, { field });
      }
      members.push(this.participantOf(participant, at));
    }
    members.forEach((member, index) => this.checkAgentExists(member.agent_id, index === 0 ? "initiator" : `participants.${index - 1}.agent_id`));
    this.checkSteps(input.steps, members);
    const sessionId = `sess_${randomUUID().replaceAll("-", "")}`;
    const stepTimeoutsMs = Object.fromEntries(
      input.steps.flatMap((step, index) => (step.timeout === undefined ? [] : [[step.name, parseDuration(step.timeout, `steps.${index}.timeout`)]])),
    );
    const workflowInput: WorkflowInput = {
      sessionId,
      initiator: input.initiator,
      participants: members,
      sharedContext: input.shared_context,
      createdAt: at,
      retentionMs: this.options.retentionMs,
      dispatch: input.dispatch,
    };
    // The supervisor's workflow pool spawns it; a full pool is CAPACITY.
    // A workflow never ends while it is spawned: it starts at its first step.
    const machine = this.machineFor(input.steps, stepTimeoutsMs);
    // What the workflow emits while it is spawned (its first step's tasks) follows `workflow.created`.
    const heldBack: Array<() => void> = [];
    this.creating.set(sessionId, heldBack);
    let actor: WorkflowActor;
    try {
      actor = this.options.runtime.spawnPooled("workflow", sessionId, machine, workflowInput) as WorkflowActor;
    } finally {
      this.creating.delete(sessionId);
    }
    const entry: SessionEntry = { actor };
    this.sessions.set(sessionId, entry);
    this.counts.active += 1;
    for (const member of members) this.join(member);
    const { hub } = this.options.runtime;
    if (hub.wants("workflow.created")) {
      const session = this.viewOf(sessionId, entry);
      this.outbox.run(() => hub.emit("workflow.created", sessionId, { sessionId, session }));
    }
    for (const effect of heldBack) this.outbox.run(effect);
    return sessionId;
  }

  /** Adds a participant (it enters `active`). A participant already there is CONFIG; one past `MAX_PARTICIPANTS` is CAPACITY. */
  addParticipant(sessionId: string, participant: ParticipantInput): WorkflowSession {
    const entry = this.open(sessionId);
    const parsed = parseWith(participantSchema, participant, "(participant)");
    const members = this.contextOf(entry).participants;
    if (members.some((member) => member.agent_id === parsed.agent_id)) {
      throw new BridgeError("CONFIG", `agent_id: ${parsed.agent_id} is already a participant of ${sessionId}`, { field: "agent_id" });
    }
    // The initiator is a member too: the bound counts the others, as at creation.
    if (members.length > MAX_PARTICIPANTS) {
      throw new BridgeError("CAPACITY", `${sessionId} has ${MAX_PARTICIPANTS} participants besides its initiator, the most a session takes`, {
        limit: MAX_PARTICIPANTS,
        sessionId,
      });
    }
    this.checkAgentExists(parsed.agent_id, "agent_id");
    const member = this.participantOf(parsed, this.options.clock.now());
    this.send(entry, { type: "PARTICIPANT.ADD", participant: member, at: this.options.clock.now() });
    this.join(member);
    return this.viewOf(sessionId, entry);
  }

  /** Removes a participant. The initiator and the required agents of a step cannot be removed (CONFIG). */
  removeParticipant(sessionId: string, agentId: string): WorkflowSession {
    const entry = this.open(sessionId);
    const context = this.contextOf(entry);
    const member = context.participants.find((participant) => participant.agent_id === agentId);
    if (member === undefined) throw new BridgeError("NOT_FOUND", `${agentId} is not a participant of ${sessionId}`, { sessionId, agentId });
    if (agentId === context.initiator) throw new BridgeError("CONFIG", `agent_id: the initiator ${agentId} cannot be removed`, { field: "agent_id" });
    const requiredBy = context.steps.find((step) => step.required_agents.includes(agentId));
    if (requiredBy !== undefined) {
      throw new BridgeError("CONFIG", `agent_id: ${agentId} is required by the step ${requiredBy.name}`, { field: "agent_id" });
    }
    this.send(entry, { type: "PARTICIPANT.REMOVE", agentId, at: this.options.clock.now() });
    this.leave(agentId);
    return this.viewOf(sessionId, entry);
  }

  /** Moves the workflow to `current_step` explicitly. An unknown step is CONFIG. */
  updateWorkflow(sessionId: string, update: WorkflowUpdate): WorkflowSession {
    const entry = this.open(sessionId);
    const parsed = parseWith(workflowUpdateSchema, update, "(workflow)");
    const names = this.contextOf(entry).steps.map((step) => step.name);
    const unknown = (name: string): boolean => !names.includes(name);
    if (unknown(parsed.current_step)) {
      throw new BridgeError("CONFIG", `current_step: unknown step ${JSON.stringify(parsed.current_step)}; steps are ${names.join(", ")}`, {
        field: "current_step",
      });
    }
    for (const field of ["completed_steps", "pending_steps"] as const) {
      const bad = parsed[field]?.find(unknown);
      if (bad !== undefined) throw new BridgeError("CONFIG", `${field}: unknown step ${JSON.stringify(bad)}`, { field });
    }
    const { dispatch, steps } = this.contextOf(entry);
    const target = steps.find((step) => step.name === parsed.current_step);
    if (dispatch === "auto" && target?.task !== undefined) this.checkRoomForTasks(sessionId, entry, target.required_agents.length);
    this.send(entry, {
      type: "WORKFLOW.UPDATE",
      currentStep: parsed.current_step,
      ...(parsed.completed_steps ? { completedSteps: parsed.completed_steps } : {}),
      ...(parsed.pending_steps ? { pendingSteps: parsed.pending_steps } : {}),
      at: this.options.clock.now(),
    });
    return this.viewOf(sessionId, entry);
  }

  /** Replaces the shared context (spread the old one into it to keep its keys, as the seed does). */
  updateSharedContext(sessionId: string, sharedContext: Record<string, unknown>): WorkflowSession {
    const entry = this.open(sessionId);
    const parsed = parseWith(sharedContextSchema, sharedContext, "shared_context");
    this.checkSharedContextSize(parsed);
    this.send(entry, { type: "CONTEXT.UPDATE", sharedContext: parsed, at: this.options.clock.now() });
    return this.viewOf(sessionId, entry);
  }

  /** A session, or `undefined` when there is none with this id. */
  getSession(sessionId: string): WorkflowSession | undefined {
    const entry = this.sessions.get(sessionId);
    return entry === undefined ? undefined : this.viewOf(sessionId, entry);
  }

  /** Every session, oldest first. */
  listSessions(): WorkflowSession[] {
    return [...this.sessionViews()].map((make) => make());
  }

  /**
   * The sessions, oldest first or `newest` first (by `created_at`), each view built only when called (a page
   * builds its own alone).
   */
  *sessionViews(order: "oldest" | "newest" = "oldest"): Generator<() => WorkflowSession> {
    const createdAt = ([, entry]: [string, SessionEntry]): number => entry.actor.getSnapshot().context.createdAt;
    // Reversed first, so that sessions created in the same millisecond come newest first too (the sort is stable).
    const entries = order === "newest" ? [...this.sessions].reverse().sort((left, right) => createdAt(right) - createdAt(left)) : this.sessions;
    for (const [sessionId, entry] of entries) yield () => this.viewOf(sessionId, entry);
  }

  /**
   * One page of every workflow of a cluster (`GET /sessions` on a cluster node), in the order of their ids, each
   * naming its node: those running here from their actors, the others from the records their nodes keep in the
   * shared store (as of their last commit). Ended workflows past their retention are left out, as their node
   * evicts them. With `node`, only the workflows that node runs (by the store's node index). Read from the store
   * after `after` (the cursor's key), at most as many bytes of records at a time as the page has room for (a view
   * is no larger than its record), until the page has `limit` workflows or its JSON reaches its bound: what it
   * costs does not depend on how many workflows there are, nor on their sizes (records read by count, a page of
   * small ones followed by a few MiB each read hundreds of MiB for a page of 8).
   */
  async clusterSessionsPage({
    after,
    limit,
    node: only,
  }: {
    after?: string;
    limit: number;
    node?: string;
  }): Promise<{ items: Array<WorkflowSession & { node?: string }>; next_cursor?: string }> {
    const now = this.options.clock.now();
    const here = this.owner?.nodeId;
    const items: Array<WorkflowSession & { node?: string }> = [];
    let chars = 0;
    let from = after;
    let skipped = 0;
    for (;;) {
      // One more record than the page needs, to know whether another follows, and no more bytes of them than the
      // page has room for (the store returns one at least): a record past the room ends the page.
      const records = await this.options.runtime.store.list("workflows", {
        ...(from === undefined ? {} : { after: from }),
        ...(only === undefined ? {} : { node: only }),
        limit: Math.min(MAX_STORED_VIEWS_READ, limit - items.length + 1),
        maxBytes: Math.max(1, MAX_PAGE_CHARS - chars),
      });
      for (const { id, value } of records) {
        const record = workflowRecordIn(id, value);
        if (record === undefined || (record.evictAt !== undefined && record.evictAt <= now)) {
          from = id;
          // Records left out (ended past their retention, not evicted yet; unreadable) are bounded per page too: the
          // page ends, shorter or even empty, with the cursor past them.
          skipped += 1;
          if (skipped >= MAX_SKIPPED_PER_PAGE) return { items, next_cursor: keyCursor(id) };
          continue;
        }
        if (items.length === limit) return { items, next_cursor: keyCursor(from ?? id) };
        const entry = this.sessions.get(id);
        const node = entry === undefined ? record.node : here;
        const view = { ...(entry === undefined ? sessionViewOf(id, record.snapshot) : this.viewOf(id, entry)), ...(node === undefined ? {} : { node }) };
        const viewChars = JSON.stringify(view).length;
        if (!pageHasRoom(items.length, chars, viewChars)) return { items, next_cursor: keyCursor(from ?? id) };
        items.push(view);
        chars += viewChars;
        from = id;
      }
      // A short read may have been cut by bytes, not by the end: only none left ends the listing.
      if (records.length === 0) return { items };
    }
  }

  /**
   * Completes a session (final): `{ summary, artifacts }` stay with it for the aggregator. A session that has
   * ended already is left as it is (the seed completes, then shows how to terminate).
   */
  completeSession(sessionId: string, completion: { summary?: string; artifacts?: unknown[] } = {}): WorkflowSession {
    const parsed = parseWith(completionSchema, completion, "(completion)");
    const entry = this.existing(sessionId);
    if (this.statusOf(entry) !== "active") return this.viewOf(sessionId, entry);
    this.send(entry, { type: "COMPLETE", summary: parsed.summary, artifacts: parsed.artifacts, at: this.options.clock.now() });
    return this.viewOf(sessionId, entry);
  }

  /** Terminates a session (final) with a reason. A session that has ended already is left as it is. */
  terminateSession(sessionId: string, termination: { reason: string; details?: unknown }): WorkflowSession {
    const parsed = parseWith(terminationSchema, termination, "(termination)");
    const entry = this.existing(sessionId);
    if (this.statusOf(entry) !== "active") return this.viewOf(sessionId, entry);
    this.send(entry, {
      type: "TERMINATE",
      reason: parsed.reason,
      ...(parsed.details === undefined ? {} : { details: parsed.details }),
      at: this.options.clock.now(),
    });
    return this.viewOf(sessionId, entry);
  }

  /**
   * Listens to one event type by the seed's name (the runtime's event stream, `runtime.on("workflow.*")`,
   * carries the same events); returns the function that stops listening.
   */
  on<T extends SessionManagerEventType>(type: T, listener: SessionManagerListener<T>): () => void {
    const unsubscribe = this.options.runtime.on(WORKFLOW_EVENT_TYPES[type], (event) =>
      listener(seedEventOf(type, event) as Extract<SessionManagerEvent, { type: T }>),
    );
    let byType = this.unsubscribers.get(listener);
    if (byType === undefined) {
      byType = new Map();
      this.unsubscribers.set(listener, byType);
    }
    byType.get(type)?.();
    byType.set(type, unsubscribe);
    return () => this.off(type, listener);
  }

  /** Stops listening. */
  off<T extends SessionManagerEventType>(type: T, listener: SessionManagerListener<T>): void {
    const byType = this.unsubscribers.get(listener);
    byType?.get(type)?.();
    byType?.delete(type);
    if (byType?.size === 0) this.unsubscribers.delete(listener);
  }

  // ---- what the bus asks while it routes messages ----

  /** Sessions by status, and their total (ended ones until they are evicted). O(1). */
  sessionCounts(): { total: number; active: number; completed: number; terminated: number } {
    const { active, completed, terminated } = this.counts;
    return { total: active + completed + terminated, active, completed, terminated };
  }

  /** Whether an agent takes part in any session: such agents count as registered. */
  hasParticipant(agentId: string): boolean {
    return this.participation.has(agentId);
  }

  /** Every agent that takes part in a session. */
  participantAgents(): Array<{ agent_id: string; framework: string }> {
    return [...this.participation].map(([agent_id, { framework }]) => ({ agent_id, framework }));
  }

  /**
   * Checks a message that names `sender.session_id`: the session exists (404), is open (409), the sender
   * takes part in it (403), and a `task_request` for a new task finds the session below `MAX_SESSION_TASKS` (429).
   */
  checkSender(envelope: MessageEnvelope): void {
    const sessionId = envelope.sender.session_id;
    if (sessionId === undefined) return;
    const entry = this.open(sessionId);
    const agentId = envelope.sender.agent_id;
    if (!this.contextOf(entry).participants.some((participant) => participant.agent_id === agentId)) {
      throw new BridgeError("AUTH", `${agentId} is not a participant of session ${sessionId}`, { forbidden: true, sessionId, agentId });
    }
    if (envelope.message_type !== "task_request") return;
    const taskId = taskIdOf(envelope) ?? envelope.message_id;
    const pending = this.contextOf(entry).tasks.some((task) => task.task_id === taskId && task.status === "pending");
    if (!pending) this.checkRoomForTasks(sessionId, entry, 1);
  }

  /** A session records at most `MAX_SESSION_TASKS` tasks: `count` more past it is CAPACITY (429). */
  private checkRoomForTasks(sessionId: string, entry: SessionEntry, count: number): void {
    if (this.contextOf(entry).tasks.length + count <= MAX_SESSION_TASKS) return;
    throw new BridgeError("CAPACITY", `${sessionId} has recorded ${MAX_SESSION_TASKS} tasks, the most a session keeps: start another session`, {
      limit: MAX_SESSION_TASKS,
      sessionId,
    });
  }

  /**
   * Correlates an accepted message with its session: a `task_request` naming a session delegates a task; a
   * `task_response` (or an `error`) with the same `metadata.task_id`, or `metadata.in_reply_to` the request,
   * answers it.
   */
  observe(envelope: MessageEnvelope): void {
    const at = this.options.clock.now();
    const sessionId = envelope.sender.session_id;
    if (envelope.message_type === "task_request" && sessionId !== undefined) {
      const entry = this.sessions.get(sessionId);
      if (entry === undefined || this.statusOf(entry) !== "active") return;
      const taskId = taskIdOf(envelope) ?? envelope.message_id;
      const targets = [envelope.recipient.agent_id, ...(envelope.routing.fallback_agents ?? [])];
      this.tasksByMessage.set(envelope.message_id, { sessionId, taskId, targets });
      this.messagesByTask.set(taskId, (this.messagesByTask.get(taskId) ?? new Set()).add(envelope.message_id));
      this.send(entry, { type: "TASK.DELEGATED", taskId, messageId: envelope.message_id, from: envelope.sender.agent_id, to: envelope.recipient.agent_id, at });
      return;
    }
    if (envelope.message_type !== "task_response" && envelope.message_type !== "error") return;
    const task = this.taskAnswered(envelope);
    if (task === undefined) return;
    const { payload } = envelope;
    const outcome: TaskOutcome =
      envelope.message_type === "error"
        ? { status: "failed", error: { code: stringOf(payload["code"], "ERROR"), message: stringOf(payload["message"], "The agent answered with an error") } }
        : { status: "completed", result: payload, ...this.usageField(envelope) };
    this.answer(task, envelope.sender.agent_id, outcome, at);
  }

  /** Whether the workflow `sessionId` runs here (in a cluster: on this node). */
  runs(sessionId: string): boolean {
    return this.sessions.has(sessionId);
  }

  /**
   * Whether `observe` would find the workflow an accepted message concerns here: the session it names, or the
   * pending task it answers. In a cluster, a message that concerns none here goes to the node that runs it.
   */
  concerns(envelope: MessageEnvelope): boolean {
    const sessionId = envelope.sender.session_id;
    if (envelope.message_type === "task_request" && sessionId !== undefined) return this.sessions.has(sessionId);
    if (envelope.message_type !== "task_response" && envelope.message_type !== "error") return sessionId === undefined || this.sessions.has(sessionId);
    const task = this.taskAnswered(envelope);
    return task !== undefined && this.sessions.has(task.sessionId);
  }

  /** A `task_request` could not be delivered: its task fails with DELIVERY_FAILED. */
  deliveryFailed(envelope: MessageEnvelope, error: string): void {
    const task = this.tasksByMessage.get(envelope.message_id);
    if (task === undefined) return;
    this.answer(task, envelope.recipient.agent_id, { status: "failed", error: { code: "DELIVERY_FAILED", message: error } }, this.options.clock.now());
  }

  /**
   * Ends a session at once and forgets it (`DELETE /sessions/:id`): an active one is terminated with the reason
   * `deleted` (its events go out), then it is evicted; `getSession` answers `undefined` from then on.
   */
  deleteSession(sessionId: string): void {
    const entry = this.existing(sessionId);
    if (this.statusOf(entry) === "active") this.send(entry, { type: "TERMINATE", reason: "deleted", at: this.options.clock.now() });
    this.options.runtime.evictPooled("workflow", sessionId, entry.actor);
  }

  /**
   * Evicts every session from memory (the bus is stopping). They stay in the store: the next `start()` of a bus
   * on the same store restores them.
   */
  stop(): void {
    this.stopping = true;
    try {
      this.options.runtime.clearPool("workflow");
    } finally {
      this.stopping = false;
    }
  }

  /** Resolves once every change made so far to the sessions is durable (what an HTTP answer waits for). */
  whenDurable(): Promise<void> {
    this.writeChanged();
    return this.options.runtime.store.flush();
  }

  /**
   * Resolves once every change made so far is durable and its events and tasks have gone out: events follow
   * their change once it is in the store (docs/durability.md), so a listener hears of `createSession` after it
   * returned, not during it.
   */
  whenSettled(): Promise<void> {
    return this.outbox.drained();
  }

  /**
   * Restores the workflow sessions of the runtime's store (the bus calls this at `start()`): each continues in
   * its step, with what is left of its step's timeout, or, ended, stays readable for what is left of its
   * retention. Ended ones past their retention are removed from the store; `maxWorkflowSessions` still holds
   * (active sessions first, then the ended ones evicted last; the rest are removed with a warning). Call
   * `resume()` once the bus takes messages.
   */
  async restore(): Promise<void> {
    await this.adopt(await loadWorkflows(this.options.runtime.store, this.owner?.nodeId), { dropUnfit: true });
  }

  /**
   * Restores these stored workflows as `restore` does (a node of a cluster takes over the workflows of a dead
   * node with them, once their records name it) and answers the ids of those that run here now. Call `resume`
   * with those ids once the bus takes messages. Those past `maxWorkflowSessions` are removed from the store with
   * `dropUnfit` (a restart), else left there for this node's next start (a takeover).
   */
  async adopt(loadedRecords: Array<{ sessionId: string; record: WorkflowRecord }>, { dropUnfit = false }: { dropUnfit?: boolean } = {}): Promise<string[]> {
    const { runtime, clock } = this.options;
    const { store } = runtime;
    const now = clock.now();
    const records: Array<{ sessionId: string; record: WorkflowRecord }> = [];
    for (const loaded of loadedRecords) {
      if (this.sessions.has(loaded.sessionId)) continue;
      const { evictAt } = loaded.record;
      if (loaded.record.snapshot.status === "active" || (evictAt !== undefined && evictAt > now)) records.push(loaded);
      else this.writing(loaded.sessionId, (writable, options) => writable.delete("workflows", loaded.sessionId, options));
    }
    const room = Math.max(0, runtime.limits.maxWorkflowSessions - runtime.pooledCount("workflow"));
    const evictsLast = (entry: { record: WorkflowRecord }): number => entry.record.evictAt ?? Number.POSITIVE_INFINITY;
    const kept = new Set([...records].sort((left, right) => evictsLast(right) - evictsLast(left)).slice(0, room));
    const adopted: string[] = [];
    for (const loaded of records.sort((left, right) => left.record.snapshot.context.createdAt - right.record.snapshot.context.createdAt)) {
      if (kept.has(loaded)) {
        this.restoreOne(loaded.sessionId, loaded.record, now);
        adopted.push(loaded.sessionId);
      } else {
        process.emitWarning(`troupe: workflow ${loaded.sessionId} is not restored: maxWorkflowSessions (${runtime.limits.maxWorkflowSessions}) is reached`, {
          code: "TROUPE_RESTORE",
        });
        if (dropUnfit) this.writing(loaded.sessionId, (writable, options) => writable.delete("workflows", loaded.sessionId, options));
      }
    }
    await store.flush();
    return adopted;
  }

  /**
   * Sends again, under their ids, the tasks that restored auto workflows had dispatched in their current step
   * and that are still pending: the bus drops those it accepted before the restart (same `message_id`), so a
   * task is sent once whether or not its message was durable when the process ended.
   */
  resume(sessionIds: Iterable<string> = this.sessions.keys()): void {
    const now = this.options.clock.now();
    for (const sessionId of sessionIds) {
      const entry = this.sessions.get(sessionId);
      if (entry === undefined || this.statusOf(entry) !== "active") continue;
      const context = this.contextOf(entry);
      const dispatch = pendingDispatchOf(context);
      if (dispatch === undefined) continue;
      const timeout = context.steps.find((step) => step.name === context.currentStep)?.timeout;
      const timeoutMs = timeout === undefined ? undefined : workflowDelayDueAt(context, parseDuration(timeout, "timeout")) - now;
      // A step whose time ran out while the process was down ends at once: its tasks are not sent again.
      if (timeoutMs !== undefined && timeoutMs <= 0) continue;
      this.dispatch(sessionId, { ...dispatch, ...(timeoutMs === undefined ? {} : { timeoutMs }) });
    }
  }

  /** Spawns one stored workflow in its state, and rebuilds what the manager indexes about it. */
  private restoreOne(sessionId: string, record: WorkflowRecord, now: number): void {
    const persisted = record.snapshot;
    const context = persisted.context;
    // Shared like those of new sessions: frozen, so no caller changes the steps of another workflow.
    deepFreeze(context.steps);
    const stepTimeoutsMs = Object.fromEntries(
      context.steps.flatMap((step, index) => (step.timeout === undefined ? [] : [[step.name, parseDuration(step.timeout, `steps.${index}.timeout`)]])),
    );
    const machine = this.machineFor(context.steps, stepTimeoutsMs);
    // An ended workflow asks its shard to keep it for what is left of its retention.
    const snapshot = record.evictAt === undefined ? persisted : { ...persisted, output: { ...(persisted.output as object), retainMs: record.evictAt - now } };
    // The actor as it is made: an ended one is no longer in the system once it has started, and its ref is what keeps it readable.
    let actor: WorkflowActor | undefined;
    const logic = restorableLogic(
      machine,
      (_input, actorScope) => {
        actor = actorScope.self as WorkflowActor;
        return { snapshot: machine.restoreSnapshot(snapshot as never, actorScope as never), dueAt: (delay) => workflowDelayDueAt(context, delay) };
      },
      this.options.clock,
    );
    if (record.evictAt !== undefined) this.evictAt.set(sessionId, record.evictAt);
    this.options.runtime.spawnPooled("workflow", sessionId, logic, undefined);
    if (actor === undefined) throw new BridgeError("INTERNAL", `Workflow ${sessionId} was not spawned`, { sessionId });
    const entry: SessionEntry = { actor };
    this.sessions.set(sessionId, entry);
    this.counts[this.statusOf(entry)] += 1;
    for (const member of context.participants) this.join(member);
    for (const task of context.tasks) {
      if (task.status !== "pending") continue;
      // The fallback agents of its request are not kept: the recipient (or an answer naming the request) answers it.
      this.tasksByMessage.set(task.message_id, { sessionId, taskId: task.task_id, targets: [task.to] });
      this.messagesByTask.set(task.task_id, (this.messagesByTask.get(task.task_id) ?? new Set()).add(task.message_id));
    }
  }

  /**
   * A workflow's new snapshot: its record is written at the end of this synchronous run (or before, when
   * something flushes the store), in the batch its events wait for. The bus's acceptance of a message that
   * moved it flushes after that too: the record joins the turn's batch, committed only after the run.
   */
  snapshot(child: AnyActorRef, snapshot: { status: string }): void {
    if (!this.options.runtime.persistent) return;
    const sessionId = (child as AnyActorRef & { systemId?: string }).systemId ?? child.id;
    if (snapshot.status !== "active" && !this.evictAt.has(sessionId)) this.evictAt.set(sessionId, this.options.clock.now() + this.options.retentionMs);
    if (this.unwritten.size === 0) queueMicrotask(() => this.writeChanged());
    this.unwritten.set(sessionId, child);
  }

  /**
   * Makes this manager the one of node `owner` of a cluster (the bus calls it at start, before `restore`): it
   * restores only the workflows whose records name that node, writes `node` into each record, fences every
   * write with the node's lease, and writes nothing while the node does not hold it.
   */
  setOwner(owner: RecordOwner): void {
    this.owner = owner;
  }

  /** How a workflow record is written: fenced by the node's lease in a cluster; `undefined` when the node must not write (it lost its lease). */
  private writeOptions(): WriteOptions | undefined {
    if (this.owner === undefined) return {};
    const fence = this.owner.fence();
    return fence === undefined ? undefined : { fence };
  }

  /** Writes each workflow changed since the last write, once. A write the store refuses (a shared context that is not JSON) is reported. */
  private writeChanged(): void {
    for (const [sessionId, child] of this.unwritten) {
      this.writing(sessionId, (store, options) =>
        store.put("workflows", sessionId, workflowRecordOf(child, this.evictAt.get(sessionId), this.owner?.nodeId), options),
      );
      // Evicted as the bus stopped: written a last time, and forgotten.
      if (!this.sessions.has(sessionId)) this.evictAt.delete(sessionId);
    }
    this.unwritten.clear();
  }

  /**
   * Runs a write of one session's record, with the node's fence in a cluster (skipped when the node lost its
   * lease: another node may own the workflow now); the store's refusal is reported as a process warning.
   */
  private writing(sessionId: string, write: (store: Store, options: WriteOptions) => void): void {
    const options = this.writeOptions();
    if (options === undefined) return;
    try {
      write(this.options.runtime.store, options);
    } catch (error) {
      process.emitWarning(`troupe: workflow ${sessionId} could not be written to the store: ${toBridgeError(error).message}`, { code: "TROUPE_STORE" });
    }
  }

  /** A workflow actor's emitted event (the runtime relays it: the actor is the supervisor's). */
  emitted(_child: AnyActorRef, event: { type: string }): void {
    const emitted = event as WorkflowEmitted;
    // Metrics follow the machine's own events: an ended session moves from active to how it ended.
    if (emitted.type === "session_completed" || emitted.type === "session_terminated") {
      this.counts.active -= 1;
      this.counts[emitted.type === "session_completed" ? "completed" : "terminated"] += 1;
    }
    // Events and tasks leave once the change is durable, after the transition and the call that caused it:
    // the first step's tasks leave after createSession has registered the session and its participants,
    // and no send re-enters the actor mid-transition.
    const effect = emitted.type === "tasks_dispatch" ? () => this.dispatch(emitted.sessionId, emitted) : () => this.publish(emitted);
    const heldBack = this.creating.get(emitted.sessionId);
    if (heldBack !== undefined) heldBack.push(effect);
    else this.outbox.run(effect);
  }

  /** A workflow's event on the hub, by its `workflow.*` name. */
  private publish(event: Exclude<WorkflowEmitted, TasksDispatch>): void {
    const { type, ...fields } = event;
    this.options.runtime.hub.emit(WORKFLOW_EVENT_TYPES[type], event.sessionId, fields);
  }

  /**
   * A workflow actor was evicted (its retention ran out, `DELETE`, or the bus stopped): it is forgotten, and
   * removed from the store unless the bus is stopping.
   */
  released(childId: string): void {
    const entry = this.sessions.get(childId);
    if (entry === undefined) return;
    this.sessions.delete(childId);
    if (!this.stopping && this.options.runtime.persistent) {
      this.unwritten.delete(childId);
      this.evictAt.delete(childId);
      this.writing(childId, (store, options) => store.delete("workflows", childId, options));
    }
    this.counts[this.statusOf(entry)] -= 1;
    const { participants, tasks } = entry.actor.getSnapshot().context;
    for (const participant of participants) this.leave(participant.agent_id);
    for (const task of tasks) this.forgetTask(task.message_id);
    const { hub } = this.options.runtime;
    this.outbox.run(() => hub.emit("workflow.evicted", childId, { sessionId: childId }));
  }

  private usageField(envelope: MessageEnvelope): { usage?: TaskUsage } {
    const reported = usageOf(envelope.payload["usage"]) ?? usageOf(envelope.metadata?.["usage"]);
    const usage: TaskUsage | undefined = reported === undefined ? undefined : { input_tokens: reported.inputTokens, output_tokens: reported.outputTokens };
    return usage === undefined ? {} : { usage };
  }

  private taskAnswered(envelope: MessageEnvelope): { sessionId: string; taskId: string } | undefined {
    const inReplyTo = inReplyToOf(envelope);
    const byMessage = inReplyTo === undefined ? undefined : this.tasksByMessage.get(inReplyTo);
    if (byMessage !== undefined) return byMessage;
    const sessionId = envelope.sender.session_id;
    const taskId = taskIdOf(envelope);
    if (taskId === undefined) return undefined;
    if (sessionId !== undefined) return { sessionId, taskId };
    return this.pendingTaskOf(taskId, envelope.sender.agent_id, envelope.recipient.session_id);
  }

  /**
   * A task named only by its id: among the active sessions where it is pending for this responder (its
   * recipient or a fallback agent), the one the reply names in `recipient.session_id`, else the one sent to
   * the responder itself, else the oldest.
   */
  private pendingTaskOf(taskId: string, responder: string, sessionHint: string | undefined): PendingTaskRef | undefined {
    const candidates: PendingTaskRef[] = [];
    for (const messageId of this.messagesByTask.get(taskId) ?? []) {
      const task = this.tasksByMessage.get(messageId);
      const entry = task === undefined ? undefined : this.sessions.get(task.sessionId);
      if (task?.targets.includes(responder) && entry !== undefined && this.statusOf(entry) === "active") candidates.push(task);
    }
    return candidates.find((task) => task.sessionId === sessionHint) ?? candidates.find((task) => task.targets[0] === responder) ?? candidates[0];
  }

  private answer(task: { sessionId: string; taskId: string }, from: string, outcome: TaskOutcome, at: number): void {
    const entry = this.sessions.get(task.sessionId);
    if (entry === undefined || this.statusOf(entry) !== "active") return;
    const pending = this.contextOf(entry).tasks.find((each) => each.task_id === task.taskId && each.status === "pending");
    if (pending === undefined) return;
    this.forgetTask(pending.message_id);
    this.send(entry, { type: "TASK.ANSWERED", taskId: task.taskId, from, outcome: this.keptOutcome(entry, outcome), at });
  }

  /**
   * What a workflow keeps of a task's outcome: a result whole while the workflow's results stay within
   * `MAX_RESULTS_BYTES`, else a preview, `{ truncated: true, bytes, text }` (its text, or its JSON, cut at
   * `RESULT_PREVIEW_CHARS`); an error's code and message cut likewise.
   */
  private keptOutcome(entry: SessionEntry, outcome: TaskOutcome): TaskOutcome {
    if (outcome.status === "failed") {
      const { code, message } = outcome.error;
      return { status: "failed", error: { code: code.slice(0, 256), message: cutText(message, RESULT_PREVIEW_CHARS) } };
    }
    const json = JSON.stringify(outcome.result) ?? "null";
    const bytes = Buffer.byteLength(json);
    const kept = this.contextOf(entry).tasks.reduce((sum, task) => sum + (task.result_bytes ?? 0), 0);
    if (kept + bytes <= MAX_RESULTS_BYTES) return { ...outcome, result_bytes: bytes };
    const text = (outcome.result as { text?: unknown } | null)?.text;
    const preview = { truncated: true, bytes, text: cutText(typeof text === "string" ? text : json, RESULT_PREVIEW_CHARS) };
    return { ...outcome, result: preview, result_bytes: Buffer.byteLength(JSON.stringify(preview)) };
  }

  /** Drops an answered task from both indexes. */
  private forgetTask(messageId: string): void {
    const task = this.tasksByMessage.get(messageId);
    if (task === undefined) return;
    this.tasksByMessage.delete(messageId);
    const messages = this.messagesByTask.get(task.taskId);
    messages?.delete(messageId);
    if (messages?.size === 0) this.messagesByTask.delete(task.taskId);
  }

  /** A workflow's steps are kept with it: their size is bounded (413 past it). */
  private checkStepsSize(steps: readonly StepInput[]): void {
    const bytes = Buffer.byteLength(JSON.stringify(steps));
    if (bytes > MAX_STEPS_BYTES) {
      throw new BridgeError("CONFIG", `steps: ${bytes} bytes exceed the ${MAX_STEPS_BYTES} a workflow's steps may take`, {
        field: "steps",
        limitBytes: MAX_STEPS_BYTES,
        limit: MAX_STEPS_BYTES,
      });
    }
  }

  /** A shared context is kept with its session until eviction: its size is bounded (413 past it). */
  private checkSharedContextSize(sharedContext: Record<string, unknown>): void {
    const limit = this.options.maxSharedContextBytes;
    if (limit === undefined) return;
    const bytes = Buffer.byteLength(JSON.stringify(sharedContext));
    if (bytes > limit)
      throw new BridgeError("CONFIG", `shared_context: ${bytes} bytes exceed maxSharedContextBytes ${limit}`, {
        field: "shared_context",
        limitBytes: limit,
        limit,
      });
  }

  /**
   * A `troupe://` id names one of the runtime's agents or the bus's own endpoints and nothing else: no socket
   * may take such an id, so a workflow naming another would wait for an answer that can never come.
   */
  private checkAgentExists(agentId: string, field: string): void {
    if (!isRuntimeFramework(agentId) || agentId === ORCHESTRATOR_AGENT_ID || agentId === BUS_AGENT_ID) return;
    if (this.options.runtime.agentIdOfBusAgent(agentId) !== undefined) return;
    throw new BridgeError("NOT_FOUND", `${field}: ${agentId} is not an agent of this runtime`, { field, agentId });
  }

  /**
   * The machine of a workflow with these steps, built once per distinct steps (for the last
   * `MACHINE_CACHE_SIZE`): building one costs several times what spawning it does, and each machine holds
   * about 20 KiB. It is built from a frozen copy of the steps, which its workflows share as `context.steps`:
   * no caller's object is shared, and none can change the steps of another workflow.
   */
  private machineFor(steps: WorkflowStep[], stepTimeoutsMs: Record<string, number>): WorkflowMachine {
    let key: string;
    try {
      key = JSON.stringify(steps);
    } catch {
      // A task that is not JSON (a cycle, a BigInt): its workflow gets a machine of its own, as before.
      return createWorkflowMachine(steps, { stepTimeoutsMs });
    }
    const machine = this.machines.get(key) ?? createWorkflowMachine(deepFreeze(JSON.parse(key) as WorkflowStep[]), { stepTimeoutsMs });
    this.machines.delete(key);
    this.machines.set(key, machine);
    if (this.machines.size > MACHINE_CACHE_SIZE) this.machines.delete(this.machines.keys().next().value as string);
    return machine;
  }

  private participantOf(participant: ParticipantInput, at: number): WorkflowParticipant {
    return {
      agent_id: participant.agent_id,
      framework: participant.framework ?? frameworkOf(participant.agent_id),
      role: participant.role,
      status: "active",
      joined_at: at,
    };
  }

  private checkSteps(steps: WorkflowStep[], members: WorkflowParticipant[]): void {
    const seen = new Set<string>();
    for (const [index, step] of steps.entries()) {
      if (seen.has(step.name)) {
        throw new BridgeError("CONFIG", `steps.${index}.name: the step ${JSON.stringify(step.name)} is listed twice`, { field: `steps.${index}.name` });
      }
      seen.add(step.name);
      for (const field of ["task", "timeout"] as const) {
        if (step[field] !== undefined && step.required_agents.length === 0) {
          throw new BridgeError("CONFIG", `steps.${index}.${field}: a step with a ${field} needs required_agents`, { field: `steps.${index}.${field}` });
        }
      }
      for (const [agentIndex, agentId] of step.required_agents.entries()) {
        if (!members.some((member) => member.agent_id === agentId)) {
          const field = `steps.${index}.required_agents.${agentIndex}`;
          throw new BridgeError("CONFIG", `${field}: ${agentId} is not a participant`, { field });
        }
      }
    }
  }

  private join(member: WorkflowParticipant): void {
    const known = this.participation.get(member.agent_id);
    if (known === undefined) this.participation.set(member.agent_id, { framework: member.framework, sessions: 1 });
    else known.sessions += 1;
  }

  private leave(agentId: string): void {
    const known = this.participation.get(agentId);
    if (known === undefined) return;
    known.sessions -= 1;
    if (known.sessions === 0) this.participation.delete(agentId);
  }

  /** The session, when it exists (404). */
  private existing(sessionId: string): SessionEntry {
    const entry = this.sessions.get(sessionId);
    if (entry === undefined) throw sessionNotFound(sessionId);
    return entry;
  }

  /** The session, when it exists (404) and is still active (409). */
  private open(sessionId: string): SessionEntry {
    const entry = this.existing(sessionId);
    const status = this.statusOf(entry);
    if (status !== "active") {
      throw new BridgeError("CONFIG", `Session ${sessionId} is ${status}`, { conflict: true, sessionId, status });
    }
    return entry;
  }

  private contextOf(entry: SessionEntry): WorkflowContext {
    return entry.actor.getSnapshot().context;
  }

  private send(entry: SessionEntry, event: WorkflowEvent): void {
    entry.actor.send(event);
  }

  /** `active` while the actor runs; once it is done, the final state it reached. */
  private statusOf(entry: SessionEntry): WorkflowSessionStatus {
    const snapshot = entry.actor.getSnapshot();
    return snapshot.status === "done" ? snapshot.value : "active";
  }

  /** Sends an auto workflow's tasks; a task the bus refuses (a full queue, a stopped bus) fails at once. */
  private dispatch(sessionId: string, dispatch: TasksDispatch): void {
    const send = this.options.send;
    const entry = this.sessions.get(sessionId);
    if (send === undefined || entry === undefined || this.statusOf(entry) !== "active") return;
    const { participants } = this.contextOf(entry);
    const frameworkOfAgent = (agentId: string): string => participants.find((each) => each.agent_id === agentId)?.framework ?? frameworkOf(agentId);
    for (const { task, request } of taskRequestsOf(dispatch, { at: this.options.clock.now(), frameworkOf: frameworkOfAgent })) {
      send(request).catch((error: unknown) => {
        // A bus that stopped meanwhile has stopped the workflow too: nothing left to fail.
        if (entry.actor.getSnapshot().status !== "active") return;
        const failure = error instanceof BridgeError ? error : new BridgeError("INTERNAL", String(error));
        this.answer(
          { sessionId: dispatch.sessionId, taskId: task.task_id },
          task.to,
          { status: "failed", error: { code: failure.type, message: failure.message } },
          this.options.clock.now(),
        );
      });
    }
  }

  private viewOf(sessionId: string, entry: SessionEntry): WorkflowSession {
    return sessionViewOf(sessionId, entry.actor.getSnapshot());
  }
}

/**
 * A workflow's view (what `getSession` and `GET /sessions` show) from a snapshot of its actor: the live one, or
 * the one its stored record keeps (a cluster's list of the workflows other nodes run).
 */
function sessionViewOf(sessionId: string, snapshot: { status: string; value: unknown; context: WorkflowContext }): WorkflowSession {
  const { value, context } = snapshot;
  const { completion, termination } = context;
  return {
    session_id: sessionId,
    status: snapshot.status === "done" ? (value as WorkflowSessionStatus) : "active",
    initiator: context.initiator,
    participants: context.participants,
    workflow: { steps: context.steps, ...workflowViewOf(value, context) },
    dispatch: context.dispatch,
    shared_context: context.sharedContext,
    tasks: context.tasks,
    created_at: context.createdAt,
    updated_at: context.updatedAt,
    ...(completion === null ? {} : { completion: { summary: completion.summary ?? "", artifacts: completion.artifacts ?? [], completed_at: completion.at } }),
    ...(termination === null
      ? {}
      : {
          termination: {
            reason: termination.reason ?? "",
            ...(termination.details === undefined ? {} : { details: termination.details }),
            terminated_at: termination.at,
          },
        }),
  };
}

/** `text` cut at `chars` characters (never inside a surrogate pair), with an ellipsis when cut. */
function cutText(text: string, chars: number): string {
  return text.length <= chars ? text : `${text.slice(0, wholeCharEnd(text, chars))}…`;
}
