/**
 * Model-based tests of the workflow machine: @xstate/graph walks the machine built from the seed's three
 * steps (design → implementation → review); every path is then driven over HTTP against a real running bus,
 * one workflow session per path, and the session as `GET /sessions/:id` shows it is compared with the model
 * after every step.
 *
 * Two models share one coverage: the seed's workflow (`dispatch: "manual"`, messages and HTTP calls drive
 * it), and the same steps with tasks and timeouts created with `dispatch: "auto"` on a bus with a simulated
 * clock, where troupe dispatches each step's tasks itself, a failed answer or a step's timeout terminates it
 * (`task_failed`), and the last answers complete it.
 *
 * Paths: the shortest path to every state, and one path per edge (the shortest path to its source, then the
 * edge). Simple paths are left out here: the graph has ~50 states with ~9 events each, and its simple paths
 * run into the millions; the edge paths already take every transition from every state.
 */
import type { StatePath } from "@xstate/graph";
import { beforeAll, describe, expect, it } from "vitest";
import { createActor, SimulatedClock } from "xstate";
import { createWorkflowMachine, type WorkflowEvent, type WorkflowInput, type WorkflowParticipant, type WorkflowStep } from "../../machines/index.js";
import type { CommunicationBus } from "../../src/index.js";
import { call, CLOCK_START, envelope, SEED_AGENTS, SEED_PARTICIPANTS, SEED_STEPS, startSuiteBus } from "../bus/support.js";
import { TransitionCoverage } from "./coverage.js";
import { generatePaths } from "./paths.js";
import { walkPaths } from "./suite.js";

const LEAD = SEED_AGENTS.lead;
const SECURITY = "opencode://security";
const STEPS: WorkflowStep[] = SEED_STEPS;
const PARTICIPANTS = SEED_PARTICIPANTS;

function participant(agentId: string, role: string): WorkflowParticipant {
  return { agent_id: agentId, framework: agentId.split("://")[0]!, role, status: "active", joined_at: 0 };
}

const modelInput: WorkflowInput = {
  sessionId: "model",
  initiator: LEAD,
  participants: [participant(LEAD, "initiator"), ...PARTICIPANTS.map(({ agent_id, role }) => participant(agent_id, role))],
  sharedContext: {},
  createdAt: 0,
  retentionMs: 0,
  dispatch: "manual",
};

const workflowMachine = createWorkflowMachine(STEPS);
type WorkflowSnapshot = ReturnType<typeof workflowMachine.transition>;
type WorkflowPath = StatePath<WorkflowSnapshot, WorkflowEvent>;

// ---- the auto-dispatched model: the seed's steps with tasks, and timeouts on the last two ----

const AUTO_INITIATOR = "troupe://orchestrator";
const STEP_TIMEOUT_MS = 30_000;
const AUTO_STEPS: WorkflowStep[] = STEPS.map((step) => ({ ...step, task: `Do the ${step.name}`, ...(step.name === "design" ? {} : { timeout: "30s" }) }));
const autoMachine = createWorkflowMachine(AUTO_STEPS, { stepTimeoutsMs: { implementation: STEP_TIMEOUT_MS, review: STEP_TIMEOUT_MS } });
const AUTO_PARTICIPANTS = [{ agent_id: LEAD, role: "lead" }, ...PARTICIPANTS];
const autoInput: WorkflowInput = {
  ...modelInput,
  initiator: AUTO_INITIATOR,
  participants: [participant(AUTO_INITIATOR, "initiator"), ...AUTO_PARTICIPANTS.map(({ agent_id, role }) => participant(agent_id, role))],
  dispatch: "auto",
};
/** Paths of the auto model: the same snapshot and event types, driven on another bus. */
const autoPaths = new WeakSet<WorkflowPath>();

/** The latest task of an agent in a step. */
function latestTask(snapshot: WorkflowSnapshot, step: string, agentId: string) {
  return snapshot.context.tasks.filter((task) => task.step === step && task.to === agentId).at(-1);
}

/**
 * The events worth trying. Each required agent of the current step gets one task there (its id names the step
 * and the agent, so it depends only on what `serializeState` keeps), answered or failed once.
 */
function eventsFor(snapshot: WorkflowSnapshot): WorkflowEvent[] {
  if (snapshot.status !== "active") return [];
  const step = snapshot.value as string;
  const events: WorkflowEvent[] = [];
  for (const agentId of STEPS.find((each) => each.name === step)!.required_agents) {
    const latest = latestTask(snapshot, step, agentId);
    const taskId = `${step}-${agentId.split("://")[1]}`;
    if (latest === undefined) events.push({ type: "TASK.DELEGATED", taskId, messageId: taskId, from: LEAD, to: agentId, at: 0 });
    if (latest?.status === "pending") {
      events.push(
        { type: "TASK.ANSWERED", taskId, from: agentId, outcome: { status: "completed", result: { ok: true } }, at: 0 },
        { type: "TASK.ANSWERED", taskId, from: agentId, outcome: { status: "failed", error: { code: "BROKEN", message: "it broke" } }, at: 0 },
      );
    }
  }
  for (const { name } of STEPS) events.push({ type: "WORKFLOW.UPDATE", currentStep: name, at: 0 });
  const hasSecurity = snapshot.context.participants.some((each) => each.agent_id === SECURITY);
  events.push(
    hasSecurity ? { type: "PARTICIPANT.REMOVE", agentId: SECURITY, at: 0 } : { type: "PARTICIPANT.ADD", participant: participant(SECURITY, "reviewer"), at: 0 },
    { type: "CONTEXT.UPDATE", sharedContext: { branch: "feature/notifications" }, at: 0 },
    { type: "COMPLETE", summary: "done", artifacts: ["s3://artifacts/build.zip"], at: 0 },
    { type: "TERMINATE", reason: "timeout", details: "Frontend agent offline", at: 0 },
  );
  return events;
}

/** A state is its step, the latest task status of each required agent of that step, and the security participant. */
function serializeState(snapshot: WorkflowSnapshot): string {
  const step = snapshot.value as string;
  const required = STEPS.find((each) => each.name === step)?.required_agents ?? [];
  return JSON.stringify([
    step,
    required.map((agentId) => latestTask(snapshot, step, agentId)?.status ?? "none"),
    snapshot.context.participants.some((each) => each.agent_id === SECURITY),
  ]);
}

const traversal = { input: modelInput, events: eventsFor, serializeState, serializeEvent: (event: WorkflowEvent) => JSON.stringify(event) };

// Simple paths are left out: this graph has too many to enumerate; the edge paths take every transition.
const { shortest: shortestPaths, edges: edgePaths } = generatePaths(workflowMachine, traversal, { simple: false });

/**
 * The events of an auto workflow: troupe delegated the current step's tasks on entry (each id names the step
 * and the agent: every step is entered once here, so the round is 1), the agents answer or fail them, and a
 * step with a timeout may run out of time. Explicit moves and the other changes are the manual model's part.
 */
function autoEventsFor(snapshot: WorkflowSnapshot): WorkflowEvent[] {
  if (snapshot.status !== "active") return [];
  const step = snapshot.value as string;
  const events: WorkflowEvent[] = [];
  for (const agentId of AUTO_STEPS.find((each) => each.name === step)!.required_agents) {
    const latest = latestTask(snapshot, step, agentId);
    if (latest?.status !== "pending") continue;
    events.push(
      { type: "TASK.ANSWERED", taskId: latest.task_id, from: agentId, outcome: { status: "completed", result: { ok: true } }, at: 0 },
      { type: "TASK.ANSWERED", taskId: latest.task_id, from: agentId, outcome: { status: "failed", error: { code: "BROKEN", message: "it broke" } }, at: 0 },
    );
  }
  if (AUTO_STEPS.find((each) => each.name === step)!.timeout !== undefined) {
    events.push({ type: `xstate.after.${STEP_TIMEOUT_MS}.workflow.${step}` } as unknown as WorkflowEvent);
  }
  return events;
}

const autoTraversal = { input: autoInput, events: autoEventsFor, serializeState, serializeEvent: (event: WorkflowEvent) => JSON.stringify(event) };
const { shortest: autoShortestPaths, edges: autoEdgePaths } = generatePaths(autoMachine, autoTraversal, { simple: false });
for (const path of [...autoShortestPaths, ...autoEdgePaths]) autoPaths.add(path);

function describePath(path: WorkflowPath): string {
  return (
    (autoPaths.has(path) ? "auto: " : "") +
      path.steps
        .slice(1)
        .map(({ event }) => {
          switch (event.type) {
            case "TASK.DELEGATED":
              return `DELEGATE(${event.to.split("://")[1]})`;
            case "TASK.ANSWERED":
              return `${event.outcome.status === "completed" ? "ANSWER" : "FAIL"}(${event.from.split("://")[1]})`;
            case "WORKFLOW.UPDATE":
              return `GOTO(${event.currentStep})`;
            default:
              return event.type.replace(/^xstate\.after\.\d+\.workflow\.(\w+)$/, "TIMEOUT($1)");
          }
        })
        .join(" → ") || "(initial)"
  );
}

const coverage = new TransitionCoverage();
let bus: CommunicationBus;
let autoBus: CommunicationBus;
const autoClock = new SimulatedClock();
autoClock.set(CLOCK_START);

beforeAll(async () => {
  bus = await startSuiteBus({ inspect: coverage.inspect, maxRetainedMessages: 1_000_000 });
  autoBus = await startSuiteBus({ inspect: coverage.inspect, maxRetainedMessages: 1_000_000, clock: autoClock });
  return async () => {
    await bus.stop();
    await autoBus.stop();
  };
});

/** Sends an envelope over HTTP naming the session; it must be accepted. Message ids are unique per session. */
async function sendInSession(sessionId: string, from: string, to: string, messageId: string, fields: Record<string, unknown>, target = bus): Promise<void> {
  const message = envelope(from, to, { ...fields, message_id: `${sessionId}-${messageId}` });
  (message["sender"] as Record<string, unknown>)["session_id"] = sessionId;
  const answer = await call(target, "POST", "/messages/send", message);
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
}

/** Which model a path walks: its bus, machine, input and initiator. */
interface Model {
  bus: CommunicationBus;
  machine: typeof workflowMachine;
  input: WorkflowInput;
  body: Record<string, unknown>;
}

function modelOf(path: WorkflowPath): Model {
  if (autoPaths.has(path)) {
    return {
      bus: autoBus,
      machine: autoMachine,
      input: autoInput,
      body: { initiator: AUTO_INITIATOR, participants: AUTO_PARTICIPANTS, steps: AUTO_STEPS, dispatch: "auto" },
    };
  }
  return { bus, machine: workflowMachine, input: modelInput, body: { initiator: LEAD, participants: PARTICIPANTS, steps: STEPS } };
}

async function drive(model: Model, sessionId: string, event: WorkflowEvent): Promise<void> {
  const path = `/sessions/${sessionId}`;
  const target = model.bus;
  let answer;
  switch (event.type) {
    case "TASK.DELEGATED":
      return sendInSession(sessionId, event.from, event.to, event.taskId, { message_type: "task_request", metadata: { task_id: event.taskId } }, target);
    case "TASK.ANSWERED":
      return sendInSession(
        sessionId,
        event.from,
        model.input.initiator,
        `answer-${event.taskId}`,
        {
          ...(event.outcome.status === "completed"
            ? { message_type: "task_response", payload: { ok: true } }
            : { message_type: "error", payload: { code: event.outcome.error.code, message: event.outcome.error.message } }),
          metadata: { task_id: event.taskId },
        },
        target,
      );
    case "WORKFLOW.UPDATE":
      answer = await call(target, "PATCH", `${path}/workflow`, { current_step: event.currentStep });
      break;
    case "PARTICIPANT.ADD":
      answer = await call(target, "POST", `${path}/participants`, { agent_id: event.participant.agent_id, role: event.participant.role });
      break;
    case "PARTICIPANT.REMOVE":
      answer = await call(target, "DELETE", `${path}/participants/${encodeURIComponent(event.agentId)}`);
      break;
    case "CONTEXT.UPDATE":
      answer = await call(target, "PATCH", `${path}/context`, { shared_context: event.sharedContext });
      break;
    case "COMPLETE":
      answer = await call(target, "POST", `${path}/complete`, { summary: event.summary, artifacts: event.artifacts });
      break;
    case "TERMINATE":
      answer = await call(target, "POST", `${path}/terminate`, { reason: event.reason, details: event.details });
      break;
    default:
      // A step's timeout, the only delayed event: nothing else moves the auto bus's clock, so the step was
      // entered at the clock's present and its timeout is due that much later.
      autoClock.increment(STEP_TIMEOUT_MS);
      return;
  }
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
}

/**
 * An event of a path as it reads in the real session: an auto task's id begins with its session's id, which is
 * `model` in the graph.
 */
function inSession(event: WorkflowEvent, sessionId: string): WorkflowEvent {
  const prefix = `${modelInput.sessionId}/`;
  if (event.type !== "TASK.ANSWERED" || !event.taskId.startsWith(prefix)) return event;
  return { ...event, taskId: `${sessionId}/${event.taskId.slice(prefix.length)}` };
}

/**
 * What the session must look like after each step: the path's events replayed on the pure machine, with the
 * real session's id (the ids of dispatched messages contain it). (The graph's own snapshots come from
 * whichever path first reached a state, and may differ in what `serializeState` leaves out, such as the order
 * of tasks across steps.)
 */
function replay(model: Model, path: WorkflowPath, sessionId: string): WorkflowSnapshot[] {
  const actor = createActor(model.machine, { input: { ...model.input, sessionId } });
  actor.start();
  const snapshots = [actor.getSnapshot()];
  for (const { event } of path.steps.slice(1)) {
    actor.send(inSession(event, sessionId));
    snapshots.push(actor.getSnapshot());
  }
  actor.stop();
  return snapshots;
}

async function runPath(path: WorkflowPath): Promise<void> {
  const model = modelOf(path);
  const created = await call(model.bus, "POST", "/sessions", { ...model.body, shared_context: {} });
  expect(created.status).toBe(201);
  const sessionId = created.body.session_id as string;
  const expected = replay(model, path, sessionId);
  for (let index = 0; index < path.steps.length; index += 1) {
    const { event } = path.steps[index]!;
    const state = expected[index]!;
    expect(serializeState(state), "the replay reaches the graph's state").toBe(serializeState(path.steps[index]!.state));
    const label = `step ${index} ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;
    if (index > 0) await drive(model, sessionId, inSession(event, sessionId));
    const session = (await call(model.bus, "GET", `/sessions/${sessionId}`)).body;
    const { context } = state;
    const ended = state.value === "completed" || state.value === "terminated";
    expect(session.status, label).toBe(ended ? state.value : "active");
    expect(session.workflow, label).toMatchObject({
      current_step: ended ? null : state.value,
      completed_steps: context.completedSteps,
      pending_steps: context.pendingSteps,
    });
    expect(
      session.tasks.map((task: { task_id: string; step: string; to: string; status: string }) => [task.task_id, task.step, task.to, task.status]),
      label,
    ).toEqual(context.tasks.map((task) => [task.task_id, task.step, task.to, task.status]));
    expect(
      session.participants.map((each: { agent_id: string }) => each.agent_id),
      label,
    ).toEqual(context.participants.map((each) => each.agent_id));
    expect(session.shared_context, label).toEqual(context.sharedContext);
    if (context.completion) expect(session.completion, label).toMatchObject({ summary: context.completion.summary, artifacts: context.completion.artifacts });
    if (context.termination) expect(session.termination, label).toMatchObject({ reason: context.termination.reason, details: context.termination.details });
    if (ended) continue;
    // troupe sent every task the machine dispatched: each waits in its (offline) agent's queue.
    for (const task of context.tasks.filter((each) => each.status === "pending" && each.from === AUTO_INITIATOR)) {
      const status = await call(model.bus, "GET", `/messages/${encodeURIComponent(task.message_id)}`);
      expect(status.body, label).toMatchObject({ message_id: task.message_id, status: "queued" });
    }
  }
}

describe("workflow machine, model-based", () => {
  it("generates paths over every step and both ends, in both models", () => {
    for (const paths of [shortestPaths, autoShortestPaths]) {
      const reached = new Set(paths.map((path) => path.state.value as string));
      expect([...reached].sort()).toEqual(["completed", "design", "implementation", "review", "terminated"]);
    }
  });

  walkPaths({
    families: { shortest: [...shortestPaths, ...autoShortestPaths], simple: [], edges: [...edgePaths, ...autoEdgePaths] },
    describePath,
    runPath,
    coverage,
    name: "workflow",
    covered: [workflowMachine, autoMachine],
    // The auto machine has every transition of the manual one, and its steps' timeouts besides.
    reported: [autoMachine],
  });
});
