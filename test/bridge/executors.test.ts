/**
 * The bridge's session rules, run against both executors: agents in this process, and the same agent as an
 * ACP worker process.
 */
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { createRuntime, type Runtime, type RuntimeOptions } from "../../src/index.js";
import { nextEvent, rejectionOf } from "../support/runtime.js";
import { createScriptedAgent } from "../support/scripted-agent.js";
import { fixtureWorker } from "../support/workers.js";

const AGENT = "scripted";

const executors: Array<[string, (options: RuntimeOptions) => RuntimeOptions]> = [
  ["in-process", (options) => ({ ...options, agents: [createScriptedAgent(AGENT)] })],
  ["worker", (options) => ({ ...options, workers: [fixtureWorker(AGENT)] })],
];

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
});

describe.each(executors)("bridge rules on the %s executor", (kind, configure) => {
  async function start(options: RuntimeOptions = {}): Promise<Runtime> {
    const runtime = createRuntime({ defaultAgentId: AGENT, ...configure(options) });
    runtimes.push(runtime);
    await runtime.start();
    return runtime;
  }

  /** Sends a prompt that waits until cancelled; resolves (with its pending reply) once the agent runs it. */
  async function sendWait(runtime: Runtime, sessionId: string, requestId = "wait"): Promise<{ reply: Promise<unknown> }> {
    const started = nextEvent(runtime, (event) => event.type === "prompt.delta" && event.actorId === sessionId);
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "wait", requestId });
    reply.catch(() => undefined);
    await started;
    return { reply };
  }

  it("creates a session, answers with streamed deltas, and goes idle", async () => {
    const runtime = await start();
    const deltas: string[] = [];
    runtime.on("prompt.delta", (event) => deltas.push(event.delta));
    const created = await runtime.bridge.sessionsCreate({});
    expect(created).toEqual({ sessionId: expect.any(String), agentId: AGENT, status: "active" });
    const reply = await runtime.bridge.sessionsPrompt({ sessionId: created.sessionId, prompt: "hello world", requestId: "r1" });
    expect(reply).toMatchObject({ text: "Echo: hello world", stopReason: "end_turn", requestId: "r1" });
    expect(deltas.join("")).toBe("Echo: hello world");
    expect((await runtime.bridge.sessionsStatus({ sessionId: created.sessionId })).status).toBe("idle");
  });

  it("answers queued prompts in FIFO order", async () => {
    const runtime = await start();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const completed: string[] = [];
    runtime.on("prompt.completed", (event) => completed.push(event.requestId));
    const replies = ["1", "2", "3"].map((requestId) => runtime.bridge.sessionsPrompt({ sessionId, prompt: `echo ${requestId}`, requestId }));
    expect((await Promise.all(replies)).map((reply) => reply.text)).toEqual(["Echo: echo 1", "Echo: echo 2", "Echo: echo 3"]);
    expect(completed).toEqual(["1", "2", "3"]);
  });

  it("refuses a prompt past maxQueuedPrompts with BUSY", async () => {
    const runtime = await start({ maxQueuedPrompts: 1 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    await sendWait(runtime, sessionId);
    const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "queued" });
    expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "one too many" }))).toMatchObject({ type: "BUSY" });
    await runtime.bridge.sessionsCancel({ sessionId });
    expect((await queued).text).toBe("Echo: queued");
  });

  it("cancels the in-flight prompt: CANCELLED, the session idle and usable", async () => {
    const runtime = await start();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const { reply: waiting } = await sendWait(runtime, sessionId, "w1");
    expect(await runtime.bridge.sessionsCancel({ sessionId })).toEqual({ cancelled: true, sessionId, requestId: "w1" });
    expect(await rejectionOf(waiting)).toMatchObject({ type: "CANCELLED" });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "after" })).text).toBe("Echo: after");
  });

  it("drops a queued prompt by requestId and answers NOT_FOUND for an unknown one", async () => {
    const runtime = await start();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    await sendWait(runtime, sessionId, "w1");
    const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "queued", requestId: "q1" });
    expect(await runtime.bridge.sessionsCancel({ sessionId, requestId: "q1" })).toMatchObject({ requestId: "q1" });
    expect(await rejectionOf(queued)).toMatchObject({ type: "CANCELLED" });
    expect(await rejectionOf(runtime.bridge.sessionsCancel({ sessionId, requestId: "nope" }))).toMatchObject({ type: "NOT_FOUND" });
    expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "w1", queued: 0 });
  });

  it("keeps the session valid after a transient agent error", async () => {
    const runtime = await start();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "fail" }))).toMatchObject({
      type: "UPSTREAM",
      details: { sessionValid: true },
    });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "again" })).text).toBe("Echo: again");
  });

  it("fails the session when the agent's side crashes; later prompts fail with sessionValid false", async () => {
    const runtime = await start();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "crash" }))).toMatchObject({
      type: "TRANSPORT",
      details: { sessionValid: false },
    });
    expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "failed", error: { type: "TRANSPORT" } });
    expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" }))).toMatchObject({
      type: "TRANSPORT",
      details: { sessionValid: false },
    });
  });

  it("deletes a closed session and cancels its pending prompts", async () => {
    const runtime = await start();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const { reply: waiting } = await sendWait(runtime, sessionId);
    await runtime.bridge.sessionsClose({ sessionId });
    expect(await rejectionOf(waiting)).toMatchObject({ type: "CANCELLED" });
    expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId }))).toMatchObject({ type: "NOT_FOUND", message: "Session not found" });
  });

  it("refuses sessions past maxSessions with CAPACITY", async () => {
    const runtime = await start({ maxSessions: 1 });
    await runtime.bridge.sessionsCreate({});
    expect(await rejectionOf(runtime.bridge.sessionsCreate({}))).toMatchObject({ type: "CAPACITY" });
  });

  it("closes the session of tasks_delegate even when its prompt fails", async () => {
    const runtime = await start();
    expect((await runtime.bridge.tasksDelegate({ prompt: "one shot" })).text).toBe("Echo: one shot");
    expect(await rejectionOf(runtime.bridge.tasksDelegate({ prompt: "fail" }))).toMatchObject({ type: "UPSTREAM" });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("answers bad arguments with CONFIG naming the field", async () => {
    const runtime = await start();
    expect(await rejectionOf(runtime.bridge.call("sessions_prompt", { sessionId: "s" }))).toMatchObject({
      type: "CONFIG",
      details: { field: "prompt" },
    });
  });

  it(kind === "worker" ? "never expires its sessions" : "expires its sessions at the TTL", async () => {
    const clock = new SimulatedClock();
    clock.set(Date.now());
    const runtime = await start({ clock, sessionTtlMs: 1_000, sessionIdleMs: 500 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const status = await runtime.bridge.sessionsStatus({ sessionId });
    clock.increment(10_000);
    await new Promise((resolve) => setImmediate(resolve));
    if (kind === "worker") {
      expect(status.expiresAt).toBeUndefined();
      expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("active");
    } else {
      expect(status.expiresAt).toBe(status.createdAt + 500);
      expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId }))).toMatchObject({ type: "NOT_FOUND" });
    }
  });
});
