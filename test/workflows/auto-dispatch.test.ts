/**
 * `dispatch: "auto"` at the session manager's level (SPEC §3.7): the seed's positional API with options, the
 * requests troupe sends and what they carry, explicit moves, step timeouts in any workflow, and the checks.
 */
import { describe, expect, it } from "vitest";
import { createRuntime, SessionManager, systemClock, type MessageEnvelope } from "../../src/index.js";
import { call, connect, rawConnect, register, SEED_AGENTS, startSimulatedBus, statusOf, until, type TestAgent } from "../bus/support.js";

const { lead: LEAD, backend: DEV, qa: QA } = SEED_AGENTS;
const PARTICIPANTS = [
  { agent_id: DEV, role: "implementer" },
  { agent_id: QA, role: "reviewer" },
];
const STEPS = [
  { name: "implementation", required_agents: [DEV], task: "Build the service" },
  { name: "review", required_agents: [QA], task: { checklist: ["tests"] } },
];

/** An agent that answers each task_request with `{ text }` unless `answer` says otherwise. */
async function worker(bus: Awaited<ReturnType<typeof startSimulatedBus>>["bus"], agentId: string, text: string): Promise<TestAgent> {
  await register(bus, agentId);
  const agent: TestAgent = await connect(bus, agentId, {
    onMessage: async (message, context) => {
      agent.received.push(message);
      if (message.message_type === "task_request") await context.reply({ text });
    },
  });
  return agent;
}

function requests(agent: TestAgent): MessageEnvelope[] {
  return agent.received.filter((message) => message.message_type === "task_request");
}

describe("auto-dispatched workflows", () => {
  it("announce the session before its first step's tasks: workflow.created comes first", async () => {
    const { bus } = await startSimulatedBus();
    await worker(bus, DEV, "built");
    const order: string[] = [];
    bus.on("*", (event) => {
      if (event.type.startsWith("workflow.")) order.push(event.type);
    });

    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, {}, { dispatch: "auto" });
    await until(() => bus.sessionManager.getSession(sessionId)!.tasks[0]?.status === "completed");

    expect(order.slice(0, 3)).toEqual(["workflow.created", "workflow.task_delegated", "workflow.task_completed"]);
  });

  it("take the seed's positional arguments with options last, and send the first step's task at once", async () => {
    const { bus } = await startSimulatedBus();
    const dev = await worker(bus, DEV, "built");
    const qa = await worker(bus, QA, "approved");

    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, { project: "notifications" }, { dispatch: "auto" });
    await until(() => bus.sessionManager.getSession(sessionId)!.status === "completed");

    expect(bus.sessionManager.getSession(sessionId)!.dispatch).toBe("auto");
    expect(requests(dev)[0]).toMatchObject({
      message_id: `${sessionId}/implementation/1/0`,
      sender: { agent_id: LEAD, framework: "claude-code", session_id: sessionId },
      recipient: { agent_id: DEV, framework: "opencode" },
      payload: {
        step: "implementation",
        task: "Build the service",
        shared_context: { project: "notifications" },
        results: {},
        prompt: 'Build the service\n\nWorkflow step: implementation\nShared context: {"project":"notifications"}',
      },
      metadata: { task_id: `${sessionId}/implementation/1/${DEV}` },
    });
    expect(requests(qa)[0]!.payload).toEqual({
      step: "review",
      task: { checklist: ["tests"] },
      shared_context: { project: "notifications" },
      results: { implementation: { [DEV]: { text: "built" } } },
    });
    expect(bus.sessionManager.getSession(sessionId)!.completion?.summary).toBe(
      `Completed implementation → review.\n- implementation, ${DEV}: built\n- review, ${QA}: approved`,
    );
  });

  it("hands the answers to an initiator that is a connected agent, as to any sender", async () => {
    const { bus } = await startSimulatedBus();
    await worker(bus, DEV, "built");
    await worker(bus, QA, "approved");
    await register(bus, LEAD);
    const lead = await connect(bus, LEAD);

    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, {}, { dispatch: "auto" });
    await until(() => lead.received.length === 2);

    expect(lead.received.map((message) => [message.message_type, message.sender.agent_id, message.payload["text"]])).toEqual([
      ["task_response", DEV, "built"],
      ["task_response", QA, "approved"],
    ]);
    expect(bus.sessionManager.getSession(sessionId)!.status).toBe("completed");
  });

  it("gives tasks ids unique to their workflow: an answer in one workflow acknowledges nothing of another", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000, ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, DEV, QA);
    const dev = await rawConnect(bus, DEV);

    const first = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, {}, { dispatch: "auto" });
    const second = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, {}, { dispatch: "auto" });
    await until(() => dev.frames.length === 2);
    const [request, other] = dev.frames as MessageEnvelope[];
    expect(request!.metadata?.["task_id"]).toBe(`${first}/implementation/1/${DEV}`);
    expect(other!.metadata?.["task_id"]).toBe(`${second}/implementation/1/${DEV}`);
    dev.socket.send(
      JSON.stringify({
        message_id: "done-1",
        timestamp: "2025-02-02T11:00:00Z",
        sender: { agent_id: DEV, framework: "opencode", session_id: first },
        recipient: { agent_id: LEAD, framework: "claude-code" },
        message_type: "task_response",
        payload: { text: "built" },
        metadata: { in_reply_to: request!.message_id, task_id: request!.metadata?.["task_id"] },
      }),
    );
    await until(() => statusOf(bus, request!.message_id) === "acknowledged");

    expect(statusOf(bus, other!.message_id)).toBe("delivered");
    clock.increment(1_000);
    clock.increment(100);
    await until(() => dev.frames.filter((frame) => frame.message_id === other!.message_id).length === 2);
  });

  it("sends the step's tasks again, in a new round, when an explicit update moves into it", async () => {
    const { bus } = await startSimulatedBus();
    await register(bus, DEV, QA);
    const dev = await connect(bus, DEV);

    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, {}, { dispatch: "auto" });
    await until(() => requests(dev).length === 1);
    const moved = await call(bus, "PATCH", `/sessions/${sessionId}/workflow`, { current_step: "implementation" });
    expect(moved.status).toBe(200);
    await until(() => requests(dev).length === 2);

    expect(requests(dev).map((message) => message.metadata?.["task_id"])).toEqual([
      `${sessionId}/implementation/1/${DEV}`,
      `${sessionId}/implementation/2/${DEV}`,
    ]);
  });

  it("terminates with task_failed when the bus refuses a task (a full queue)", async () => {
    const { bus } = await startSimulatedBus({ maxQueuedPerAgent: 1 });
    await register(bus, QA);
    await bus.send({
      message_id: "filler",
      timestamp: "2025-02-02T11:00:00Z",
      sender: { agent_id: LEAD, framework: "claude-code" },
      recipient: { agent_id: QA, framework: "claude-code" },
      message_type: "status_update",
      payload: {},
    });

    const sessionId = bus.sessionManager.createSession(
      LEAD,
      PARTICIPANTS,
      [{ name: "review", required_agents: [QA], task: "review" }],
      {},
      { dispatch: "auto" },
    );
    await until(() => bus.sessionManager.getSession(sessionId)!.status !== "active");

    expect(bus.sessionManager.getSession(sessionId)!.termination).toMatchObject({
      reason: "task_failed",
      details: { step: "review", agent: QA, error: { code: "CAPACITY", message: expect.stringContaining("queue") } },
    });
  });

  it("ends a manual workflow too when a step with a timeout waits too long for its agents", async () => {
    const { bus, clock } = await startSimulatedBus();
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, [{ name: "implementation", required_agents: [DEV], timeout: "2m" }]);

    clock.increment(120_000);

    expect(bus.sessionManager.getSession(sessionId)).toMatchObject({
      status: "terminated",
      termination: { reason: "task_failed", details: { step: "implementation", agent: DEV, error: { code: "TIMEOUT" } } },
    });
  });

  it("fails each task a timed-out step still waits for with its own agent's TIMEOUT", async () => {
    const { bus, clock } = await startSimulatedBus();
    await register(bus, DEV, QA);
    const sessionId = bus.sessionManager.createSession(
      LEAD,
      PARTICIPANTS,
      [{ name: "build", required_agents: [DEV, QA], task: "do it", timeout: "1s" }],
      {},
      { dispatch: "auto" },
    );
    await until(() => bus.sessionManager.getSession(sessionId)!.tasks.length === 2);

    clock.increment(1_000);

    const session = bus.sessionManager.getSession(sessionId)!;
    expect(session.status).toBe("terminated");
    expect(session.tasks.map((task) => [task.to, task.status, task.error])).toEqual([
      [DEV, "failed", { code: "TIMEOUT", message: `${DEV} did not answer within 1000 ms` }],
      [QA, "failed", { code: "TIMEOUT", message: `${QA} did not answer within 1000 ms` }],
    ]);
  });

  it("leaves a manual workflow active when an agent answers with an error: its orchestrator decides", async () => {
    const { bus } = await startSimulatedBus();
    await register(bus, DEV);
    await connect(bus, DEV, { onMessage: (_message, context) => void context.reply({ code: "BROKEN", message: "no" }, { message_type: "error" }) });
    const sessionId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);

    await bus.send({
      message_id: "manual-1",
      timestamp: "2025-02-02T11:00:00Z",
      sender: { agent_id: LEAD, framework: "claude-code", session_id: sessionId },
      recipient: { agent_id: DEV, framework: "opencode" },
      message_type: "task_request",
      payload: { task: "build" },
    });
    await until(() => bus.sessionManager.getSession(sessionId)!.tasks[0]?.status === "failed");

    expect(bus.sessionManager.getSession(sessionId)).toMatchObject({ status: "active", workflow: { current_step: "implementation" } });
  });

  it("refuses dispatch auto without a bus, a bad step timeout, and a timeout on a step without agents", async () => {
    const manager = new SessionManager({ clock: systemClock, runtime: createRuntime(), retentionMs: 0 });
    expect(() => manager.createSession(LEAD, PARTICIPANTS, STEPS, {}, { dispatch: "auto" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "dispatch" }) }),
    );

    const { bus } = await startSimulatedBus();
    const badTimeout = await call(bus, "POST", "/sessions", {
      initiator: LEAD,
      participants: PARTICIPANTS,
      steps: [{ name: "x", required_agents: [DEV], timeout: "soon" }],
    });
    expect(badTimeout.status).toBe(400);
    expect(badTimeout.body.error.details.field).toBe("steps.0.timeout");
    const noAgents = await call(bus, "POST", "/sessions", { initiator: LEAD, participants: [], steps: [{ name: "x", required_agents: [], timeout: "5m" }] });
    expect(noAgents.status).toBe(400);
    expect(noAgents.body.error.details.field).toBe("steps.0.timeout");
    const badMode = await call(bus, "POST", "/sessions", {
      initiator: LEAD,
      participants: [],
      steps: [{ name: "x", required_agents: [] }],
      dispatch: "sometimes",
    });
    expect(badMode.status).toBe(400);
    expect(badMode.body.error.details.field).toBe("dispatch");
  });
});
