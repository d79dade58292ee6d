/**
 * The bridge sessions that runtime agents hold for the bus's senders (SPEC §3.6, §3.8): bounded so that bus
 * traffic never locks the bridge out, forgotten as soon as they are gone, never opened for a sender that
 * could not get the answer or for a workflow that has ended, and the answers to an evicted workflow still
 * reach their sender.
 */
import { SimulatedClock } from "xstate";
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, type MessageEnvelope } from "../../src/index.js";
import { call, CLOCK_START, connect, envelope, flush, register, until } from "../bus/support.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { rejectionOf } from "../support/runtime.js";
import { fixtureWorker } from "../support/workers.js";
import { startRuntimeBus } from "./support.js";

/** The answers (task_response or error) an agent received. */
function answers(received: MessageEnvelope[]): MessageEnvelope[] {
  return received.filter((message) => message.message_type === "task_response" || message.message_type === "error");
}

describe("the bus's bridge sessions", () => {
  it("refuses an async task_request to a runtime agent from a sender that could not receive the answer with 404 naming it", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [createMultiProviderAgent({ id: "mock", providers: [mock()] })] });

    const refused = await call(bus, "POST", "/messages/send", envelope("ghost://s1", "troupe://mock", { payload: { prompt: "hi" } }));

    expect(refused.status).toBe(404);
    expect(refused.body.error).toMatchObject({
      type: "NOT_FOUND",
      message: "sender.agent_id: ghost://s1 could not receive the answer: register it or send with delivery_mode sync",
      details: { field: "sender.agent_id", agentId: "ghost://s1" },
    });
    // Waiting for the answer in the POST, or registered first, the same sender is answered.
    const sync = await call(
      bus,
      "POST",
      "/messages/send",
      envelope("ghost://s1", "troupe://mock", { payload: { prompt: "hi" }, routing: { delivery_mode: "sync" } }),
    );
    expect(sync.body).toMatchObject({ status: "delivered", response: { payload: { text: "Echo: hi" } } });
    await register(bus, "ghost://s1");
    expect((await call(bus, "POST", "/messages/send", envelope("ghost://s1", "troupe://mock", { payload: { prompt: "hi" } }))).status).toBe(202);
    // Only tasks to runtime agents are refused so: other messages from it are delivered as before.
    expect((await call(bus, "POST", "/messages/send", envelope("ghost://s2", "troupe://mock", { message_type: "status_update" }))).status).toBe(202);
    // Both of its tasks went to one session, and nothing was opened for the refused one.
    await until(() => runtime.health().sessions.idle === 1);
    expect(runtime.health().sessions.total).toBe(1);
  });

  it("holds at most maxBusSessions (default half the runtime's maxSessions) and answers CAPACITY past it, leaving the rest to the bridge", async () => {
    const planner = createControlledAgent("planner");
    const { bus, runtime } = await startRuntimeBus({ agents: [planner.agent], maxSessions: 4 });
    const senders = ["codex://s1", "codex://s2", "codex://s3"];
    await register(bus, ...senders);
    const clients = await Promise.all(senders.map((sender) => connect(bus, sender)));

    for (const client of clients) await client.client.send({ recipient: "troupe://planner", message_type: "task_request", payload: { prompt: "plan" } });
    await until(() => planner.prompts.length === 2 && answers(clients[2]!.received).length === 1);

    expect(answers(clients[2]!.received)[0]!.payload).toMatchObject({ code: "CAPACITY", message: expect.stringContaining("maxBusSessions") });
    // The bridge's users still have their half of the runtime's sessions.
    await runtime.bridge.sessionsCreate({ agentId: "planner" });
    await runtime.bridge.sessionsCreate({ agentId: "planner" });
    expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "planner" }))).toMatchObject({ type: "CAPACITY" });
    for (const prompt of planner.prompts) prompt.reply();
  });

  it("forgets a session the moment it expires, so that its place serves another sender", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock()] });
    const { bus, runtime } = await startRuntimeBus({ agents: [writer], sessionIdleMs: 1_000 }, { clock, maxBusSessions: 1 });
    await register(bus, "codex://first", "codex://second");
    const first = await connect(bus, "codex://first");
    const second = await connect(bus, "codex://second");

    await first.client.send({ recipient: "troupe://writer", message_type: "task_request", payload: { prompt: "one" } });
    await until(() => answers(first.received).length === 1);
    await second.client.send({ recipient: "troupe://writer", message_type: "task_request", payload: { prompt: "two" } });
    await until(() => answers(second.received).length === 1);
    expect(answers(second.received)[0]!.payload).toMatchObject({ code: "CAPACITY" });

    clock.increment(1_000);
    expect(runtime.health().sessions.total).toBe(0);
    await second.client.send({ recipient: "troupe://writer", message_type: "task_request", payload: { prompt: "three" } });
    await until(() => answers(second.received).length === 2);

    expect(answers(second.received)[1]!.payload).toMatchObject({ status: "completed", text: "Echo: three" });
  });

  it("closes the sessions of a worker that crashed while they were idle, without waiting for another task", async () => {
    const { bus, runtime } = await startRuntimeBus({ workers: [fixtureWorker("coder")] });
    await register(bus, "codex://client");
    const client = await connect(bus, "codex://client");

    await client.client.send({ recipient: "troupe://coder", message_type: "task_request", payload: { prompt: "pid" } });
    await until(() => answers(client.received).length === 1);
    const pid = Number(answers(client.received)[0]!.payload["text"]);
    expect(runtime.health().sessions).toMatchObject({ total: 1, idle: 1 });

    process.kill(pid, "SIGKILL");

    await until(() => runtime.health().sessions.total === 0);
  });

  it("does not open a session for a task whose workflow ended before the agent took it", async () => {
    const planner = createControlledAgent("planner");
    const { bus, runtime } = await startRuntimeBus({ agents: [planner.agent] });
    const client = "codex://client";
    await register(bus, client);
    const listener = await connect(bus, client);
    const workflowId = bus.sessionManager.createSession(
      client,
      [{ agent_id: "troupe://planner", role: "planner" }],
      [{ name: "plan", required_agents: ["troupe://planner"] }],
    );

    // Ended as soon as the task is accepted: the bus answers a send once it is durable, a turn later.
    const sent = bus.send(
      envelope(client, "troupe://planner", { sender: { agent_id: client, framework: "codex", session_id: workflowId }, payload: { prompt: "plan" } }),
    );
    bus.sessionManager.deleteSession(workflowId);
    await sent;
    await until(() => answers(listener.received).length === 1);

    expect(answers(listener.received)[0]).toMatchObject({
      message_type: "error",
      payload: { code: "CANCELLED", message: expect.stringContaining("has ended") },
    });
    await flush();
    expect(planner.opened).toEqual([]);
    expect(runtime.health().sessions.total).toBe(0);
  });

  it("still answers a task whose workflow was evicted meanwhile: the answer goes without the session", async () => {
    const planner = createControlledAgent("planner");
    const { bus } = await startRuntimeBus({ agents: [planner.agent] });
    const client = "codex://client";
    await register(bus, client);
    const listener = await connect(bus, client);
    const workflowId = bus.sessionManager.createSession(
      client,
      [{ agent_id: "troupe://planner", role: "planner" }],
      [{ name: "plan", required_agents: ["troupe://planner"] }],
    );

    await listener.client.send({
      message_id: "plan-1",
      recipient: "troupe://planner",
      message_type: "task_request",
      payload: { prompt: "plan" },
      session_id: workflowId,
    });
    await until(() => planner.prompts.length === 1);
    expect((await call(bus, "DELETE", `/sessions/${workflowId}`)).status).toBe(200);
    await until(() => answers(listener.received).length === 1);

    expect(answers(listener.received)[0]).toMatchObject({ message_type: "error", metadata: { in_reply_to: "plan-1" } });
    expect(answers(listener.received)[0]!.sender.session_id).toBeUndefined();
  });
});
