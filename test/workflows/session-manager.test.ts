/**
 * The SessionManager (SPEC §3.4): its positional API and events, task correlation, automatic advance,
 * participant checks, closed sessions, its HTTP routes, and the result aggregator.
 */
import { describe, expect, it } from "vitest";
import type { CommunicationBus, SessionManagerEvent, StepInput } from "../../src/index.js";
import { MAX_PAGE_CHARS } from "../../src/bus/pagination.js";
import { MAX_PARTICIPANTS, MAX_RESULTS_BYTES, MAX_SESSION_TASKS, MAX_STEPS_BYTES, RESULT_PREVIEW_CHARS } from "../../src/workflows/session-manager.js";
import { call, connect, envelope, flush, register, SEED_AGENTS, SEED_PARTICIPANTS, SEED_STEPS, startBus, startSimulatedBus, until } from "../bus/support.js";

const { lead: LEAD, backend: DEV, frontend: WEB, qa: QA } = SEED_AGENTS;
const STEPS = SEED_STEPS;
const PARTICIPANTS = SEED_PARTICIPANTS;

function record(bus: CommunicationBus): SessionManagerEvent[] {
  const events: SessionManagerEvent[] = [];
  const types = [
    "session_created",
    "participant_added",
    "participant_removed",
    "workflow_updated",
    "context_updated",
    "task_delegated",
    "task_completed",
    "session_completed",
    "session_terminated",
  ] as const;
  for (const type of types) bus.sessionManager.on(type, (event) => events.push(event));
  return events;
}

/** Sends a task from `from` to `to` in a session, and its answer; returns the request's message id. */
async function task(bus: CommunicationBus, sessionId: string, from: string, to: string, taskId: string): Promise<string> {
  const request = envelope(from, to, { metadata: { task_id: taskId } });
  (request["sender"] as Record<string, unknown>)["session_id"] = sessionId;
  expect((await bus.send(request)).status).toBe("accepted");
  return request["message_id"] as string;
}

async function answer(
  bus: CommunicationBus,
  sessionId: string | undefined,
  from: string,
  to: string,
  metadata: Record<string, unknown>,
  overrides: Record<string, unknown> = {},
) {
  const response = envelope(from, to, {
    message_type: "task_response",
    metadata,
    payload: { ok: true, usage: { input_tokens: 10, output_tokens: 4 } },
    ...overrides,
  });
  if (sessionId !== undefined) (response["sender"] as Record<string, unknown>)["session_id"] = sessionId;
  return bus.send(response);
}

describe("SessionManager API", () => {
  it("creates a session whose participants, the initiator first, are active, at the first step", async () => {
    const bus = await startBus();
    const events = record(bus);
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, { project: "x" });
    const session = bus.sessionManager.getSession(sessionId)!;
    expect(session).toMatchObject({
      session_id: sessionId,
      status: "active",
      initiator: LEAD,
      workflow: { current_step: "design", completed_steps: [], pending_steps: ["implementation", "review"] },
      shared_context: { project: "x" },
      tasks: [],
    });
    expect(session.participants.map((participant) => [participant.agent_id, participant.framework, participant.role, participant.status])).toEqual([
      [LEAD, "claude-code", "initiator", "active"],
      [DEV, "opencode", "implementer", "active"],
      [WEB, "codex", "implementer", "active"],
      [QA, "claude-code", "reviewer", "active"],
    ]);
    // Events go out once the change is durable: after createSession returned.
    expect(events).toEqual([]);
    await bus.sessionManager.whenSettled();
    expect(events).toEqual([{ type: "session_created", sessionId, session }]);
    expect(bus.sessionManager.listSessions().map((each) => each.session_id)).toEqual([sessionId]);
    expect(bus.sessionManager.getSession("sess_unknown")).toBeUndefined();
  });

  it(`keeps a session to ${MAX_PARTICIPANTS} participants besides its initiator: adding one more is 429 CAPACITY`, async () => {
    const bus = await startBus();
    const participants = Array.from({ length: MAX_PARTICIPANTS }, (_, index) => ({ agent_id: `cc://member-${index}`, role: "member" }));
    const sessionId = bus.sessionManager.createSession(LEAD, participants, [{ name: "only", required_agents: [LEAD] }]);
    const full = await call(bus, "POST", `/sessions/${sessionId}/participants`, { agent_id: "cc://one-more", role: "member" });
    expect(full.status).toBe(429);
    expect(full.body.error).toMatchObject({ type: "CAPACITY", details: { limit: MAX_PARTICIPANTS, sessionId } });
    bus.sessionManager.removeParticipant(sessionId, "cc://member-0");
    expect((await call(bus, "POST", `/sessions/${sessionId}/participants`, { agent_id: "cc://one-more", role: "member" })).status).toBe(200);
  });

  it(`keeps a workflow's steps to ${MAX_STEPS_BYTES} bytes: more is 413, and nothing is created`, async () => {
    const bus = await startBus({ maxBodyBytes: 2 * MAX_STEPS_BYTES });
    const steps = Array.from({ length: 5 }, (_, index) => ({ name: `s${index}`, required_agents: [LEAD], task: "t".repeat(60_000) }));
    const refused = await call(bus, "POST", "/sessions", { initiator: LEAD, participants: [], steps });
    expect(refused.status).toBe(413);
    expect(refused.body.error).toMatchObject({ type: "CONFIG", details: { field: "steps", limitBytes: MAX_STEPS_BYTES } });
    expect(bus.sessionManager.sessionCounts().total).toBe(0);
    // Within it, created.
    expect((await call(bus, "POST", "/sessions", { initiator: LEAD, participants: [], steps: steps.slice(0, 4) })).status).toBe(201);
  });

  it(`keeps a session to ${MAX_SESSION_TASKS} tasks: a new task past it is 429 CAPACITY and not accepted, and no move dispatches more`, async () => {
    const bus = await startBus();
    const sessionId = bus.sessionManager.createSession(
      LEAD,
      [
        { agent_id: DEV, role: "dev" },
        { agent_id: QA, role: "qa" },
      ],
      [{ name: "only", required_agents: [QA] }],
    );
    for (let index = 0; index < MAX_SESSION_TASKS; index += 1) await task(bus, sessionId, LEAD, DEV, `t-${index}`);
    const past = envelope(LEAD, DEV, { metadata: { task_id: "t-past" } });
    (past["sender"] as Record<string, unknown>)["session_id"] = sessionId;
    const refused = await call(bus, "POST", "/messages/send", past);
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: MAX_SESSION_TASKS, sessionId } });
    expect((await call(bus, "GET", `/messages/${String(past["message_id"])}`)).status).toBe(404);
    // A request for a task still pending is no new task: it goes through.
    await task(bus, sessionId, LEAD, DEV, "t-0");
    expect(bus.sessionManager.getSession(sessionId)!.tasks).toHaveLength(MAX_SESSION_TASKS);

    // An auto workflow dispatches a task each time it enters a step: moving it back and forth cannot pass the bound either.
    const auto = bus.sessionManager.createSession(
      LEAD,
      [{ agent_id: DEV, role: "dev" }],
      [
        { name: "a", required_agents: [DEV], task: "do a" },
        { name: "b", required_agents: [DEV], task: "do b" },
      ],
      {},
      { dispatch: "auto" },
    );
    let moves = 0;
    const move = () => bus.sessionManager.updateWorkflow(auto, { current_step: moves++ % 2 === 0 ? "b" : "a" });
    while (bus.sessionManager.getSession(auto)!.tasks.length < MAX_SESSION_TASKS) {
      move();
      await flush();
    }
    expect(move).toThrow(expect.objectContaining({ type: "CAPACITY", details: expect.objectContaining({ limit: MAX_SESSION_TASKS, sessionId: auto }) }));
    expect(bus.sessionManager.getSession(auto)!.tasks).toHaveLength(MAX_SESSION_TASKS);
  }, 30_000);

  it("adds and removes participants, with events, and refuses to remove the initiator or a required agent", async () => {
    const bus = await startBus();
    const events = record(bus);
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.addParticipant(sessionId, { agent_id: "opencode://security", role: "reviewer" });
    expect(bus.sessionManager.getSession(sessionId)?.participants.at(-1)).toMatchObject({
      agent_id: "opencode://security",
      framework: "opencode",
      status: "active",
    });
    bus.sessionManager.removeParticipant(sessionId, "opencode://security");
    await bus.sessionManager.whenSettled();
    expect(events.slice(1).map((event) => [event.type, "participant" in event ? event.participant.agent_id : "agentId" in event ? event.agentId : ""])).toEqual(
      [
        ["participant_added", "opencode://security"],
        ["participant_removed", "opencode://security"],
      ],
    );
    expect(() => bus.sessionManager.removeParticipant(sessionId, LEAD)).toThrow(expect.objectContaining({ type: "CONFIG" }));
    expect(() => bus.sessionManager.removeParticipant(sessionId, DEV)).toThrow(
      expect.objectContaining({ type: "CONFIG", message: `agent_id: ${DEV} is required by the step implementation` }),
    );
    expect(() => bus.sessionManager.addParticipant(sessionId, { agent_id: DEV, role: "again" })).toThrow(expect.objectContaining({ type: "CONFIG" }));
  });

  it("moves the workflow explicitly, deriving completed and pending steps when they are omitted", async () => {
    const bus = await startBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.updateWorkflow(sessionId, { current_step: "review" });
    expect(bus.sessionManager.getSession(sessionId)?.workflow).toMatchObject({
      current_step: "review",
      completed_steps: ["design", "implementation"],
      pending_steps: [],
    });
    bus.sessionManager.updateWorkflow(sessionId, { current_step: "design", completed_steps: [], pending_steps: ["review"] });
    expect(bus.sessionManager.getSession(sessionId)?.workflow).toMatchObject({ current_step: "design", completed_steps: [], pending_steps: ["review"] });
    expect(() => bus.sessionManager.updateWorkflow(sessionId, { current_step: "deploy" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "current_step" }) }),
    );
    expect(() => bus.sessionManager.updateWorkflow(sessionId, { current_step: "design", completed_steps: ["deploy"] })).toThrow(
      expect.objectContaining({ type: "CONFIG" }),
    );
  });

  it("runs workflows with the same steps apart, and no later change to the caller's steps reaches them", async () => {
    const bus = await startBus();
    const task: Record<string, unknown> = { brief: "sketch it" };
    const steps: StepInput[] = [
      { name: "design", required_agents: [LEAD], task },
      { name: "implementation", required_agents: [DEV, WEB] },
    ];
    const first = bus.sessionManager.createSession(LEAD, PARTICIPANTS, steps);
    const second = bus.sessionManager.createSession(LEAD, PARTICIPANTS, steps);
    bus.sessionManager.updateWorkflow(first, { current_step: "implementation" });
    bus.sessionManager.updateSharedContext(first, { only: "first" });
    expect(bus.sessionManager.getSession(first)).toMatchObject({ workflow: { current_step: "implementation" }, shared_context: { only: "first" } });
    expect(bus.sessionManager.getSession(second)).toMatchObject({ workflow: { current_step: "design" }, shared_context: {} });

    task["brief"] = "changed";
    const third = bus.sessionManager.createSession(LEAD, PARTICIPANTS, steps);
    steps.push({ name: "review", required_agents: [QA] });
    const fourth = bus.sessionManager.createSession(LEAD, PARTICIPANTS, steps);
    const original = [
      { name: "design", required_agents: [LEAD], task: { brief: "sketch it" } },
      { name: "implementation", required_agents: [DEV, WEB] },
    ];
    expect(bus.sessionManager.getSession(first)?.workflow.steps).toEqual(original);
    expect(bus.sessionManager.getSession(second)?.workflow.steps).toEqual(original);
    expect(bus.sessionManager.getSession(third)?.workflow.steps).toEqual(steps.slice(0, 2));
    expect(bus.sessionManager.getSession(third)?.workflow.steps[0]?.task).toEqual({ brief: "changed" });
    expect(bus.sessionManager.getSession(fourth)?.workflow).toMatchObject({ steps, pending_steps: ["implementation", "review"] });
    // The steps a session shows are its own to read, not to change: others may share them.
    expect(() => bus.sessionManager.getSession(second)!.workflow.steps.push({ name: "extra", required_agents: [] })).toThrow(TypeError);
    expect(bus.sessionManager.getSession(first)?.workflow.steps).toEqual(original);
  });

  it("times out workflows whose steps differ only in their timeout apart", async () => {
    const { bus, clock } = await startSimulatedBus();
    const timed = bus.sessionManager.createSession(LEAD, PARTICIPANTS, [{ name: "implementation", required_agents: [DEV], timeout: "1m" }]);
    const longer = bus.sessionManager.createSession(LEAD, PARTICIPANTS, [{ name: "implementation", required_agents: [DEV], timeout: "2m" }]);
    const untimed = bus.sessionManager.createSession(LEAD, PARTICIPANTS, [{ name: "implementation", required_agents: [DEV] }]);
    clock.increment(60_000);
    expect([timed, longer, untimed].map((sessionId) => bus.sessionManager.getSession(sessionId)?.status)).toEqual(["terminated", "active", "active"]);
    clock.increment(60_000);
    expect([timed, longer, untimed].map((sessionId) => bus.sessionManager.getSession(sessionId)?.status)).toEqual(["terminated", "terminated", "active"]);
  });

  it("replaces the shared context, as the seed's spread expects", async () => {
    const bus = await startBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, { a: 1, b: 2 });
    bus.sessionManager.updateSharedContext(sessionId, { a: 3 });
    expect(bus.sessionManager.getSession(sessionId)?.shared_context).toEqual({ a: 3 });
  });

  it("refuses changes to an ended session with a 409 conflict, and leaves ending it again without effect", async () => {
    const bus = await startBus();
    const events = record(bus);
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.terminateSession(sessionId, { reason: "timeout", details: "Frontend agent offline" });
    expect(bus.sessionManager.getSession(sessionId)).toMatchObject({
      status: "terminated",
      termination: { reason: "timeout", details: "Frontend agent offline" },
    });
    expect(() => bus.sessionManager.addParticipant(sessionId, { agent_id: "codex://late", role: "x" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ conflict: true }) }),
    );
    expect(bus.sessionManager.completeSession(sessionId, { summary: "no" }).status).toBe("terminated");
    await bus.sessionManager.whenSettled();
    expect(events.map((event) => event.type)).toEqual(["session_created", "session_terminated"]);
    expect(() => bus.sessionManager.completeSession("sess_missing", {})).toThrow(expect.objectContaining({ type: "NOT_FOUND", message: "Session not found" }));
  });

  it("reports a listener that throws as a warning and still calls the others", async () => {
    const bus = await startBus();
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    const heard: string[] = [];
    bus.sessionManager.on("session_created", () => {
      throw new Error("listener bug");
    });
    bus.sessionManager.on("session_created", (event) => heard.push(event.sessionId));
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    await until(() => warnings.length === 1);
    process.off("warning", onWarning);
    expect(heard).toEqual([sessionId]);
    expect(warnings[0]).toMatch(/listener bug/);
  });
});

describe("task correlation and automatic advance", () => {
  it("delegates tasks, records answers by task_id or in_reply_to, and advances once every required agent has answered", async () => {
    const bus = await startBus();
    const events = record(bus);
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    const design = await task(bus, sessionId, LEAD, LEAD, "t-design");
    await answer(bus, undefined, LEAD, LEAD, { in_reply_to: design });
    expect(bus.sessionManager.getSession(sessionId)?.workflow.current_step).toBe("implementation");

    await task(bus, sessionId, LEAD, DEV, "t-dev");
    const web = await task(bus, sessionId, LEAD, WEB, "t-web");
    await answer(bus, sessionId, DEV, LEAD, { task_id: "t-dev" });
    expect(bus.sessionManager.getSession(sessionId)?.workflow.current_step).toBe("implementation");
    // An error answer is a failure: it does not count for the step.
    await answer(bus, sessionId, WEB, LEAD, { in_reply_to: web }, { message_type: "error", payload: { code: "BUILD_FAILED", message: "tsc failed" } });
    expect(bus.sessionManager.getSession(sessionId)?.workflow.current_step).toBe("implementation");
    await task(bus, sessionId, LEAD, WEB, "t-web-2");
    await answer(bus, sessionId, WEB, LEAD, { task_id: "t-web-2" });
    expect(bus.sessionManager.getSession(sessionId)?.workflow).toMatchObject({
      current_step: "review",
      completed_steps: ["design", "implementation"],
      pending_steps: [],
    });

    // A second answer to an answered task changes nothing.
    await answer(bus, sessionId, DEV, LEAD, { task_id: "t-dev" });
    await bus.sessionManager.whenSettled();
    const completed = events.filter((event) => event.type === "task_completed");
    expect(completed.map((event) => [event.task.task_id, event.task.status, event.task.step])).toEqual([
      ["t-design", "completed", "design"],
      ["t-dev", "completed", "implementation"],
      ["t-web", "failed", "implementation"],
      ["t-web-2", "completed", "implementation"],
    ]);
    expect(completed[2]!.task.error).toEqual({ code: "BUILD_FAILED", message: "tsc failed" });
    expect(events.filter((event) => event.type === "workflow_updated").map((event) => event.cause)).toEqual(["advance", "advance"]);
  });

  it(`keeps a workflow's results to ${MAX_RESULTS_BYTES} bytes: past it, an answer is kept as a preview, and an error's message is cut`, async () => {
    const bus = await startBus();
    const events = record(bus);
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.updateWorkflow(sessionId, { current_step: "implementation" });
    const text = "é".repeat(400 * 1024); // 800 KiB of UTF-8 each
    for (let index = 0; index < 6; index++) {
      await task(bus, sessionId, LEAD, DEV, `t-${index}`);
      const sent = await answer(bus, sessionId, DEV, LEAD, { task_id: `t-${index}` }, { payload: { text, index } });
      expect(sent.status).toBe("accepted");
    }
    await task(bus, sessionId, LEAD, WEB, "t-error");
    await answer(bus, sessionId, WEB, LEAD, { task_id: "t-error" }, { message_type: "error", payload: { code: "BUILD_FAILED", message: "x".repeat(100_000) } });
    await bus.sessionManager.whenSettled();
    const tasks = bus.sessionManager.getSession(sessionId)!.tasks;
    const bytes = Buffer.byteLength(JSON.stringify({ text, index: 0 }));
    // 4 MiB holds five of them whole; the sixth is a preview.
    const whole = Math.floor(MAX_RESULTS_BYTES / bytes);
    expect(whole).toBe(5);
    for (const [index, each] of tasks.slice(0, whole).entries()) expect(each.result).toEqual({ text, index });
    expect(tasks[whole]!.result).toEqual({ truncated: true, bytes, text: `${"é".repeat(RESULT_PREVIEW_CHARS)}…` });
    expect(tasks[whole]!.status).toBe("completed");
    expect(tasks[6]!.error).toEqual({ code: "BUILD_FAILED", message: `${"x".repeat(RESULT_PREVIEW_CHARS)}…` });
    // What the workflow keeps of its tasks, as its record holds it: within the bound and the previews.
    expect(Buffer.byteLength(JSON.stringify(tasks))).toBeLessThan(MAX_RESULTS_BYTES + 16 * 1024);
    expect(events.filter((event) => event.type === "task_completed")).toHaveLength(7);
  });

  it("completes a task answered only by its metadata.task_id, without session_id or in_reply_to", async () => {
    const bus = await startBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.updateWorkflow(sessionId, { current_step: "implementation" });
    await task(bus, sessionId, LEAD, DEV, "t-dev");
    await task(bus, sessionId, LEAD, WEB, "t-web");
    await answer(bus, undefined, DEV, LEAD, { task_id: "t-dev" });
    await answer(bus, undefined, WEB, LEAD, { task_id: "t-web" });
    const session = bus.sessionManager.getSession(sessionId)!;
    expect(session.tasks.map((each) => [each.task_id, each.status, each.answered_by])).toEqual([
      ["t-dev", "completed", DEV],
      ["t-web", "completed", WEB],
    ]);
    expect(session.workflow.current_step).toBe("review");
  });

  it("finds a task id pending in several sessions in the one sent to the responder, or the one its reply names", async () => {
    const bus = await startBus();
    // A session that ended with the task still pending is passed over.
    const ended = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    await task(bus, ended, LEAD, DEV, "t-1");
    bus.sessionManager.terminateSession(ended, { reason: "cancelled" });
    const first = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    const second = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    const statuses = (): string[][] =>
      [first, second].map((sessionId) => bus.sessionManager.getSession(sessionId)!.tasks.map((each) => `${each.to} ${each.status}`));
    await task(bus, first, LEAD, DEV, "t-1");
    await task(bus, second, LEAD, WEB, "t-1");
    await answer(bus, undefined, WEB, LEAD, { task_id: "t-1" });
    expect(statuses()).toEqual([[`${DEV} pending`], [`${WEB} completed`]]);
    // An agent the task was not sent to answers nothing.
    await answer(bus, undefined, QA, LEAD, { task_id: "t-1" });
    expect(statuses()).toEqual([[`${DEV} pending`], [`${WEB} completed`]]);

    // The same task sent to the same agent in both sessions: its reply's recipient.session_id decides.
    await task(bus, second, LEAD, DEV, "t-1");
    await answer(bus, undefined, DEV, LEAD, { task_id: "t-1" }, { recipient: { agent_id: LEAD, framework: "claude-code", session_id: second } });
    expect(statuses()).toEqual([[`${DEV} pending`], [`${WEB} completed`, `${DEV} completed`]]);
    await answer(bus, undefined, DEV, LEAD, { task_id: "t-1" });
    expect(statuses()).toEqual([[`${DEV} completed`], [`${WEB} completed`, `${DEV} completed`]]);
    expect(bus.sessionManager.getSession(ended)!.tasks.map((each) => each.status)).toEqual(["pending"]);
  });

  it("stays at the last step when its agents have answered: completing is explicit", async () => {
    const bus = await startBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.updateWorkflow(sessionId, { current_step: "review" });
    await task(bus, sessionId, LEAD, QA, "t-qa");
    await answer(bus, sessionId, QA, LEAD, { task_id: "t-qa" });
    expect(bus.sessionManager.getSession(sessionId)).toMatchObject({ status: "active", workflow: { current_step: "review" } });
  });

  it("fails a task whose request dies, with DELIVERY_FAILED", async () => {
    const { bus, clock } = await startSimulatedBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    const request = envelope(LEAD, DEV, { metadata: { task_id: "t-1" }, routing: { timeout: "10s" } });
    (request["sender"] as Record<string, unknown>)["session_id"] = sessionId;
    await bus.send(request);
    clock.increment(10_000);
    expect(bus.sessionManager.getSession(sessionId)?.tasks[0]).toMatchObject({ task_id: "t-1", status: "failed", error: { code: "DELIVERY_FAILED" } });
  });

  it("refuses a sender that is not a participant (403) and a message to an ended session (409)", async () => {
    const bus = await startBus();
    await register(bus, "codex://outsider");
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    const outsider = envelope("codex://outsider", DEV);
    (outsider["sender"] as Record<string, unknown>)["session_id"] = sessionId;
    const refused = await call(bus, "POST", "/messages/send", outsider);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({ type: "AUTH", message: `codex://outsider is not a participant of session ${sessionId}` });
    bus.sessionManager.completeSession(sessionId, { summary: "done", artifacts: [] });
    const late = envelope(LEAD, DEV);
    (late["sender"] as Record<string, unknown>)["session_id"] = sessionId;
    expect((await call(bus, "POST", "/messages/send", late)).status).toBe(409);
  });
});

describe("sessions over HTTP", () => {
  it(`ends a page of GET /sessions before ${MAX_PAGE_CHARS} characters of JSON: large workflows make shorter pages, and the cursor goes on`, async () => {
    const bus = await startBus();
    const padding = "p".repeat(60 * 1024);
    const ids: string[] = [];
    for (let index = 0; index < 200; index++) ids.push(bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, { padding, index }));
    const walked: string[] = [];
    const sizes: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await call(bus, "GET", `/sessions?limit=1000${cursor === undefined ? "" : `&cursor=${cursor}`}`);
      expect(page.status).toBe(200);
      const sessions = page.body.sessions as Array<{ session_id: string }>;
      expect(JSON.stringify(sessions).length).toBeLessThanOrEqual(MAX_PAGE_CHARS + sessions.length + 2);
      sizes.push(sessions.length);
      walked.push(...sessions.map((session) => session.session_id));
      cursor = page.body.next_cursor as string | undefined;
    } while (cursor !== undefined);
    expect(walked).toEqual(ids);
    expect(sizes.length).toBe(2);
    expect(await call(bus, "GET", "/sessions?node=node-1")).toMatchObject({ status: 400, body: { error: { type: "CONFIG" } } });
    // A key cursor is one of a cluster's lists, not a node's own.
    expect(await call(bus, "GET", `/sessions?cursor=${Buffer.from(`k:${ids[0]}`, "utf8").toString("base64url")}`)).toMatchObject({
      status: 400,
      body: { error: { type: "CONFIG" } },
    });
  });

  it("serves the SessionManager: create, list, get, participants, workflow, context, complete, summary", async () => {
    const bus = await startBus();
    const created = await call(bus, "POST", "/sessions", { initiator: LEAD, participants: PARTICIPANTS, steps: STEPS, shared_context: { project: "p" } });
    expect(created.status).toBe(201);
    const sessionId = created.body.session_id as string;
    expect(created.body).toMatchObject({ success: true, session: { session_id: sessionId, workflow: { current_step: "design" } } });
    expect((await call(bus, "GET", "/sessions")).body.sessions).toHaveLength(1);
    expect((await call(bus, "GET", `/sessions/${sessionId}`)).body.status).toBe("active");

    const added = await call(bus, "POST", `/sessions/${sessionId}/participants`, { agent_id: "opencode://security", role: "reviewer" });
    expect(added.body.session.participants).toHaveLength(5);
    // The agent id in the path may be sent as is or URL-encoded.
    const removed = await call(bus, "DELETE", `/sessions/${sessionId}/participants/opencode://security`);
    expect(removed.status).toBe(200);
    expect(removed.body.session.participants).toHaveLength(4);

    const moved = await call(bus, "PATCH", `/sessions/${sessionId}/workflow`, {
      current_step: "implementation",
      completed_steps: ["design"],
      pending_steps: ["review"],
    });
    expect(moved.body.session.workflow).toMatchObject({ current_step: "implementation" });
    const context = await call(bus, "PATCH", `/sessions/${sessionId}/context`, { shared_context: { project: "p", branch: "b" } });
    expect(context.body.session.shared_context).toEqual({ project: "p", branch: "b" });
    const done = await call(bus, "POST", `/sessions/${sessionId}/complete`, { summary: "ok", artifacts: ["a.zip"] });
    expect(done.body.session).toMatchObject({ status: "completed", completion: { summary: "ok", artifacts: ["a.zip"] } });
    const summary = await call(bus, "GET", `/sessions/${sessionId}/summary`);
    expect(summary.body).toMatchObject({ session_id: sessionId, status: "completed", completion: { summary: "ok" } });

    const other = (await call(bus, "POST", "/sessions", { initiator: LEAD, participants: [], steps: [{ name: "only", required_agents: [] }] })).body
      .session_id as string;
    const terminated = await call(bus, "POST", `/sessions/${other}/terminate`, { reason: "timeout", details: { agent: WEB } });
    expect(terminated.body.session).toMatchObject({ status: "terminated", termination: { reason: "timeout", details: { agent: WEB } } });
  });

  it("lists workflow participants among the agents, as registered", async () => {
    const bus = await startBus();
    await register(bus, DEV);
    bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    const agents = (await call(bus, "GET", "/agents")).body.agents as Array<{ agent_id: string; source: string; online: boolean }>;
    expect(agents.map((agent) => [agent.agent_id, agent.source])).toEqual([
      [DEV, "registered"],
      [LEAD, "participant"],
      [WEB, "participant"],
      [QA, "participant"],
    ]);
    const web = await connect(bus, WEB);
    expect(web.client.connected).toBe(true);
  });
});

describe("result aggregator", () => {
  it("sums tasks, results, failures, durations and tokens per step and agent", async () => {
    const { bus, clock } = await startSimulatedBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
    bus.sessionManager.updateWorkflow(sessionId, { current_step: "implementation" });
    const dev = await task(bus, sessionId, LEAD, DEV, "t-dev");
    const web = await task(bus, sessionId, LEAD, WEB, "t-web");
    clock.increment(1_500);
    await answer(bus, sessionId, DEV, LEAD, { in_reply_to: dev });
    clock.increment(500);
    await answer(bus, sessionId, WEB, LEAD, { in_reply_to: web }, { message_type: "error", payload: { code: "E", message: "broken" } });
    await flush();

    const summary = bus.aggregator.summarize(sessionId);
    expect(summary.steps.map((step) => [step.name, step.status])).toEqual([
      ["design", "completed"],
      ["implementation", "current"],
      ["review", "pending"],
    ]);
    expect(summary.steps[1]!.agents).toEqual([
      {
        agent_id: DEV,
        tasks: 1,
        completed: 1,
        failed: 0,
        pending: 0,
        results: [{ task_id: "t-dev", result: { ok: true, usage: { input_tokens: 10, output_tokens: 4 } } }],
        failures: [],
        duration_ms: 1_500,
        usage: { input_tokens: 10, output_tokens: 4 },
      },
      {
        agent_id: WEB,
        tasks: 1,
        completed: 0,
        failed: 1,
        pending: 0,
        results: [],
        failures: [{ task_id: "t-web", code: "E", message: "broken" }],
        duration_ms: 2_000,
        usage: { input_tokens: 0, output_tokens: 0 },
      },
    ]);
    expect(summary.totals).toEqual({ tasks: 2, completed: 1, failed: 1, pending: 0, duration_ms: 3_500, usage: { input_tokens: 10, output_tokens: 4 } });
    const markdown = bus.aggregator.summarize(sessionId, { format: "markdown" });
    expect(markdown).toContain("### implementation (current)");
    expect(markdown).toContain(`| ${WEB} | 1 | 0 | 1 | 0 | 2000 | 0 | 0 |`);
    expect(markdown).toContain(`- ${WEB}, task t-web: E broken`);
    expect(() => bus.aggregator.summarize("sess_missing")).toThrow(expect.objectContaining({ type: "NOT_FOUND" }));
  });
});
