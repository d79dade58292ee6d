/**
 * The SessionManager of SPEC §3.4: workflow sessions, each an actor of the workflow machine built from its
 * steps, with the seed's positional API and events, and the correlation of `task_request` / `task_response`
 * messages with the steps of a session.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { createActor, type Actor, type InspectionEvent } from "xstate";
import {
  createWorkflowMachine,
  RESERVED_STEP_NAMES,
  workflowViewOf,
  type TaskOutcome,
  type TaskUsage,
  type WorkflowContext,
  type WorkflowDispatch,
  type WorkflowEmitted,
  type WorkflowEvent,
  type WorkflowMachine,
  type WorkflowParticipant,
  type WorkflowStep,
  type WorkflowTask,
  type WorkflowView,
} from "../../machines/workflow.machine.js";
import type { Clock } from "../clock.js";
import { BridgeError, sessionNotFound } from "../errors.js";
import { agentIdSchema, durationSchema, frameworkOf, inReplyToOf, taskIdOf, type EnvelopeInput, type MessageEnvelope } from "../protocol/envelope.js";
import { parseDuration } from "../protocol/durations.js";
import { Listeners, type Listener } from "../bus/listeners.js";
import { parseWith } from "../validation.js";
import { taskRequestsOf, type TasksDispatch } from "./dispatch.js";

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

/** Every event the session manager emits (a workflow's `tasks_dispatch` becomes messages instead). */
export type SessionManagerEvent = { type: "session_created"; sessionId: string; session: WorkflowSession } | Exclude<WorkflowEmitted, TasksDispatch>;

/** The name of one session manager event. */
export type SessionManagerEventType = SessionManagerEvent["type"];

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
  participants: z.array(participantSchema).max(1_000),
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

interface SessionEntry {
  actor: WorkflowActor;
  status: WorkflowSessionStatus;
}

/** Options of the session manager. */
export interface SessionManagerOptions {
  clock: Clock;
  inspect?: ((event: InspectionEvent) => void) | undefined;
  /** Sends an envelope through the bus: how an auto workflow's tasks leave. Without it, `dispatch: "auto"` is CONFIG. */
  send?: (envelope: EnvelopeInput) => Promise<unknown>;
}

function usageOf(value: unknown): TaskUsage | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const usage = value as Record<string, unknown>;
  const input = usage["input_tokens"] ?? usage["inputTokens"];
  const output = usage["output_tokens"] ?? usage["outputTokens"];
  if (typeof input !== "number" || typeof output !== "number") return undefined;
  return { input_tokens: input, output_tokens: output };
}

function stringOf(value: unknown, fallback: string): string {
  return typeof value === "string" && value !== "" ? value : fallback;
}

/** Workflow sessions of one bus. Reach it as `bus.sessionManager`. */
export class SessionManager {
  private readonly sessions = new Map<string, SessionEntry>();
  private readonly listeners = new Listeners<SessionManagerEvent>();
  /** How many sessions each agent takes part in: they count as registered. */
  private readonly participation = new Map<string, { framework: string; sessions: number }>();
  /** Pending tasks by the `message_id` of their `task_request`, to correlate replies without `session_id`. */
  private readonly tasksByMessage = new Map<string, { sessionId: string; taskId: string }>();

  constructor(private readonly options: SessionManagerOptions) {}

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
      { initiator: initiatorAgentId, participants, steps, shared_context: sharedContext, ...(options.dispatch === undefined ? {} : { dispatch: options.dispatch }) },
      "(arguments)",
    );
    if (input.dispatch === "auto" && this.options.send === undefined) {
      throw new BridgeError("CONFIG", 'dispatch: "auto" needs a bus to send the tasks through', { field: "dispatch" });
    }
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
    this.checkSteps(input.steps, members);
    const sessionId = `sess_${randomUUID().replaceAll("-", "")}`;
    const stepTimeoutsMs = Object.fromEntries(
      input.steps.flatMap((step, index) => (step.timeout === undefined ? [] : [[step.name, parseDuration(step.timeout, `steps.${index}.timeout`)]])),
    );
    const actor = createActor(createWorkflowMachine(input.steps, { stepTimeoutsMs }), {
      id: sessionId,
      clock: this.options.clock,
      ...(this.options.inspect ? { inspect: this.options.inspect } : {}),
      input: { sessionId, initiator: input.initiator, participants: members, sharedContext: input.shared_context, createdAt: at, dispatch: input.dispatch },
    });
    const entry: SessionEntry = { actor, status: "active" };
    this.sessions.set(sessionId, entry);
    actor.on("*", (event) => this.onEmitted(entry, event));
    actor.subscribe({ error: (error) => process.emitWarning(`Workflow session ${sessionId} failed: ${String(error)}`, "TroupeWorkflowWarning") });
    actor.start();
    for (const member of members) this.join(member);
    this.listeners.emit({ type: "session_created", sessionId, session: this.viewOf(sessionId, entry) });
    return sessionId;
  }

  /** Adds a participant (it enters `active`). A participant already there is CONFIG. */
  addParticipant(sessionId: string, participant: ParticipantInput): WorkflowSession {
    const entry = this.open(sessionId);
    const parsed = parseWith(participantSchema, participant, "(participant)");
    if (this.contextOf(entry).participants.some((member) => member.agent_id === parsed.agent_id)) {
      throw new BridgeError("CONFIG", `agent_id: ${parsed.agent_id} is already a participant of ${sessionId}`, { field: "agent_id" });
    }
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
      throw new BridgeError("CONFIG", `current_step: unknown step ${JSON.stringify(parsed.current_step)}; steps are ${names.join(", ")}`, { field: "current_step" });
    }
    for (const field of ["completed_steps", "pending_steps"] as const) {
      const bad = parsed[field]?.find(unknown);
      if (bad !== undefined) throw new BridgeError("CONFIG", `${field}: unknown step ${JSON.stringify(bad)}`, { field });
    }
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
    return [...this.sessions].map(([sessionId, entry]) => this.viewOf(sessionId, entry));
  }

  /**
   * Completes a session (final): `{ summary, artifacts }` stay with it for the aggregator. A session that has
   * ended already is left as it is (the seed completes, then shows how to terminate).
   */
  completeSession(sessionId: string, completion: { summary?: string; artifacts?: unknown[] } = {}): WorkflowSession {
    const parsed = parseWith(completionSchema, completion, "(completion)");
    const entry = this.existing(sessionId);
    if (entry.status !== "active") return this.viewOf(sessionId, entry);
    this.send(entry, { type: "COMPLETE", summary: parsed.summary, artifacts: parsed.artifacts, at: this.options.clock.now() });
    return this.viewOf(sessionId, entry);
  }

  /** Terminates a session (final) with a reason. A session that has ended already is left as it is. */
  terminateSession(sessionId: string, termination: { reason: string; details?: unknown }): WorkflowSession {
    const parsed = parseWith(terminationSchema, termination, "(termination)");
    const entry = this.existing(sessionId);
    if (entry.status !== "active") return this.viewOf(sessionId, entry);
    this.send(entry, {
      type: "TERMINATE",
      reason: parsed.reason,
      ...(parsed.details === undefined ? {} : { details: parsed.details }),
      at: this.options.clock.now(),
    });
    return this.viewOf(sessionId, entry);
  }

  /** Listens to one event type; returns the function that stops listening. */
  on<T extends SessionManagerEventType>(type: T, listener: Listener<SessionManagerEvent, T>): () => void {
    return this.listeners.on(type, listener);
  }

  /** Stops listening. */
  off<T extends SessionManagerEventType>(type: T, listener: Listener<SessionManagerEvent, T>): void {
    this.listeners.off(type, listener);
  }

  // ---- what the bus asks while it routes messages ----

  /** Whether an agent takes part in any session: such agents count as registered. */
  hasParticipant(agentId: string): boolean {
    return this.participation.has(agentId);
  }

  /** Every agent that takes part in a session. */
  participantAgents(): Array<{ agent_id: string; framework: string }> {
    return [...this.participation].map(([agent_id, { framework }]) => ({ agent_id, framework }));
  }

  /**
   * Checks a message that names `sender.session_id`: the session exists (404), is open (409), and the sender
   * takes part in it (403).
   */
  checkSender(envelope: MessageEnvelope): void {
    const sessionId = envelope.sender.session_id;
    if (sessionId === undefined) return;
    const entry = this.open(sessionId);
    const agentId = envelope.sender.agent_id;
    if (!this.contextOf(entry).participants.some((participant) => participant.agent_id === agentId)) {
      throw new BridgeError("AUTH", `${agentId} is not a participant of session ${sessionId}`, { forbidden: true, sessionId, agentId });
    }
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
      if (entry === undefined || entry.status !== "active") return;
      const taskId = taskIdOf(envelope) ?? envelope.message_id;
      this.tasksByMessage.set(envelope.message_id, { sessionId, taskId });
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

  /** A `task_request` could not be delivered: its task fails with DELIVERY_FAILED. */
  deliveryFailed(envelope: MessageEnvelope, error: string): void {
    const task = this.tasksByMessage.get(envelope.message_id);
    if (task === undefined) return;
    this.answer(task, envelope.recipient.agent_id, { status: "failed", error: { code: "DELIVERY_FAILED", message: error } }, this.options.clock.now());
  }

  /** Stops every session's actor (the bus is stopping). */
  stop(): void {
    for (const { actor } of this.sessions.values()) actor.stop();
  }

  private usageField(envelope: MessageEnvelope): { usage?: TaskUsage } {
    const usage = usageOf(envelope.payload["usage"]) ?? usageOf(envelope.metadata?.["usage"]);
    return usage === undefined ? {} : { usage };
  }

  private taskAnswered(envelope: MessageEnvelope): { sessionId: string; taskId: string } | undefined {
    const inReplyTo = inReplyToOf(envelope);
    const byMessage = inReplyTo === undefined ? undefined : this.tasksByMessage.get(inReplyTo);
    if (byMessage !== undefined) return byMessage;
    const sessionId = envelope.sender.session_id;
    const taskId = taskIdOf(envelope);
    if (sessionId === undefined || taskId === undefined) return undefined;
    return { sessionId, taskId };
  }

  private answer(task: { sessionId: string; taskId: string }, from: string, outcome: TaskOutcome, at: number): void {
    const entry = this.sessions.get(task.sessionId);
    if (entry === undefined || entry.status !== "active") return;
    const pending = this.contextOf(entry).tasks.find((each) => each.task_id === task.taskId && each.status === "pending");
    if (pending === undefined) return;
    this.tasksByMessage.delete(pending.message_id);
    this.send(entry, { type: "TASK.ANSWERED", taskId: task.taskId, from, outcome, at });
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
    if (entry.status !== "active") {
      throw new BridgeError("CONFIG", `Session ${sessionId} is ${entry.status}`, { conflict: true, sessionId, status: entry.status });
    }
    return entry;
  }

  private contextOf(entry: SessionEntry): WorkflowContext {
    return entry.actor.getSnapshot().context;
  }

  private send(entry: SessionEntry, event: WorkflowEvent): void {
    entry.actor.send(event);
  }

  private onEmitted(entry: SessionEntry, event: WorkflowEmitted): void {
    if (event.type === "tasks_dispatch") {
      // Sent once the transition and the call that caused it are over: the first step's tasks leave after
      // createSession has registered the participants, and no send re-enters the actor mid-transition.
      queueMicrotask(() => this.dispatch(entry, event));
      return;
    }
    if (event.type === "session_completed") entry.status = "completed";
    if (event.type === "session_terminated") entry.status = "terminated";
    this.listeners.emit(event);
  }

  /** Sends an auto workflow's tasks; a task the bus refuses (a full queue, a stopped bus) fails at once. */
  private dispatch(entry: SessionEntry, dispatch: TasksDispatch): void {
    const send = this.options.send;
    if (send === undefined || entry.status !== "active") return;
    const { participants } = this.contextOf(entry);
    const frameworkOfAgent = (agentId: string): string => participants.find((each) => each.agent_id === agentId)?.framework ?? frameworkOf(agentId);
    for (const { task, request } of taskRequestsOf(dispatch, { at: this.options.clock.now(), frameworkOf: frameworkOfAgent })) {
      send(request).catch((error: unknown) => {
        // A bus that stopped meanwhile has stopped the workflow too: nothing left to fail.
        if (entry.actor.getSnapshot().status !== "active") return;
        const failure = error instanceof BridgeError ? error : new BridgeError("INTERNAL", String(error));
        this.answer({ sessionId: dispatch.sessionId, taskId: task.task_id }, task.to, { status: "failed", error: { code: failure.type, message: failure.message } }, this.options.clock.now());
      });
    }
  }

  private viewOf(sessionId: string, entry: SessionEntry): WorkflowSession {
    const { value, context } = entry.actor.getSnapshot();
    const { completion, termination } = context;
    return {
      session_id: sessionId,
      status: entry.status,
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
}
