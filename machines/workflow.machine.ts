/**
 * The workflow machine: one bus workflow session, built from its steps.
 *
 * `createWorkflowMachine([{ name: "design", … }, { name: "implementation", … }, { name: "review", … }])` has one
 * state per step, in order, then `completed` and `terminated` (both final). Tasks delegated while a step is
 * current belong to that step; when every `required_agents` entry of the current step has answered one of
 * its tasks, the workflow moves to the next step by itself. `WORKFLOW.UPDATE` moves it explicitly.
 * Participants and the shared context live here too, so the session's whole state is the actor's snapshot.
 * Times arrive as `at` fields of events; the machine itself does no I/O.
 *
 * A workflow created with `dispatch: "auto"` runs itself (SPEC §3.7): entering a step that has a `task`
 * records one pending task per required agent and emits `tasks_dispatch`, which the session manager turns into
 * `task_request` envelopes; a failed task of the current step ends it as `terminated` (`task_failed`); the
 * last step's answers end it as `completed`, with a summary of every step's results. In any workflow, a step
 * with a timeout that is still waiting for answers that long after it was entered ends it (`task_failed`).
 */
import { and, assign, enqueueActions, setup } from "xstate";

/** One step of a workflow: its name (a state of the machine) and the agents that must answer in it. */
export interface WorkflowStep {
  name: string;
  required_agents: string[];
  /** What a `dispatch: "auto"` workflow asks each required agent to do when it enters the step. */
  task?: string | Record<string, unknown>;
  /** How long the step may wait for answers, as envelopes write durations (`"30s"`); then the workflow ends (`task_failed`). */
  timeout?: string;
}

/** `auto`: troupe sends each step's task and ends the workflow by itself (SPEC §3.7); `manual`: the agents' messages drive it. */
export type WorkflowDispatch = "auto" | "manual";

/** What a step's timeout or a failed task leaves in `termination.details`, with the reason `task_failed`. */
export interface TaskFailure {
  step: string;
  agent: string;
  error: { code: string; message: string };
}

/** The answers of earlier steps handed to a dispatched task: `{ [step]: { [agentId]: result } }`. */
export type StepResults = Record<string, Record<string, unknown>>;

/** One `task_request` the session manager sends for `tasks_dispatch`; the machine picks the ids, so a model can name them. */
export interface DispatchedTask {
  task_id: string;
  message_id: string;
  to: string;
}

/** A participant of a workflow session. Participants enter `active`. */
export interface WorkflowParticipant {
  agent_id: string;
  framework: string;
  role: string;
  status: "active";
  joined_at: number;
}

/** Token counts an agent reported with its answer. */
export interface TaskUsage {
  input_tokens: number;
  output_tokens: number;
}

/** How a task ended. */
export type TaskOutcome =
  { status: "completed"; result: unknown; usage?: TaskUsage; result_bytes?: number } | { status: "failed"; error: { code: string; message: string } };

/** A task delegated in a workflow session (a `task_request` naming the session). */
export interface WorkflowTask {
  task_id: string;
  /** The `message_id` of the `task_request`. */
  message_id: string;
  /** The step that was current when the task was delegated. */
  step: string;
  from: string;
  to: string;
  status: "pending" | "completed" | "failed";
  delegated_at: number;
  answered_at?: number;
  /** The agent that answered (the recipient, or one of its fallback agents). */
  answered_by?: string;
  result?: unknown;
  /** The bytes of `result`'s JSON, as the session manager measured it: what counts against a workflow's results bound. */
  result_bytes?: number;
  error?: { code: string; message: string };
  usage?: TaskUsage;
}

/** What the session manager gives a new workflow session. */
export interface WorkflowInput {
  sessionId: string;
  initiator: string;
  participants: WorkflowParticipant[];
  sharedContext: Record<string, unknown>;
  createdAt: number;
  /** How long the session stays readable once it has ended; its owner evicts it then (0: at once). */
  retentionMs: number;
  dispatch: WorkflowDispatch;
}

/** How a session ended, when it has. */
export interface WorkflowEnding {
  at: number;
  summary?: string;
  artifacts?: unknown[];
  reason?: string;
  details?: unknown;
}

/** The session's whole state besides its state value (the current step, `completed` or `terminated`). */
export interface WorkflowContext extends WorkflowInput {
  steps: WorkflowStep[];
  /** The step the workflow is at; once it has ended, the step it ended at. */
  currentStep: string;
  /** When the current step was entered: its timeout counts from there. */
  stepEnteredAt: number;
  /** How many times each step's task was dispatched: the round number in the ids of its tasks. */
  dispatchRounds: Record<string, number>;
  completedSteps: string[];
  pendingSteps: string[];
  tasks: WorkflowTask[];
  updatedAt: number;
  completion: WorkflowEnding | null;
  termination: WorkflowEnding | null;
}

/** Events a workflow session accepts. */
export type WorkflowEvent =
  | { type: "TASK.DELEGATED"; taskId: string; messageId: string; from: string; to: string; at: number }
  | { type: "TASK.ANSWERED"; taskId: string; from: string; outcome: TaskOutcome; at: number }
  | { type: "WORKFLOW.UPDATE"; currentStep: string; completedSteps?: string[]; pendingSteps?: string[]; at: number }
  | { type: "PARTICIPANT.ADD"; participant: WorkflowParticipant; at: number }
  | { type: "PARTICIPANT.REMOVE"; agentId: string; at: number }
  | { type: "CONTEXT.UPDATE"; sharedContext: Record<string, unknown>; at: number }
  | { type: "COMPLETE"; summary: string; artifacts: unknown[]; at: number }
  | { type: "TERMINATE"; reason: string; details?: unknown; at: number };

/** The workflow as the session manager shows it. */
export interface WorkflowView {
  current_step: string | null;
  completed_steps: string[];
  pending_steps: string[];
}

/** Events a workflow session emits: the session manager's events (SPEC §3.4) besides `session_created`. */
export type WorkflowEmitted =
  | { type: "participant_added"; sessionId: string; participant: WorkflowParticipant }
  | { type: "participant_removed"; sessionId: string; agentId: string }
  | { type: "workflow_updated"; sessionId: string; previous_step: string; workflow: WorkflowView; cause: "update" | "advance" }
  | { type: "context_updated"; sessionId: string; shared_context: Record<string, unknown> }
  | { type: "task_delegated"; sessionId: string; task: WorkflowTask }
  | { type: "task_completed"; sessionId: string; task: WorkflowTask }
  | { type: "session_completed"; sessionId: string; summary: string; artifacts: unknown[] }
  | { type: "session_terminated"; sessionId: string; reason: string; details?: unknown }
  /** An auto workflow entered a step with a task: send `task_request`s `from` the initiator for `tasks`. */
  | {
      type: "tasks_dispatch";
      sessionId: string;
      from: string;
      step: string;
      task: string | Record<string, unknown>;
      tasks: DispatchedTask[];
      shared_context: Record<string, unknown>;
      results: StepResults;
      /** The step's timeout: the requests need not outlive it. */
      timeoutMs?: number;
    };

/** State names a step may not take: the final states. */
export const RESERVED_STEP_NAMES = ["completed", "terminated"] as const;

/** The task an event answers, while it is still pending. */
function pendingTask(context: WorkflowContext, taskId: string): WorkflowTask | undefined {
  return context.tasks.find((task) => task.task_id === taskId && task.status === "pending");
}

/** The agents that completed a task of `step`. */
function answeredAgents(context: WorkflowContext, step: string): Set<string> {
  return new Set(context.tasks.filter((task) => task.step === step && task.status === "completed").map((task) => task.answered_by ?? task.to));
}

/** A move of the workflow, explicit (`update`) or automatic (`advance`): the context change and its event. */
function workflowUpdate(
  context: WorkflowContext,
  move: { previous: string; current: string; completedSteps: string[]; pendingSteps: string[]; at: number; cause: "update" | "advance" },
) {
  const { previous, current, completedSteps, pendingSteps, at, cause } = move;
  return {
    assign: { completedSteps, pendingSteps, updatedAt: at },
    emit: {
      type: "workflow_updated" as const,
      sessionId: context.sessionId,
      previous_step: previous,
      workflow: { current_step: current, completed_steps: completedSteps, pending_steps: pendingSteps },
      cause,
    },
  };
}

/** The time an event carries; events without one (the start, a delay) count from the last change. */
function atOf(context: WorkflowContext, event: { type: string }): number {
  return "at" in event && typeof event.at === "number" ? event.at : context.updatedAt;
}

function requiredAgentsOf(context: WorkflowContext, step: string): string[] {
  return context.steps.find((each) => each.name === step)?.required_agents ?? [];
}

/** The required agents of `step` that have not completed a task of it yet, in their order. */
function unansweredAgents(context: WorkflowContext, step: string): string[] {
  const answered = answeredAgents(context, step);
  return requiredAgentsOf(context, step).filter((agentId) => !answered.has(agentId));
}

/** The completed answers of the steps before `step`, by step and agent (an agent's latest answer wins). */
function resultsBefore(context: WorkflowContext, step: string): StepResults {
  const index = context.steps.findIndex((each) => each.name === step);
  const earlier = new Set(context.steps.slice(0, index).map((each) => each.name));
  const results: StepResults = {};
  for (const task of context.tasks) {
    if (task.status !== "completed" || !earlier.has(task.step)) continue;
    results[task.step] = { ...results[task.step], [task.answered_by ?? task.to]: task.result };
  }
  return results;
}

/** A result as one line of a summary: its `text` when it has one, else its JSON, cut at `maxLength`. */
function resultLine(result: unknown, maxLength = 200): string {
  const text = (result as { text?: unknown } | null)?.text;
  const line = (typeof text === "string" ? text : (JSON.stringify(result) ?? "")).replace(/\s+/g, " ").trim();
  return line.length > maxLength ? `${line.slice(0, maxLength - 1)}…` : line;
}

/** How an auto workflow completes: a summary line per answer, and every answer as an artifact, in step order. */
function completionOf(context: WorkflowContext, at: number): { summary: string; artifacts: unknown[]; at: number } {
  const lines = [`Completed ${context.steps.map((step) => step.name).join(" → ")}.`];
  const artifacts: unknown[] = [];
  for (const step of context.steps) {
    for (const task of context.tasks) {
      if (task.step !== step.name || task.status !== "completed") continue;
      const agentId = task.answered_by ?? task.to;
      lines.push(`- ${step.name}, ${agentId}: ${resultLine(task.result)}`);
      artifacts.push({ step: step.name, agent_id: agentId, task_id: task.task_id, result: task.result });
    }
  }
  return { summary: lines.join("\n"), artifacts, at };
}

/** How a step that outlived its timeout ends the workflow: `task_failed`, naming the first agent still owing an answer. */
function stepTimeoutEnding(context: WorkflowContext, step: string, timeoutMs: number): { reason: string; details: TaskFailure; at: number } {
  const agent = unansweredAgents(context, step)[0] ?? "";
  return {
    reason: "task_failed",
    details: { step, agent, error: { code: "TIMEOUT", message: `${agent} did not answer within ${timeoutMs} ms` } },
    at: context.stepEnteredAt + timeoutMs,
  };
}

function stepAfter(steps: WorkflowStep[], name: string): string | undefined {
  return steps[steps.findIndex((step) => step.name === name) + 1]?.name;
}

/**
 * When a delay armed in the workflow's current step falls due, as an absolute time (epoch ms): a step's
 * timeout (its only delay, in milliseconds) counts from `stepEnteredAt`. A workflow restored from the store
 * resumes the timeout from this, so a restart does not reset it.
 */
export function workflowDelayDueAt(context: Pick<WorkflowContext, "stepEnteredAt">, delay: string | number): number {
  return context.stepEnteredAt + Number(delay);
}

/**
 * The `tasks_dispatch` of the tasks that an auto workflow dispatched in its current step (its latest round) and
 * that are still pending, or `undefined` when there are none: what to send again after a restart, under the
 * same ids, so that the bus drops the ones it has already (they were sent before the process ended).
 */
export function pendingDispatchOf(context: WorkflowContext): Omit<Extract<WorkflowEmitted, { type: "tasks_dispatch" }>, "timeoutMs"> | undefined {
  const step = context.steps.find((each) => each.name === context.currentStep);
  const round = context.dispatchRounds[context.currentStep];
  if (context.dispatch !== "auto" || step?.task === undefined || round === undefined) return undefined;
  const prefix = `${context.sessionId}/${step.name}/${round}/`;
  const tasks = context.tasks
    .filter((task) => task.step === step.name && task.status === "pending" && task.message_id.startsWith(prefix))
    .map(({ task_id, message_id, to }) => ({ task_id, message_id, to }));
  if (tasks.length === 0) return undefined;
  return {
    type: "tasks_dispatch",
    sessionId: context.sessionId,
    from: context.initiator,
    step: step.name,
    task: step.task,
    tasks,
    shared_context: context.sharedContext,
    results: resultsBefore(context, step.name),
  };
}

/** The workflow view of a snapshot's state value and context. */
export function workflowViewOf(value: unknown, context: WorkflowContext): WorkflowView {
  const current = typeof value === "string" && context.steps.some((step) => step.name === value) ? value : null;
  return { current_step: current, completed_steps: context.completedSteps, pending_steps: context.pendingSteps };
}

const workflowSetup = setup({
  types: {
    context: {} as WorkflowContext,
    events: {} as WorkflowEvent,
    input: {} as WorkflowInput,
    emitted: {} as WorkflowEmitted,
  },
  guards: {
    isPendingTask: ({ context, event }) => event.type === "TASK.ANSWERED" && pendingTask(context, event.taskId) !== undefined,
    /** The answer completes a task of `step` and, with it, every required agent of `step` has answered. */
    completesStep: ({ context, event }, params: { step: string }) => {
      if (event.type !== "TASK.ANSWERED" || event.outcome.status !== "completed") return false;
      const task = pendingTask(context, event.taskId);
      if (task === undefined || task.step !== params.step) return false;
      const required = context.steps.find((step) => step.name === params.step)?.required_agents ?? [];
      const answered = answeredAgents(context, params.step).add(event.from);
      return required.length > 0 && required.every((agentId) => answered.has(agentId));
    },
    targetsStep: ({ event }, params: { step: string }) => event.type === "WORKFLOW.UPDATE" && event.currentStep === params.step,
    /** A task delegated by a message that troupe did not dispatch itself (a dispatched one is recorded already). */
    isNewTask: ({ context, event }) => event.type === "TASK.DELEGATED" && pendingTask(context, event.taskId) === undefined,
    /** An auto workflow: troupe dispatches the tasks and ends the workflow itself. */
    dispatchesTasks: ({ context }) => context.dispatch === "auto",
    /** The answer fails a pending task of `step`. */
    failsTask: ({ context, event }, params: { step: string }) =>
      event.type === "TASK.ANSWERED" && event.outcome.status === "failed" && pendingTask(context, event.taskId)?.step === params.step,
    /** A required agent of `step` still owes its answer. */
    awaitsAnswers: ({ context }, params: { step: string }) => unansweredAgents(context, params.step).length > 0,
  },
  actions: {
    enterStep: assign((_, params: { step: string; at: number }) => ({ currentStep: params.step, stepEnteredAt: params.at })),
    /** In an auto workflow, records one pending task per required agent of a step with a task, and asks for them to be sent. */
    dispatchTasks: enqueueActions(({ context, enqueue }, params: { step: string; at: number; timeoutMs: number | undefined }) => {
      const step = context.steps.find((each) => each.name === params.step);
      if (context.dispatch !== "auto" || step?.task === undefined) return;
      const round = (context.dispatchRounds[step.name] ?? 0) + 1;
      const tasks = step.required_agents.map((to, index): WorkflowTask => ({
        task_id: `${context.sessionId}/${step.name}/${round}/${to}`,
        message_id: `${context.sessionId}/${step.name}/${round}/${index}`,
        step: step.name,
        from: context.initiator,
        to,
        status: "pending",
        delegated_at: params.at,
      }));
      enqueue.assign({ tasks: [...context.tasks, ...tasks], dispatchRounds: { ...context.dispatchRounds, [step.name]: round }, updatedAt: params.at });
      for (const task of tasks) enqueue.emit({ type: "task_delegated", sessionId: context.sessionId, task });
      enqueue.emit({
        type: "tasks_dispatch",
        sessionId: context.sessionId,
        from: context.initiator,
        step: step.name,
        task: step.task,
        tasks: tasks.map(({ task_id, message_id, to }) => ({ task_id, message_id, to })),
        shared_context: context.sharedContext,
        results: resultsBefore(context, step.name),
        ...(params.timeoutMs === undefined ? {} : { timeoutMs: params.timeoutMs }),
      });
    }),
    delegate: enqueueActions(({ context, enqueue }, event: Extract<WorkflowEvent, { type: "TASK.DELEGATED" }>) => {
      const task: WorkflowTask = {
        task_id: event.taskId,
        message_id: event.messageId,
        step: context.currentStep,
        from: event.from,
        to: event.to,
        status: "pending",
        delegated_at: event.at,
      };
      enqueue.assign({ tasks: [...context.tasks, task], updatedAt: event.at });
      enqueue.emit({ type: "task_delegated", sessionId: context.sessionId, task });
    }),
    answer: enqueueActions(({ context, enqueue }, event: Extract<WorkflowEvent, { type: "TASK.ANSWERED" }>) => {
      const task = pendingTask(context, event.taskId);
      if (task === undefined) return;
      const { outcome } = event;
      const answered: WorkflowTask = {
        ...task,
        status: outcome.status,
        answered_at: event.at,
        answered_by: event.from,
        ...(outcome.status === "completed"
          ? {
              result: outcome.result,
              ...(outcome.result_bytes === undefined ? {} : { result_bytes: outcome.result_bytes }),
              ...(outcome.usage ? { usage: outcome.usage } : {}),
            }
          : { error: outcome.error }),
      };
      enqueue.assign({ tasks: context.tasks.map((each) => (each === task ? answered : each)), updatedAt: event.at });
      enqueue.emit({ type: "task_completed", sessionId: context.sessionId, task: answered });
    }),
    advance: enqueueActions(({ context, event, enqueue }, params: { from: string; to: string }) => {
      const at = "at" in event ? event.at : context.updatedAt;
      const completedSteps = context.completedSteps.includes(params.from) ? context.completedSteps : [...context.completedSteps, params.from];
      const pendingSteps = context.pendingSteps.filter((step) => step !== params.to);
      const update = workflowUpdate(context, { previous: params.from, current: params.to, completedSteps, pendingSteps, at, cause: "advance" });
      enqueue.assign(update.assign);
      enqueue.emit(update.emit);
    }),
    moveTo: enqueueActions(({ context, enqueue }, event: Extract<WorkflowEvent, { type: "WORKFLOW.UPDATE" }>) => {
      const names = context.steps.map((step) => step.name);
      const index = names.indexOf(event.currentStep);
      const completedSteps = event.completedSteps ?? names.slice(0, index);
      const pendingSteps = event.pendingSteps ?? names.slice(index + 1);
      const update = workflowUpdate(context, {
        previous: context.currentStep,
        current: event.currentStep,
        completedSteps,
        pendingSteps,
        at: event.at,
        cause: "update",
      });
      enqueue.assign(update.assign);
      enqueue.emit(update.emit);
    }),
    addParticipant: enqueueActions(({ context, enqueue }, event: Extract<WorkflowEvent, { type: "PARTICIPANT.ADD" }>) => {
      const others = context.participants.filter((participant) => participant.agent_id !== event.participant.agent_id);
      enqueue.assign({ participants: [...others, event.participant], updatedAt: event.at });
      enqueue.emit({ type: "participant_added", sessionId: context.sessionId, participant: event.participant });
    }),
    removeParticipant: enqueueActions(({ context, enqueue }, event: Extract<WorkflowEvent, { type: "PARTICIPANT.REMOVE" }>) => {
      enqueue.assign({
        participants: context.participants.filter((participant) => participant.agent_id !== event.agentId),
        updatedAt: event.at,
      });
      enqueue.emit({ type: "participant_removed", sessionId: context.sessionId, agentId: event.agentId });
    }),
    updateContext: enqueueActions(({ context, enqueue }, event: Extract<WorkflowEvent, { type: "CONTEXT.UPDATE" }>) => {
      enqueue.assign({ sharedContext: event.sharedContext, updatedAt: event.at });
      enqueue.emit({ type: "context_updated", sessionId: context.sessionId, shared_context: event.sharedContext });
    }),
    /** A step's timeout passed: its tasks still pending fail with TIMEOUT (`task_completed`, status failed). */
    expireTasks: enqueueActions(({ context, enqueue }, params: { step: string; timeoutMs: number; at: number }) => {
      const { step, timeoutMs, at } = params;
      const failed = new Map<WorkflowTask, WorkflowTask>();
      for (const task of context.tasks) {
        if (task.step !== step || task.status !== "pending") continue;
        const error = { code: "TIMEOUT", message: `${task.to} did not answer within ${timeoutMs} ms` };
        failed.set(task, { ...task, status: "failed", answered_at: at, error });
      }
      enqueue.assign({ tasks: context.tasks.map((task) => failed.get(task) ?? task), updatedAt: at });
      for (const task of failed.values()) enqueue.emit({ type: "task_completed", sessionId: context.sessionId, task });
    }),
    complete: enqueueActions(({ context, enqueue }, params: { summary: string; artifacts: unknown[]; at: number }) => {
      const { summary, artifacts, at } = params;
      // The step the workflow completes at is done too (its state is left for `completed`).
      const completedSteps = context.completedSteps.includes(context.currentStep) ? context.completedSteps : [...context.completedSteps, context.currentStep];
      const pendingSteps = context.pendingSteps.filter((step) => step !== context.currentStep);
      enqueue.assign({ completion: { at, summary, artifacts }, completedSteps, pendingSteps, updatedAt: at });
      enqueue.emit({ type: "session_completed", sessionId: context.sessionId, summary, artifacts });
    }),
    terminate: enqueueActions(({ context, enqueue }, params: { reason: string; details?: unknown; at: number }) => {
      const { reason, details, at } = params;
      enqueue.assign({ termination: { at, reason, ...(details === undefined ? {} : { details }) }, updatedAt: at });
      enqueue.emit({ type: "session_terminated", sessionId: context.sessionId, reason, ...(details === undefined ? {} : { details }) });
    }),
  },
});

/** What a workflow machine needs besides its steps. */
export interface WorkflowMachineOptions {
  /** Each step's `timeout` in milliseconds, by step name (the session manager parses the durations). */
  stepTimeoutsMs?: Record<string, number>;
}

type StepEvent = { context: WorkflowContext; event: WorkflowEvent };
type AnswerEvent = { event: Extract<WorkflowEvent, { type: "TASK.ANSWERED" }> };

/** How a failed answer ends an auto workflow: `task_failed`, naming the agent and its error. */
function taskFailureEnding(step: string, { event }: AnswerEvent): { reason: string; details: TaskFailure; at: number } {
  // The guard `failsTask` lets failed outcomes through only.
  const { error } = event.outcome as Extract<TaskOutcome, { status: "failed" }>;
  return { reason: "task_failed", details: { step, agent: event.from, error }, at: event.at };
}

/**
 * Builds the machine of a workflow session from its steps: one state per step, in order, then `completed`
 * and `terminated`. Step names must be unique, non-empty, without `.` or `#`, and not reserved; the session
 * manager checks that, and that there is at least one step, before calling.
 */
export function createWorkflowMachine(steps: WorkflowStep[], options: WorkflowMachineOptions = {}) {
  const names = steps.map((step) => step.name);
  const stepStates = Object.fromEntries(
    steps.map((step) => {
      const next = stepAfter(steps, step.name);
      const timeoutMs = options.stepTimeoutsMs?.[step.name];
      const params = { step: step.name };
      const onAllAnswered =
        next === undefined
          ? {
              guard: and([{ type: "completesStep" as const, params }, "dispatchesTasks" as const]),
              target: "completed",
              actions: [
                { type: "answer" as const, params: ({ event }: AnswerEvent) => event },
                { type: "complete" as const, params: ({ context, event }: StepEvent) => completionOf(context, atOf(context, event)) },
              ],
            }
          : {
              guard: { type: "completesStep" as const, params },
              target: next,
              actions: [
                { type: "answer" as const, params: ({ event }: AnswerEvent) => event },
                { type: "advance" as const, params: { from: step.name, to: next } },
              ],
            };
      const onTimeout =
        timeoutMs === undefined
          ? {}
          : {
              after: {
                [timeoutMs]: {
                  guard: { type: "awaitsAnswers" as const, params },
                  target: "terminated",
                  actions: [
                    {
                      type: "expireTasks" as const,
                      params: ({ context }: StepEvent) => ({ step: step.name, timeoutMs, at: context.stepEnteredAt + timeoutMs }),
                    },
                    { type: "terminate" as const, params: ({ context }: StepEvent) => stepTimeoutEnding(context, step.name, timeoutMs) },
                  ],
                },
              },
            };
      return [
        step.name,
        {
          description: `Step ${step.name}: waiting for ${step.required_agents.join(", ") || "an explicit update"}.`,
          entry: [
            { type: "enterStep" as const, params: ({ context, event }: StepEvent) => ({ step: step.name, at: atOf(context, event) }) },
            { type: "dispatchTasks" as const, params: ({ context, event }: StepEvent) => ({ step: step.name, at: atOf(context, event), timeoutMs }) },
          ],
          on: {
            "TASK.ANSWERED": [
              {
                guard: and(["dispatchesTasks" as const, { type: "failsTask" as const, params }]),
                target: "terminated",
                actions: [
                  { type: "answer" as const, params: ({ event }: AnswerEvent) => event },
                  { type: "terminate" as const, params: (args: AnswerEvent) => taskFailureEnding(step.name, args) },
                ],
              },
              onAllAnswered,
            ],
          },
          ...onTimeout,
        },
      ];
    }),
  );
  return workflowSetup.createMachine({
    id: "workflow",
    // Once ended (completed or terminated), the session asks its pool to keep it this long (PoolChildOutput).
    output: ({ context }) => ({ retainMs: context.retentionMs }),
    // The input is spread last: V8 gives an object literal that starts with a spread a hidden class of its
    // own and then pays for each property after it (about 15 µs here, against under 1 µs this way).
    context: ({ input }) => ({
      steps,
      currentStep: names[0] as string,
      stepEnteredAt: input.createdAt,
      dispatchRounds: {},
      completedSteps: [],
      pendingSteps: names.slice(1),
      tasks: [],
      updatedAt: input.createdAt,
      completion: null,
      termination: null,
      ...input,
    }),
    initial: names[0] as string,
    on: {
      "TASK.DELEGATED": { guard: "isNewTask", actions: { type: "delegate", params: ({ event }) => event } },
      "TASK.ANSWERED": { guard: "isPendingTask", actions: { type: "answer", params: ({ event }) => event } },
      "WORKFLOW.UPDATE": steps.map((step) => ({
        guard: { type: "targetsStep" as const, params: { step: step.name } },
        target: `.${step.name}`,
        actions: { type: "moveTo" as const, params: ({ event }: { event: Extract<WorkflowEvent, { type: "WORKFLOW.UPDATE" }> }) => event },
      })),
      "PARTICIPANT.ADD": { actions: { type: "addParticipant", params: ({ event }) => event } },
      "PARTICIPANT.REMOVE": { actions: { type: "removeParticipant", params: ({ event }) => event } },
      "CONTEXT.UPDATE": { actions: { type: "updateContext", params: ({ event }) => event } },
      COMPLETE: {
        target: ".completed",
        actions: { type: "complete", params: ({ event }) => ({ summary: event.summary, artifacts: event.artifacts, at: event.at }) },
      },
      TERMINATE: {
        target: ".terminated",
        actions: {
          type: "terminate",
          params: ({ event }) => ({ reason: event.reason, ...(event.details === undefined ? {} : { details: event.details }), at: event.at }),
        },
      },
    },
    states: {
      ...stepStates,
      completed: { type: "final", description: "Completed with a summary and artifacts." },
      terminated: { type: "final", description: "Ended early, with a reason." },
    },
  });
}

/** A workflow machine, whatever its steps. */
export type WorkflowMachine = ReturnType<typeof createWorkflowMachine>;
