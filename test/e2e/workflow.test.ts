/**
 * Orchestrated workflows end to end (SPEC §3.7), over real sockets: one `POST /sessions` with
 * `dispatch: "auto"` runs design → implementation → review, done by an in-process LLM agent (the mock
 * provider, and the OpenAI provider against the fake OpenAI server), an ACP worker (the fixture agent) and a
 * WebSocket agent (`connectAgent`), to `completed` with every result in the summary; and the ways it
 * terminates with `task_failed`.
 */
import { SimulatedClock } from "xstate";
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, openAI, type Agent, type CommunicationBus } from "../../src/index.js";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { call, CLOCK_START, connect, flush, rawConnect, register, until, type TestAgent } from "../bus/support.js";
import { fixtureWorker } from "../support/workers.js";
import { startRuntimeBus } from "./support.js";

const QA = "claude-code://qa";
const ORCHESTRATOR = "troupe://orchestrator";

const PARTICIPANTS = [
  { agent_id: "troupe://designer", role: "designer" },
  { agent_id: "troupe://coder", role: "implementer" },
  { agent_id: QA, role: "reviewer" },
];

function steps(implementationTask = "Implement the design", reviewTimeout?: string) {
  return [
    { name: "design", required_agents: ["troupe://designer"], task: "Design a notification service" },
    { name: "implementation", required_agents: ["troupe://coder"], task: implementationTask },
    { name: "review", required_agents: [QA], task: { checklist: ["tests", "docs"] }, ...(reviewTimeout ? { timeout: reviewTimeout } : {}) },
  ];
}

/** The mock-provider designer: answers with the first line of its prompt. */
function mockDesigner(): Agent {
  return createMultiProviderAgent({
    id: "designer",
    providers: [mock({ script: (ctx) => ({ text: `Design: ${ctx.prompt.split("\n")[0]}`, usage: { inputTokens: 12, outputTokens: 3 } }) })],
  });
}

/** The reviewer on its WebSocket: approves every task it is sent. */
async function connectReviewer(bus: CommunicationBus): Promise<TestAgent> {
  await register(bus, QA);
  const reviewer: TestAgent = await connect(bus, QA, {
    onMessage: async (message, context) => {
      reviewer.received.push(message);
      if (message.message_type === "task_request") await context.reply({ text: "approved", usage: { input_tokens: 30, output_tokens: 1 } });
    },
  });
  return reviewer;
}

async function createWorkflow(bus: CommunicationBus, body: Record<string, unknown>): Promise<string> {
  const created = await call(bus, "POST", "/sessions", {
    initiator: ORCHESTRATOR,
    participants: PARTICIPANTS,
    shared_context: { project: "feature/notifications" },
    dispatch: "auto",
    ...body,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  return created.body.session_id as string;
}

async function sessionOf(bus: CommunicationBus, sessionId: string): Promise<any> {
  return (await call(bus, "GET", `/sessions/${sessionId}`)).body;
}

/** The session as `GET /sessions/:id` shows it once it has ended (workers take a moment to start). */
async function ended(bus: CommunicationBus, sessionId: string): Promise<any> {
  await until(() => bus.sessionManager.getSession(sessionId)?.status !== "active", 15_000);
  return sessionOf(bus, sessionId);
}

/** Checks a completed run: every step's result in the summary, the review's payload, nothing left in a queue. */
async function expectCompleted(bus: CommunicationBus, sessionId: string, reviewer: TestAgent, designText: string): Promise<void> {
  const session = await ended(bus, sessionId);
  expect(session.status).toBe("completed");
  expect(session.workflow).toMatchObject({ current_step: null, completed_steps: ["design", "implementation", "review"], pending_steps: [] });

  const summary = (await call(bus, "GET", `/sessions/${sessionId}/summary`)).body;
  expect(summary.status).toBe("completed");
  expect(summary.totals).toMatchObject({ tasks: 3, completed: 3, failed: 0, pending: 0 });
  const resultOf = (step: string) => summary.steps.find((each: { name: string }) => each.name === step).agents[0].results[0].result;
  expect(resultOf("design")).toMatchObject({ status: "completed", text: designText });
  expect(resultOf("implementation").text).toMatch(/^Echo: Implement the design\n\nWorkflow step: implementation\n/);
  expect(resultOf("implementation").text).toContain(`- design, troupe://designer: ${designText}`);
  expect(resultOf("review")).toEqual({ text: "approved", usage: { input_tokens: 30, output_tokens: 1 } });
  expect(summary.completion.summary).toMatch(
    /^Completed design → implementation → review\.\n- design, troupe:\/\/designer: .+\n- implementation, troupe:\/\/coder: Echo: .+\n- review, claude-code:\/\/qa: approved$/,
  );
  expect(summary.completion.artifacts.map((artifact: { step: string; agent_id: string }) => [artifact.step, artifact.agent_id])).toEqual([
    ["design", "troupe://designer"],
    ["implementation", "troupe://coder"],
    ["review", QA],
  ]);
  const markdown = (await call(bus, "GET", `/sessions/${sessionId}/summary?format=markdown`)).body.markdown as string;
  expect(markdown).toContain("## Summary");
  expect(markdown).toContain("approved");

  const requests = reviewer.received.filter((message) => message.message_type === "task_request");
  expect(requests).toHaveLength(1);
  expect(requests[0]).toMatchObject({
    sender: { agent_id: ORCHESTRATOR, session_id: sessionId },
    payload: {
      step: "review",
      task: { checklist: ["tests", "docs"] },
      shared_context: { project: "feature/notifications" },
      results: { design: { "troupe://designer": { text: designText } }, implementation: { "troupe://coder": { status: "completed" } } },
    },
    metadata: { task_id: `${sessionId}/review/1/claude-code://qa` },
  });
  // The answers to troupe://orchestrator were taken by the bus itself: nothing waits in a queue.
  await until(() => bus.metricsSnapshot().messages.by_status.queued === 0 && bus.metricsSnapshot().messages.by_status.delivered === 0);
}

describe("an auto-dispatched workflow", () => {
  it("runs design → implementation → review with a mock-provider LLM agent, an ACP worker and a WebSocket agent to completed", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [mockDesigner()], workers: [fixtureWorker("coder")] });
    const reviewer = await connectReviewer(bus);

    const sessionId = await createWorkflow(bus, { steps: steps() });

    await expectCompleted(bus, sessionId, reviewer, "Design: Design a notification service");
    // The bridge sessions that answered the workflow's tasks are closed with it.
    await until(() => runtime.health().sessions.total === 0);
  });

  it("runs the same workflow with the OpenAI provider against the fake OpenAI server", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ text: "Use a queue and a fan-out service", usage: { prompt_tokens: 40, completion_tokens: 8 } }));
    const designer = createMultiProviderAgent({
      id: "designer",
      providers: [openAI({ credentials: { apiKey: "sk-test-0123456789abcdef" }, baseURL: fake.baseURL, models: ["gpt-4o"] })],
    });
    const { bus } = await startRuntimeBus({ agents: [designer], workers: [fixtureWorker("coder")] });
    const reviewer = await connectReviewer(bus);

    const sessionId = await createWorkflow(bus, { steps: steps() });

    await expectCompleted(bus, sessionId, reviewer, "Use a queue and a fan-out service");
    const messages = (fake.lastRequest.body as { messages: Array<{ role: string; content: string }> }).messages;
    expect(messages.at(-1)).toMatchObject({
      role: "user",
      content: expect.stringMatching(/^Design a notification service\n\nWorkflow step: design\nShared context: /),
    });
    const summary = (await call(bus, "GET", `/sessions/${sessionId}/summary`)).body;
    expect(summary.steps[0].agents[0].usage).toEqual({ input_tokens: 40, output_tokens: 8 });
  });

  it("terminates with task_failed when the worker crashes mid-step, and never dispatches the review", async () => {
    const { bus } = await startRuntimeBus({ agents: [mockDesigner()], workers: [fixtureWorker("coder")] });
    const reviewer = await connectReviewer(bus);

    const sessionId = await createWorkflow(bus, { steps: steps("crash now") });
    const session = await ended(bus, sessionId);

    expect(session.status).toBe("terminated");
    expect(session.termination).toMatchObject({
      reason: "task_failed",
      details: { step: "implementation", agent: "troupe://coder", error: { code: "TRANSPORT", message: expect.any(String) } },
    });
    expect(session.workflow.completed_steps).toEqual(["design"]);
    expect(session.tasks.map((task: { step: string; status: string }) => [task.step, task.status])).toEqual([
      ["design", "completed"],
      ["implementation", "failed"],
    ]);
    expect(reviewer.received).toEqual([]);
  });

  it("terminates with task_failed when an agent answers with an error", async () => {
    const { bus } = await startRuntimeBus({ agents: [mockDesigner()], workers: [fixtureWorker("coder")] });
    await register(bus, QA);
    await connect(bus, QA, {
      onMessage: (_message, context) => void context.reply({ code: "REVIEW_REJECTED", message: "no tests" }, { message_type: "error" }),
    });

    const sessionId = await createWorkflow(bus, { steps: steps() });
    const session = await ended(bus, sessionId);

    expect(session.termination).toMatchObject({
      reason: "task_failed",
      details: { step: "review", agent: QA, error: { code: "REVIEW_REJECTED", message: "no tests" } },
    });
  });

  it("terminates with task_failed (TIMEOUT) when a step outlives its timeout", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const { bus } = await startRuntimeBus({ agents: [mockDesigner(), createMultiProviderAgent({ id: "coder", providers: [mock()] })] }, { clock });
    await register(bus, QA);
    const silent = await connect(bus, QA);

    const sessionId = await createWorkflow(bus, { steps: steps("Implement the design", "30s") });
    await until(() => silent.received.length === 1);
    expect(silent.received[0]!.routing.timeout).toBe("30000ms");
    clock.increment(29_999);
    expect(bus.sessionManager.getSession(sessionId)!.status).toBe("active");
    clock.increment(1);

    const session = await ended(bus, sessionId);
    expect(session.termination).toEqual({
      reason: "task_failed",
      details: { step: "review", agent: QA, error: { code: "TIMEOUT", message: `${QA} did not answer within 30000 ms` } },
      terminated_at: clock.now(),
    });
    // The task that was never answered failed with the step, as its summary says.
    expect(session.tasks.filter((task: { step: string }) => task.step === "review")).toEqual([
      expect.objectContaining({
        to: QA,
        status: "failed",
        answered_at: clock.now(),
        error: { code: "TIMEOUT", message: `${QA} did not answer within 30000 ms` },
      }),
    ]);
    expect(session.tasks.some((task: { status: string }) => task.status === "pending")).toBe(false);
  });

  it("terminates with task_failed (DELIVERY_FAILED) when a task cannot be delivered", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const { bus } = await startRuntimeBus(
      { agents: [mockDesigner(), createMultiProviderAgent({ id: "coder", providers: [mock()] })] },
      { clock, ackTimeout: 1_000, retryDelay: 100 },
    );
    await register(bus, QA);
    const deaf = await rawConnect(bus, QA);

    const sessionId = await createWorkflow(bus, { steps: steps() });
    await until(() => deaf.frames.length === 1);
    for (let attempt = 0; attempt < 10 && bus.sessionManager.getSession(sessionId)!.status === "active"; attempt += 1) {
      clock.increment(1_000);
      await flush();
    }

    const session = await ended(bus, sessionId);
    expect(session.termination).toMatchObject({ reason: "task_failed", details: { step: "review", agent: QA, error: { code: "DELIVERY_FAILED" } } });
  });

  it("refuses a step with a task but no required agents", async () => {
    const { bus } = await startRuntimeBus({ agents: [mockDesigner()] });

    const answer = await call(bus, "POST", "/sessions", {
      initiator: ORCHESTRATOR,
      participants: [],
      steps: [{ name: "solo", required_agents: [], task: "x" }],
      dispatch: "auto",
    });

    expect(answer.status).toBe(400);
    expect(answer.body.error).toMatchObject({ type: "CONFIG", details: { field: "steps.0.task" } });
  });
});
