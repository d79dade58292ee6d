/**
 * Workflow sessions across a crash (issue 10): a workflow in each state of its machine comes back from the
 * SQLite store as it was, continues in its step (an auto workflow's pending tasks are sent again under the same
 * ids, once), and its step timeout and retention resume with the time they had left. Each state is reached by
 * the shortest path @xstate/graph finds in the machine; a crash is simulated in process (crashable-store.ts).
 */
import { getShortestPaths, type StatePath } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { createWorkflowMachine, type WorkflowEvent, type WorkflowParticipant, type WorkflowStep } from "../../machines/index.js";
import { CommunicationBus, createRuntime, type Agent, type Runtime, type RuntimeEvent } from "../../src/index.js";
import { call, CLOCK_START, connect, envelope, SEED_AGENTS, SEED_PARTICIPANTS, SEED_STEPS, TEST_KEY, until } from "../bus/support.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { CrashableStore, temporaryDataDir } from "../support/crashable-store.js";

const { lead: LEAD, backend: DEV, frontend: WEB, qa: QA } = SEED_AGENTS;
const INITIATOR = "troupe://orchestrator";
const STEP_TIMEOUT_MS = 30_000;
const RETENTION_MS = 60_000;
/** The seed's steps with a task each, and a timeout on the last two: a workflow troupe runs by itself. */
const STEPS: WorkflowStep[] = SEED_STEPS.map((step) => ({ ...step, task: `Do the ${step.name}`, ...(step.name === "design" ? {} : { timeout: "30s" }) }));
const PARTICIPANTS = [{ agent_id: LEAD, role: "lead" }, ...SEED_PARTICIPANTS];
const machine = createWorkflowMachine(STEPS, { stepTimeoutsMs: { implementation: STEP_TIMEOUT_MS, review: STEP_TIMEOUT_MS } });
/** Every state of the workflow machine: one restart test each. */
const STATES = Object.keys(machine.root.states);

function participant(agentId: string, role: string): WorkflowParticipant {
  return { agent_id: agentId, framework: agentId.split("://")[0]!, role, status: "active", joined_at: 0 };
}

/** The events an auto workflow meets: each pending task answered or failed, and the step's timeout. */
function eventsOf(snapshot: ReturnType<typeof machine.transition>): WorkflowEvent[] {
  if (snapshot.status !== "active") return [];
  const step = snapshot.value as string;
  const events: WorkflowEvent[] = [];
  for (const task of snapshot.context.tasks.filter((each) => each.step === step && each.status === "pending")) {
    events.push(
      { type: "TASK.ANSWERED", taskId: task.task_id, from: task.to, outcome: { status: "completed", result: { text: `${step} done` } }, at: 0 },
      { type: "TASK.ANSWERED", taskId: task.task_id, from: task.to, outcome: { status: "failed", error: { code: "BROKEN", message: "it broke" } }, at: 0 },
    );
  }
  if (STEPS.find((each) => each.name === step)?.timeout !== undefined)
    events.push({ type: `xstate.after.${STEP_TIMEOUT_MS}.workflow.${step}` } as unknown as WorkflowEvent);
  return events;
}

/** The shortest path to each state of the machine. */
type WorkflowPath = StatePath<ReturnType<typeof machine.transition>, WorkflowEvent>;
const pathTo = new Map<string, WorkflowPath>();
for (const path of getShortestPaths(machine, {
  input: {
    sessionId: "model",
    initiator: INITIATOR,
    participants: [participant(INITIATOR, "initiator"), ...PARTICIPANTS.map(({ agent_id, role }) => participant(agent_id, role))],
    sharedContext: {},
    createdAt: 0,
    retentionMs: 0,
    dispatch: "auto",
  },
  events: eventsOf,
  // A graph state is the step and how its tasks stand: a step left only once all its agents answered.
  serializeState: (snapshot) =>
    JSON.stringify([snapshot.value, snapshot.context.tasks.filter((task) => task.step === snapshot.value).map((task) => task.status)]),
  serializeEvent: (event) => JSON.stringify(event),
})) {
  const state = path.state.value as string;
  if (path.weight < (pathTo.get(state)?.weight ?? Number.POSITIVE_INFINITY)) pathTo.set(state, path);
}

/** One life of a bus (and its runtime) over a data directory. */
interface Life {
  bus: CommunicationBus;
  runtime: Runtime;
  clock: SimulatedClock;
  store: CrashableStore;
  events: RuntimeEvent[];
}

async function live(dir: string, now: number, options: { maxWorkflowSessions?: number; agents?: Agent[] } = {}): Promise<Life> {
  const clock = new SimulatedClock();
  clock.set(now);
  const store = await CrashableStore.open(dir);
  const runtime = createRuntime({ clock, store, ...options });
  const events: RuntimeEvent[] = [];
  runtime.on("*", (event) => events.push(event));
  await runtime.start();
  const bus = new CommunicationBus({
    runtime,
    clock,
    host: "127.0.0.1",
    port: 0,
    apiKey: TEST_KEY,
    closeGraceMs: 50,
    env: {},
    workflowRetentionMs: RETENTION_MS,
  });
  await bus.start();
  return { bus, runtime, clock, store, events };
}

/** `kill -9`: the file keeps what was committed; the dead bus is then cleaned up without reaching it. */
async function crash(life: Life): Promise<void> {
  await life.store.crash();
  await life.bus.stop();
  await life.runtime.stop();
}

async function stopGracefully(life: Life): Promise<void> {
  await life.bus.stop();
  await life.runtime.stop();
  await life.store.close();
}

/** Everything so far is durable, and its events and tasks have gone out. */
async function settled(life: Life): Promise<void> {
  await life.bus.sessionManager.whenSettled();
  await life.store.flush();
}

async function createAuto(life: Life): Promise<string> {
  const created = await call(life.bus, "POST", "/sessions", { initiator: INITIATOR, participants: PARTICIPANTS, steps: STEPS, dispatch: "auto" });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body.session_id as string;
}

/** Drives one event of a path: an agent's answer over the bus, or the step's timeout on the clock. */
async function drive(life: Life, sessionId: string, event: WorkflowEvent): Promise<void> {
  if (event.type !== "TASK.ANSWERED") {
    life.clock.increment(STEP_TIMEOUT_MS);
    return;
  }
  const taskId = event.taskId.replace(/^model\//, `${sessionId}/`);
  const answer = envelope(event.from, INITIATOR, {
    ...(event.outcome.status === "completed"
      ? { message_type: "task_response", payload: event.outcome.result as Record<string, unknown> }
      : { message_type: "error", payload: { code: event.outcome.error.code, message: event.outcome.error.message } }),
    metadata: { task_id: taskId },
  });
  (answer["sender"] as Record<string, unknown>)["session_id"] = sessionId;
  expect((await call(life.bus, "POST", "/messages/send", answer)).status).toBe(202);
}

/** Answers every pending task of the current step with a completed result. */
async function answerPending(life: Life, sessionId: string): Promise<void> {
  const session = (await call(life.bus, "GET", `/sessions/${sessionId}`)).body;
  for (const task of session.tasks.filter(
    (each: { status: string; step: string }) => each.status === "pending" && each.step === session.workflow.current_step,
  )) {
    await drive(life, sessionId, {
      type: "TASK.ANSWERED",
      taskId: task.task_id,
      from: task.to,
      outcome: { status: "completed", result: { text: "after the restart" } },
      at: 0,
    });
  }
}

function stepAfter(step: string): string {
  const index = STEPS.findIndex((each) => each.name === step);
  return STEPS[index + 1]?.name ?? "completed";
}

describe("a workflow in each state of its machine, across a crash", () => {
  it("has a path to every state of the machine", () => {
    expect(STATES.sort()).toEqual(["completed", "design", "implementation", "review", "terminated"]);
    expect([...pathTo.keys()].sort()).toEqual(STATES);
  });

  it.each(STATES)("comes back %s as it was, and goes on from there", async (state) => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = await createAuto(first);
    for (const { event } of pathTo.get(state)!.steps.slice(1)) await drive(first, sessionId, event);
    // Some of the step's timeout (or of the retention) has run when the process dies.
    first.clock.increment(10_000);
    await settled(first);
    const before = (await call(first.bus, "GET", `/sessions/${sessionId}`)).body;
    const summary = (await call(first.bus, "GET", `/sessions/${sessionId}/summary`)).body;
    expect(before.status === "active" ? before.workflow.current_step : before.status).toBe(state);
    await crash(first);

    const downMs = 5_000;
    const second = await live(dir, first.clock.now() + downMs);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).body).toEqual(before);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}/summary`)).body).toEqual(summary);

    if (before.status !== "active") {
      // Ended: readable for what is left of its retention, then evicted and gone from the store.
      second.clock.increment(RETENTION_MS - 10_000 - downMs - 1);
      expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).status).toBe(200);
      second.clock.increment(1);
      expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).status).toBe(404);
      await settled(second);
      expect(await second.store.get("workflows", sessionId)).toBeUndefined();
      await stopGracefully(second);
      return;
    }
    // Its pending tasks were sent again, under the ids they had: they wait in their (offline) agents' queues.
    for (const task of before.tasks.filter((each: { status: string }) => each.status === "pending")) {
      expect((await call(second.bus, "GET", `/messages/${encodeURIComponent(task.message_id)}`)).body).toMatchObject({ status: "queued" });
    }
    await answerPending(second, sessionId);
    await settled(second);
    const after = (await call(second.bus, "GET", `/sessions/${sessionId}`)).body;
    const next = stepAfter(state);
    expect(after.status === "active" ? after.workflow.current_step : after.status).toBe(next);
    await stopGracefully(second);
  });
});

describe("workflow delays across a crash", () => {
  it("resume a step's timeout with the time it had left (XState restore pitfall: `after` delays fire after a restore)", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = await createAuto(first);
    await drive(first, sessionId, pathTo.get("implementation")!.steps[1]!.event);
    first.clock.increment(10_000);
    await settled(first);
    await crash(first);

    // 10 s ran before the crash, 5 s while down: 15 s are left.
    const second = await live(dir, CLOCK_START + 15_000);
    second.clock.increment(14_999);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).body.status).toBe("active");
    second.clock.increment(1);
    const session = (await call(second.bus, "GET", `/sessions/${sessionId}`)).body;
    expect(session).toMatchObject({
      status: "terminated",
      termination: { reason: "task_failed", details: { step: "implementation", error: { code: "TIMEOUT" } } },
    });
    expect(session.termination.terminated_at).toBe(CLOCK_START + STEP_TIMEOUT_MS);
    await stopGracefully(second);
  });

  it("resume an ended workflow's retention with the time it had left, then evict it from memory and the store", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS);
    first.bus.sessionManager.completeSession(sessionId, { summary: "done" });
    first.clock.increment(20_000);
    await settled(first);
    await crash(first);

    const second = await live(dir, CLOCK_START + 50_000);
    second.clock.increment(9_999);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).body).toMatchObject({ status: "completed", completion: { summary: "done" } });
    second.clock.increment(1);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).status).toBe(404);
    expect(second.runtime.pooledCount("workflow")).toBe(0);
    await settled(second);
    expect(await second.store.get("workflows", sessionId)).toBeUndefined();
    await stopGracefully(second);
  });

  it("drop an ended workflow whose retention ran out while the process was down", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS);
    first.bus.sessionManager.terminateSession(sessionId, { reason: "abandoned" });
    await settled(first);
    await crash(first);

    const second = await live(dir, CLOCK_START + RETENTION_MS);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).status).toBe(404);
    expect(second.runtime.pooledCount("workflow")).toBe(0);
    expect(await second.store.list("workflows")).toEqual([]);
    await stopGracefully(second);
  });
});

describe("workflows in the store", () => {
  it("are durable before their events go out: a crash in a listener of an advance finds the advance restored", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = await createAuto(first);
    await settled(first);
    let crashed: Promise<void> | undefined;
    first.bus.on("workflow.step", () => {
      crashed ??= first.store.crash();
    });
    await drive(first, sessionId, pathTo.get("implementation")!.steps[1]!.event);
    await first.bus.sessionManager.whenSettled();
    expect(crashed).toBeDefined();
    await crash(first);

    const second = await live(dir, CLOCK_START);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).body.workflow).toMatchObject({
      current_step: "implementation",
      completed_steps: ["design"],
    });
    await stopGracefully(second);
  });

  it("send an auto workflow's pending tasks again after a restart under their ids, and deliver each once", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = await createAuto(first);
    await drive(first, sessionId, pathTo.get("implementation")!.steps[1]!.event);
    await settled(first);
    await crash(first);

    const second = await live(dir, CLOCK_START + 1_000);
    // Sent once more by the restore; a second resume finds them at the bus already.
    second.bus.sessionManager.resume();
    const backend = await connect(second.bus, DEV);
    const frontend = await connect(second.bus, WEB);
    await second.bus.sessionManager.whenSettled();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(backend.received.map((message) => message.message_id)).toEqual([`${sessionId}/implementation/1/0`]);
    expect(frontend.received.map((message) => message.message_id)).toEqual([`${sessionId}/implementation/1/1`]);
    expect(backend.received[0]).toMatchObject({
      sender: { agent_id: INITIATOR, session_id: sessionId },
      payload: { step: "implementation", task: "Do the implementation", results: { design: { [LEAD]: { text: "design done" } } } },
      metadata: { task_id: `${sessionId}/implementation/1/${DEV}` },
    });
    await stopGracefully(second);
  });

  it("take answers to tasks delegated before the restart, named by in_reply_to or by task_id", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionId = first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS);
    first.bus.sessionManager.updateWorkflow(sessionId, { current_step: "implementation" });
    const requests = [DEV, WEB].map((to) => {
      const request = envelope(LEAD, to, { metadata: { task_id: `t-${to}` } });
      (request["sender"] as Record<string, unknown>)["session_id"] = sessionId;
      return request;
    });
    for (const request of requests) expect((await call(first.bus, "POST", "/messages/send", request)).status).toBe(202);
    await settled(first);
    await crash(first);

    const second = await live(dir, CLOCK_START);
    const byReply = envelope(DEV, LEAD, { message_type: "task_response", metadata: { in_reply_to: requests[0]!["message_id"] } });
    const byTaskId = envelope(WEB, LEAD, { message_type: "task_response", metadata: { task_id: `t-${WEB}` } });
    for (const answer of [byReply, byTaskId]) expect((await call(second.bus, "POST", "/messages/send", answer)).status).toBe(202);
    expect((await call(second.bus, "GET", `/sessions/${sessionId}`)).body.workflow.current_step).toBe("review");
    await stopGracefully(second);
  });

  it("leave the store when deleted; a graceful stop keeps the others for the next start", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const kept = first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS);
    const deleted = first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS);
    expect((await call(first.bus, "DELETE", `/sessions/${deleted}`)).status).toBe(200);
    await stopGracefully(first);

    const second = await live(dir, CLOCK_START);
    expect(second.bus.sessionManager.listSessions().map((session) => session.session_id)).toEqual([kept]);
    expect((await second.store.list("workflows")).map((record) => record.id)).toEqual([kept]);
    // Its participants count as registered again, and the restored actor is found by its system id.
    expect(second.bus.listAgents().map((agent) => agent.agent_id)).toEqual(expect.arrayContaining([LEAD, DEV, WEB, QA]));
    expect(second.runtime.pooledChild(kept)).toBeDefined();
    expect((await call(second.bus, "DELETE", `/sessions/${kept}`)).status).toBe(200);
    await settled(second);
    expect(await second.store.list("workflows")).toEqual([]);
    await stopGracefully(second);
  });

  it("keep maxWorkflowSessions: active ones come back first, the rest are dropped with a warning", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const ended = first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS);
    first.bus.sessionManager.completeSession(ended, {});
    const active: string[] = [];
    for (let index = 0; index < 2; index += 1) {
      // Restored sessions are listed oldest first, by creation time.
      first.clock.increment(1);
      active.push(first.bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS));
    }
    await settled(first);
    await crash(first);

    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    const second = await live(dir, CLOCK_START, { maxWorkflowSessions: 2 });
    await new Promise((resolve) => setImmediate(resolve));
    process.off("warning", onWarning);
    expect(second.bus.sessionManager.listSessions().map((session) => session.session_id)).toEqual(active);
    expect(warnings.filter((warning) => warning.includes("is not restored"))).toEqual([
      `troupe: workflow ${ended} is not restored: maxWorkflowSessions (2) is reached`,
    ]);
    expect((await call(second.bus, "POST", "/sessions", { initiator: LEAD, participants: SEED_PARTICIPANTS, steps: SEED_STEPS })).status).toBe(429);
    expect(second.bus.metricsSnapshot().sessions).toMatchObject({ total: 2, active: 2 });
    await stopGracefully(second);
  });

  it("end task_failed when the crash interrupted the prompt of a runtime agent's task: the task is answered with an error, not waited for", async () => {
    const dir = await temporaryDataDir();
    const writer = "troupe://writer";
    const steps = [{ name: "draft", required_agents: [writer], task: "Write the release notes" }];
    const first = await live(dir, CLOCK_START, { agents: [createControlledAgent("writer").agent] });
    const created = await call(first.bus, "POST", "/sessions", {
      initiator: INITIATOR,
      participants: [{ agent_id: writer, role: "writer" }],
      steps,
      dispatch: "auto",
    });
    const sessionId = created.body.session_id as string;
    await until(() => first.events.some((event) => event.type === "prompt.started"));
    await settled(first);
    await crash(first);

    const second = await live(dir, CLOCK_START + 1_000, { agents: [createControlledAgent("writer").agent] });
    expect(second.events.filter((event) => event.type === "prompt.interrupted")).toEqual([
      expect.objectContaining({ requestId: `${sessionId}/draft/1/0`, error: expect.objectContaining({ type: "TRANSPORT", sessionValid: true }) }),
    ]);
    await until(() => second.bus.sessionManager.getSession(sessionId)?.status === "terminated");
    expect(second.bus.sessionManager.getSession(sessionId)?.termination).toMatchObject({
      reason: "task_failed",
      details: { step: "draft", agent: writer, error: { code: "TRANSPORT" } },
    });
    await stopGracefully(second);
  });

  it.each([
    ["a crash", crash],
    ["a graceful stop", stopGracefully],
  ])("answer a workflow's next task to a runtime agent in the bridge session it had before %s, and close it when the workflow ends", async (_how, end) => {
    const dir = await temporaryDataDir();
    const writer = "troupe://writer";
    const histories: string[][] = [];
    const agent: Agent = {
      id: "writer",
      prompt: async (ctx) => {
        histories.push(ctx.history.map((message) => message.content));
        return { text: `wrote: ${ctx.prompt}` };
      },
    };
    const task = (sessionId: string, prompt: string) => {
      const request = envelope(LEAD, writer, { payload: { prompt } });
      (request["sender"] as Record<string, unknown>)["session_id"] = sessionId;
      return request;
    };
    const first = await live(dir, CLOCK_START, { agents: [agent] });
    const sessionId = first.bus.sessionManager.createSession(LEAD, [{ agent_id: writer, role: "writer" }], [{ name: "draft", required_agents: [writer] }]);
    await first.bus.send(task(sessionId, "the outline"));
    await until(() => histories.length === 1 && first.runtime.health().sessions.idle === 1);
    await settled(first);
    await end(first);

    const second = await live(dir, CLOCK_START, { agents: [agent] });
    expect(second.runtime.health().sessions.total).toBe(1);
    await second.bus.send(task(sessionId, "the first chapter"));
    await until(() => histories.length === 2);
    expect(histories[1]).toEqual(["the outline", "wrote: the outline"]);
    expect(second.runtime.health().sessions.total).toBe(1);
    second.bus.sessionManager.completeSession(sessionId, {});
    await until(() => second.runtime.health().sessions.total === 0);
    await stopGracefully(second);
  });
});
