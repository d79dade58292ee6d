/**
 * `connectAgent`: acks, dedupe of redeliveries, sending and replying, refusals, and reconnection with backoff.
 */
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { CommunicationBus, connectAgent, type BridgeError, type MessageEnvelope } from "../../src/index.js";
import { call, connect, envelope, flush, rawConnect, register, startBus, TEST_KEY, until } from "../bus/support.js";
import { frameText } from "../../src/protocol/frames.js";

const A = "codex://alpha";
const B = "opencode://beta";

const opened: Array<{ close(): Promise<void> | void }> = [];

afterEach(async () => {
  for (const each of opened.splice(0).reverse()) await each.close();
});

function track<T extends { close(): Promise<void> | void }>(closable: T): T {
  opened.push(closable);
  return closable;
}

describe("connectAgent", () => {
  it("acknowledges every delivery but hands each message_id to onMessage once", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    track({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    const acks: string[] = [];
    server.on("connection", (socket) => {
      socket.on("message", (data) => acks.push(JSON.parse(frameText(data)).message_id));
      const message = JSON.stringify(envelope(B, A, { message_id: "twice" }));
      socket.send(message);
      socket.send(message);
      socket.send(JSON.stringify(envelope(B, A, { message_id: "once" })));
    });
    const received: string[] = [];
    const client = track(
      connectAgent({
        url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
        agentId: A,
        onMessage: (message) => void received.push(message.message_id),
      }),
    );
    await client.ready();
    await until(() => acks.length === 3);
    expect(acks).toEqual(["twice", "twice", "once"]);
    expect(received).toEqual(["twice", "once"]);
  });

  it("reports frames it cannot read (valid JSON that is not a message or an answer) through onError and keeps going", async () => {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    track({ close: () => new Promise<void>((resolve) => server.close(() => resolve())) });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    const urls: string[] = [];
    const unreadable = ["42", "null", '"x"', "[]", "{}", '{"type":"rejected"}', '{"message_type":"task_request","message_id":7}'];
    server.on("connection", (socket, request) => {
      urls.push(request.url ?? "");
      for (const frame of unreadable) socket.send(frame);
      socket.send(JSON.stringify(envelope(B, A, { message_id: "after" })));
    });
    const errors: BridgeError[] = [];
    const received: string[] = [];
    const client = track(
      connectAgent({
        url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
        agentId: A,
        onMessage: (message) => void received.push(message.message_id),
        onError: (error) => errors.push(error),
      }),
    );
    await client.ready();
    await until(() => received.length === 1);
    expect(received).toEqual(["after"]);
    expect(errors.map((error) => error.type)).toEqual(unreadable.map(() => "TRANSPORT"));
    expect(errors[0]!.message).toBe("The bus sent a frame that is neither a message nor an answer: 42");
    expect(client.connected).toBe(true);
    // It asks for the bus's control frames: its sends wait for them.
    expect(new URL(urls[0]!, "ws://bus").searchParams.get("control")).toBe("1");
  });

  it("sends envelopes with their defaults filled in, and rejects what the bus refuses with its error", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const beta = await connect(bus, B);
    const alpha = await connect(bus, A);
    const answer = await alpha.client.send({ recipient: B, message_type: "status_update", priority: "low", payload: { progress: 0.5 } });
    expect(answer).toEqual({ message_id: expect.any(String), status: "accepted" });
    await until(() => beta.received.length === 1);
    expect(beta.received[0]).toMatchObject({
      message_id: answer.message_id,
      sender: { agent_id: A, framework: "codex" },
      recipient: { agent_id: B, framework: "opencode" },
      priority: "low",
    });
    await expect(alpha.client.send({ recipient: "codex://nobody", message_type: "task_request", payload: {} })).rejects.toMatchObject({ type: "NOT_FOUND" });
    await expect(alpha.client.send({ recipient: B, message_type: "task_request", payload: {}, session_id: "sess_none" })).rejects.toMatchObject({
      type: "NOT_FOUND",
      message: "Session not found",
    });
  });

  it("replies with in_reply_to, the task id and the session id of the request", async () => {
    const bus = await startBus();
    const sessionId = bus.sessionManager.createSession(A, [{ agent_id: B, role: "worker" }], [{ name: "work", required_agents: [B] }]);
    await connect(bus, B, { onMessage: async (_message, context) => void (await context.reply({ done: true })) });
    const alpha = await connect(bus, A);
    await alpha.client.send({ recipient: B, message_type: "task_request", payload: {}, session_id: sessionId, metadata: { task_id: "t-7" } });
    await until(() => alpha.received.length === 1);
    expect(alpha.received[0]).toMatchObject({ message_type: "task_response", sender: { session_id: sessionId }, metadata: { task_id: "t-7" } });
    expect(bus.sessionManager.getSession(sessionId)?.tasks[0]).toMatchObject({ task_id: "t-7", status: "completed", result: { done: true } });
  });

  it("rejects a send while disconnected with TRANSPORT", async () => {
    const client = track(connectAgent({ url: "http://127.0.0.1:9", agentId: A, onMessage: () => {}, reconnect: false }));
    await expect(client.send({ recipient: B, message_type: "heartbeat", payload: {} })).rejects.toMatchObject({ type: "TRANSPORT" });
  });

  it("gives up on a wrong key (AUTH), saying so on onError", async () => {
    const bus = await startBus();
    await register(bus, A);
    const errors: BridgeError[] = [];
    const wrongKey = track(connectAgent({ url: bus.url, agentId: A, apiKey: "wrong", onMessage: () => {}, onError: (error) => errors.push(error) }));
    await expect(wrongKey.ready()).rejects.toMatchObject({ type: "AUTH" });
    expect(errors.map((error) => error.type)).toEqual(["AUTH"]);
  });

  it("says on onError that the bus does not know it, and keeps trying with backoff until it is registered", async () => {
    const bus = await startBus();
    const stranger = "codex://stranger";
    const errors: BridgeError[] = [];
    const received: MessageEnvelope[] = [];
    const client = track(
      connectAgent({
        url: bus.url,
        agentId: stranger,
        apiKey: TEST_KEY,
        onMessage: (message) => void received.push(message),
        onError: (error) => errors.push(error),
        reconnect: { initialDelayMs: 10, maxDelayMs: 40 },
      }),
    );
    await until(() => errors.length >= 2);
    expect(errors[0]).toMatchObject({ type: "NOT_FOUND", details: { agentId: stranger, retryable: true } });
    expect(errors[0]!.message).toMatch(
      /^The bus does not know codex:\/\/stranger \(Agent not registered: codex:\/\/stranger\): register it .* or give connectAgent its descriptor as `register`; trying again in 10 ms$/,
    );
    expect(client.connected).toBe(false);
    await register(bus, A, stranger);
    await client.ready();
    await bus.send(envelope(A, stranger, { message_id: "at-last" }));
    await until(() => received.length === 1);
  });

  it("registers itself with its descriptor when the bus does not know it, keeping the token it has (agentAuth token)", async () => {
    const first = await startBus({ agentAuth: "token" });
    const port = first.port;
    const token = "the-agents-own-token-0123";
    const errors: BridgeError[] = [];
    const received: MessageEnvelope[] = [];
    const client = track(
      connectAgent({
        url: first.url,
        agentId: B,
        apiKey: TEST_KEY,
        token,
        register: { capabilities: ["review"], metadata: { team: "qa" } },
        onMessage: (message) => void received.push(message),
        onError: (error) => errors.push(error),
        reconnect: { initialDelayMs: 10, maxDelayMs: 40 },
      }),
    );
    // Unknown at its first connection: it registers, with its own token.
    await client.ready();
    expect(first.listAgents().find((agent) => agent.agent_id === B)).toMatchObject({ capabilities: ["review"], metadata: { team: "qa" }, online: true });
    await first.stop();
    await until(() => !client.connected);

    // A bus in memory restarted on the same port knows nobody: the agent registers again and comes back.
    const second = new CommunicationBus({ host: "127.0.0.1", port, apiKey: TEST_KEY, agentAuth: "token", closeGraceMs: 50, env: {} });
    track({ close: () => second.stop() });
    await second.start();
    await until(() => second.listAgents().some((agent) => agent.agent_id === B && agent.online), 5_000);
    second.registerAgent({ agent_id: A });
    await second.send(envelope(A, B, { message_id: "after-restart" }));
    await until(() => received.length === 1);
    // Its token is still its own: the key alone cannot take its registration over.
    expect((await call(second, "POST", "/agents/register", { agent_id: B })).status).toBe(403);
    expect(errors).toEqual([]);
  });

  it("gives up, saying so, once it is deregistered", async () => {
    const bus = await startBus();
    await register(bus, A);
    const errors: BridgeError[] = [];
    const client = track(
      connectAgent({ url: bus.url, agentId: A, apiKey: TEST_KEY, register: {}, onMessage: () => {}, onError: (error) => errors.push(error) }),
    );
    await client.ready();
    bus.deregisterAgent(A);
    await until(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ type: "AUTH", message: `The bus closed ${A}: Agent deregistered` });
    await flush();
    expect(client.connected).toBe(false);
    expect(bus.listAgents().some((agent) => agent.agent_id === A)).toBe(false);
  });

  it("stops reconnecting once a newer connection of the same agent took over", async () => {
    const bus = await startBus();
    await register(bus, A);
    const older = await connect(bus, A);
    await rawConnect(bus, A);
    await until(() => !older.client.connected);
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(older.client.connected).toBe(false);
  });

  it("reconnects with backoff after the bus goes away, and gets what was queued meanwhile", async () => {
    const first = await startBus();
    const port = first.port;
    await register(first, A, B);
    const received: MessageEnvelope[] = [];
    const client = track(
      connectAgent({
        url: first.url,
        agentId: B,
        apiKey: TEST_KEY,
        onMessage: (message) => void received.push(message),
        reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
      }),
    );
    await client.ready();
    await first.stop();
    await until(() => !client.connected);

    // A new bus on the same port; the agent comes back by itself.
    const second = new CommunicationBus({ host: "127.0.0.1", port, apiKey: TEST_KEY, closeGraceMs: 50, env: {} });
    track({ close: () => second.stop() });
    await second.start();
    // Registered in process: fetch's pooled connection to the old bus on this port may still be closing.
    second.registerAgent({ agent_id: A });
    second.registerAgent({ agent_id: B });
    await second.send(envelope(A, B, { message_id: "while-away" }));
    await until(() => received.length === 1, 5_000);
    expect(received[0]!.message_id).toBe("while-away");
    expect(client.connected).toBe(true);
    await flush();
  });
});
