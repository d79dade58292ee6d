/**
 * Every runtime agent is the bus agent `troupe://<id>` (SPEC §3.6): a `task_request` to it, from a WebSocket
 * agent or over HTTP, goes through the bus's delivery and is answered through a bridge session.
 */
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, type Agent, type MessageEnvelope } from "../../src/index.js";
import { call, connect, envelope, register, statusOf, until } from "../bus/support.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { startRuntimeBus } from "./support.js";

const CLIENT = "claude-code://client";

/** The envelopes an agent received of one type. */
function ofType(received: MessageEnvelope[], type: MessageEnvelope["message_type"]): MessageEnvelope[] {
  return received.filter((message) => message.message_type === type);
}

describe("runtime agents on the bus", () => {
  it("answers a task_request to troupe://<id> with a task_response through a bridge session", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "A haiku", usage: { inputTokens: 5, outputTokens: 2 } }] })] });
    const { bus, runtime } = await startRuntimeBus({ agents: [writer] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({
      message_id: "ask-1",
      recipient: "troupe://writer",
      message_type: "task_request",
      payload: { prompt: "Write a haiku" },
      metadata: { task_id: "t-1" },
    });
    await until(() => ofType(client.received, "task_response").length === 1);

    const [answer] = ofType(client.received, "task_response");
    expect(answer).toMatchObject({
      sender: { agent_id: "troupe://writer", framework: "troupe" },
      recipient: { agent_id: CLIENT },
      payload: { status: "completed", text: "A haiku", stop_reason: "end_turn", usage: { input_tokens: 5, output_tokens: 2 } },
      metadata: { in_reply_to: "ask-1", task_id: "t-1" },
    });
    expect(answer!.sender.session_id).toBeUndefined();
    expect(statusOf(bus, "ask-1")).toBe("acknowledged");
    expect((await runtime.bridge.health()).sessions.total).toBe(1);
  });

  it("prompts with the JSON payload when it has no text prompt, and reuses the bridge session of the same sender", async () => {
    const { agent, prompts } = createControlledAgent("planner");
    const { bus, runtime } = await startRuntimeBus({ agents: [agent] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({ recipient: "troupe://planner", message_type: "task_request", payload: { goal: "ship", steps: 2 } });
    await until(() => prompts.length === 1);
    expect(prompts[0]!.ctx.prompt).toBe(JSON.stringify({ goal: "ship", steps: 2 }));
    prompts[0]!.reply({ text: "planned" });
    await until(() => ofType(client.received, "task_response").length === 1);

    await client.client.send({ recipient: "troupe://planner", message_type: "task_request", payload: { prompt: "again" } });
    await until(() => prompts.length === 2);
    expect(prompts[1]!.ctx.session.sessionId).toBe(prompts[0]!.ctx.session.sessionId);
    expect(prompts[1]!.ctx.history).toEqual([
      { role: "user", content: JSON.stringify({ goal: "ship", steps: 2 }) },
      { role: "assistant", content: "planned" },
    ]);
    prompts[1]!.reply();
    await until(() => ofType(client.received, "task_response").length === 2);
    expect((await runtime.bridge.health()).sessions.total).toBe(1);
  });

  it("answers a failing prompt with an error envelope carrying the BridgeError type", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ error: { type: "UPSTREAM", message: "model overloaded" } }] })] });
    const { bus } = await startRuntimeBus({ agents: [writer] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({
      message_id: "ask-err",
      recipient: "troupe://writer",
      message_type: "task_request",
      payload: { prompt: "hi" },
      metadata: { task_id: "t-err" },
    });
    await until(() => ofType(client.received, "error").length === 1);

    expect(ofType(client.received, "error")[0]).toMatchObject({
      sender: { agent_id: "troupe://writer" },
      payload: { code: "UPSTREAM", message: expect.stringContaining("model overloaded") },
      metadata: { in_reply_to: "ask-err", task_id: "t-err" },
    });
  });

  it("holds tasks to the bridge's limits: a prompt over maxPromptBytes is CONFIG, and past maxConcurrentRequests CAPACITY", async () => {
    const planner = createControlledAgent("planner");
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock()] });
    const { bus, runtime } = await startRuntimeBus({ agents: [planner.agent, writer], maxPromptBytes: 100, maxConcurrentRequests: 1 });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({ message_id: "too-big", recipient: "troupe://writer", message_type: "task_request", payload: { prompt: "x".repeat(200) } });
    await until(() => ofType(client.received, "error").length === 1);
    expect(ofType(client.received, "error")[0]).toMatchObject({
      payload: { code: "CONFIG", message: "prompt: 200 bytes exceeds maxPromptBytes 100" },
      metadata: { in_reply_to: "too-big" },
    });

    const held = runtime.bridge.tasksDelegate({ agentId: "planner", prompt: "hold" });
    await until(() => planner.prompts.length === 1);
    await client.client.send({ message_id: "one-too-many", recipient: "troupe://writer", message_type: "task_request", payload: { prompt: "hi" } });
    await until(() => ofType(client.received, "error").length === 2);
    expect(ofType(client.received, "error")[1]).toMatchObject({
      payload: { code: "CAPACITY", message: expect.stringContaining("maxConcurrentRequests") },
      metadata: { in_reply_to: "one-too-many" },
    });
    planner.current().reply();
    await held;
  });

  it("refuses a message to a troupe:// agent the runtime does not have as an unknown recipient", async () => {
    const { bus } = await startRuntimeBus({ agents: [createControlledAgent("planner").agent] });

    const answer = await call(bus, "POST", "/messages/send", envelope(CLIENT, "troupe://ghost"));

    expect(answer.status).toBe(404);
    expect(answer.body.error).toMatchObject({ type: "NOT_FOUND", details: { agentId: "troupe://ghost", field: "recipient.agent_id" } });
  });

  it("streams the prompt's deltas as status_update envelopes before the answer when metadata.stream is true", async () => {
    // Each delta in a turn of the event loop of its own, as a model streaming over the network emits them.
    const writer: Agent = {
      id: "writer",
      prompt: async (ctx) => {
        for (const delta of ["one ", "two ", "three"]) {
          ctx.emit(delta);
          await new Promise((resolve) => setImmediate(resolve));
        }
        return { text: "one two three" };
      },
    };
    const { bus } = await startRuntimeBus({ agents: [writer] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({
      message_id: "ask-stream",
      recipient: "troupe://writer",
      message_type: "task_request",
      payload: { prompt: "count" },
      metadata: { stream: true, task_id: "t-s" },
    });
    await until(() => ofType(client.received, "task_response").length === 1);

    const updates = ofType(client.received, "status_update");
    expect(updates.map((update) => update.payload)).toEqual([
      { status: "in_progress", delta: "one " },
      { status: "in_progress", delta: "two " },
      { status: "in_progress", delta: "three" },
    ]);
    for (const update of updates) expect(update.metadata).toEqual({ in_reply_to: "ask-stream", task_id: "t-s" });
    expect(client.received.at(-1)!.message_type).toBe("task_response");
  });

  it("does not stream without metadata.stream", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "one two" }] })] });
    const { bus } = await startRuntimeBus({ agents: [writer] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({ recipient: "troupe://writer", message_type: "task_request", payload: { prompt: "count" } });
    await until(() => ofType(client.received, "task_response").length === 1);

    expect(ofType(client.received, "status_update")).toEqual([]);
  });

  it("answers a sync HTTP task_request in the POST's response", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "synced" }] })] });
    const { bus } = await startRuntimeBus({ agents: [writer] });
    await register(bus, CLIENT);

    const answer = await call(
      bus,
      "POST",
      "/messages/send",
      envelope(CLIENT, "troupe://writer", { payload: { prompt: "now" }, routing: { delivery_mode: "sync" } }),
    );

    expect(answer.status).toBe(202);
    expect(answer.body).toMatchObject({ status: "delivered", response: { message_type: "task_response", payload: { status: "completed", text: "synced" } } });
  });

  it("answers a sync task_request from a sender that never registered: the reply goes to the waiting POST", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "synced" }] })] });
    const { bus } = await startRuntimeBus({ agents: [writer] });

    const answer = await call(
      bus,
      "POST",
      "/messages/send",
      envelope("cli://stranger", "troupe://writer", { payload: { prompt: "now" }, routing: { delivery_mode: "sync", timeout: "10s" } }),
    );

    expect(answer.status).toBe(202);
    expect(answer.body).toMatchObject({ status: "delivered", response: { recipient: { agent_id: "cli://stranger" }, payload: { text: "synced" } } });
  });

  it("refuses a workflow naming a troupe:// agent the runtime does not have, and the deregistration of a runtime agent", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock()] });
    const { bus } = await startRuntimeBus({ agents: [writer] });
    const steps = [{ name: "write", required_agents: ["troupe://ghost"], task: "t" }];

    const ghost = await call(bus, "POST", "/sessions", {
      initiator: "troupe://orchestrator",
      participants: [{ agent_id: "troupe://ghost", role: "writer" }],
      steps,
      dispatch: "auto",
    });
    expect(ghost.status).toBe(404);
    expect(ghost.body.error).toMatchObject({ type: "NOT_FOUND", details: { field: "participants.0.agent_id", agentId: "troupe://ghost" } });
    // Nothing was created: the id stays unknown to the bus.
    expect((await call(bus, "POST", "/messages/send", envelope(CLIENT, "troupe://ghost"))).status).toBe(404);
    const real = await call(bus, "POST", "/sessions", {
      initiator: "troupe://orchestrator",
      participants: [{ agent_id: "troupe://writer", role: "writer" }],
      steps: [{ name: "write", required_agents: ["troupe://writer"] }],
    });
    expect(real.status).toBe(201);
    const added = await call(bus, "POST", `/sessions/${real.body.session_id}/participants`, { agent_id: "troupe://ghost", role: "x" });
    expect(added.status).toBe(404);

    const deregistered = await call(bus, "DELETE", `/agents/${encodeURIComponent("troupe://writer")}`);
    expect(deregistered.status).toBe(400);
    expect(deregistered.body.error.message).toContain("one of the runtime's own agents");
  });

  it("answers another method on /messages/send with 405, not as a message id", async () => {
    const { bus } = await startRuntimeBus();
    const answer = await fetch(`${bus.url}/messages/send`, { headers: { "x-agent-api-key": "test-key" } });
    expect(answer.status).toBe(405);
    expect(answer.headers.get("allow")).toBe("POST");
  });

  it("acknowledges and ignores messages of other types", async () => {
    const { agent, prompts } = createControlledAgent("planner");
    const { bus } = await startRuntimeBus({ agents: [agent] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    for (const type of ["status_update", "heartbeat", "task_response", "error"] as const) {
      await client.client.send({ message_id: `other-${type}`, recipient: "troupe://planner", message_type: type, payload: { note: type } });
    }
    await until(() => ["status_update", "heartbeat", "task_response", "error"].every((type) => statusOf(bus, `other-${type}`) === "acknowledged"));

    expect(prompts).toEqual([]);
    expect(client.received).toEqual([]);
  });

  it("cancels a task's prompt on a cancelled status_update from its sender, and answers CANCELLED", async () => {
    const { agent, prompts } = createControlledAgent("planner");
    const { bus } = await startRuntimeBus({ agents: [agent] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({ message_id: "long", recipient: "troupe://planner", message_type: "task_request", payload: { prompt: "think" } });
    await until(() => prompts.length === 1);
    await client.client.send({
      recipient: "troupe://planner",
      message_type: "status_update",
      payload: { status: "cancelled" },
      metadata: { in_reply_to: "long" },
    });
    await until(() => ofType(client.received, "error").length === 1);

    expect(prompts[0]!.ctx.signal.aborted).toBe(true);
    expect(ofType(client.received, "error")[0]!.payload).toMatchObject({ code: "CANCELLED" });
  });

  it("opens one bridge session per (sender, workflow session) pair, closed when the workflow ends or the bus stops", async () => {
    const planner = createControlledAgent("planner");
    const { bus } = await startRuntimeBus({ agents: [planner.agent] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);
    const steps = [{ name: "plan", required_agents: ["troupe://planner"] }];
    const first = bus.sessionManager.createSession(CLIENT, [{ agent_id: "troupe://planner", role: "planner" }], steps);
    const second = bus.sessionManager.createSession(CLIENT, [{ agent_id: "troupe://planner", role: "planner" }], steps);

    for (const sessionId of [first, first, second, undefined]) {
      await client.client.send({
        recipient: "troupe://planner",
        message_type: "task_request",
        payload: { prompt: "plan" },
        ...(sessionId ? { session_id: sessionId } : {}),
      });
      await until(() => planner.prompts.some((prompt) => !prompt.settled));
      planner.current().reply({ text: "planned" });
      await until(() => planner.prompts.every((prompt) => prompt.settled));
    }
    await until(() => ofType(client.received, "task_response").length === 4);

    const sessions = planner.prompts.map((prompt) => prompt.ctx.session.sessionId);
    expect(sessions[1]).toBe(sessions[0]);
    expect(new Set(sessions).size).toBe(3);
    expect(planner.opened.map((session) => session.metadata)).toEqual([
      { bus: { sender: CLIENT, session_id: first } },
      { bus: { sender: CLIENT, session_id: second } },
      { bus: { sender: CLIENT } },
    ]);
    expect(ofType(client.received, "task_response").map((answer) => answer.sender.session_id)).toEqual([first, first, second, undefined]);

    expect((await call(bus, "POST", `/sessions/${first}/terminate`, { reason: "done" })).status).toBe(200);
    await until(() => planner.closes.length === 1);
    expect(planner.closes).toEqual([{ sessionId: sessions[0], reason: "closed" }]);

    await bus.stop();
    expect(planner.closes.map((close) => close.sessionId).sort()).toEqual([...new Set(sessions)].sort());
  });

  it("answers a task of a workflow it does not take part in outside the session, still recorded by in_reply_to", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "drafted" }] })] });
    const { bus } = await startRuntimeBus({ agents: [writer] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);
    const sessionId = bus.sessionManager.createSession(CLIENT, [], [{ name: "draft", required_agents: [] }]);

    await client.client.send({
      recipient: "troupe://writer",
      message_type: "task_request",
      payload: { prompt: "draft" },
      session_id: sessionId,
      metadata: { task_id: "draft-1" },
    });
    await until(() => ofType(client.received, "task_response").length === 1);

    expect(ofType(client.received, "task_response")[0]!.sender.session_id).toBeUndefined();
    expect(bus.sessionManager.getSession(sessionId)!.tasks).toMatchObject([
      { task_id: "draft-1", status: "completed", answered_by: "troupe://writer", result: { text: "drafted" } },
    ]);
  });

  it("uses an id that has a framework prefix as it is", async () => {
    const { agent, prompts } = createControlledAgent("opencode://backend");
    const { bus } = await startRuntimeBus({ agents: [agent] });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);

    await client.client.send({ recipient: "opencode://backend", message_type: "task_request", payload: { prompt: "build" } });
    await until(() => prompts.length === 1);
    prompts[0]!.reply({ text: "built" });
    await until(() => ofType(client.received, "task_response").length === 1);

    expect(ofType(client.received, "task_response")[0]).toMatchObject({ sender: { agent_id: "opencode://backend" }, payload: { text: "built" } });
    expect((await call(bus, "POST", "/messages/send", envelope(CLIENT, "troupe://opencode://backend"))).status).toBe(404);
  });
});
