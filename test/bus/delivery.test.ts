/**
 * Delivery behaviours of the bus over real sockets: priority queues, acks, retries and backoff under
 * simulated time, fallback agents, dead letters, the offline queue, dedupe, sync mode, heartbeats and limits.
 */
import { once } from "node:events";
import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { BUS_AGENT_ID, CLOSE_CODES, createMockAgent, createRuntime } from "../../src/index.js";
import { call, connect, envelope, flush, rawConnect, register, startBus, startSimulatedBus, statusOf, TEST_KEY, until, upgradeStatus } from "./support.js";

const A = "codex://alpha";
const B = "opencode://beta";
const C = "claude-code://gamma";

describe("priority queues", () => {
  it("serves an offline recipient's queue on reconnect, most urgent first and in order within a priority", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const sent = [
      ["low-1", "low"],
      ["medium-1", "medium"],
      ["high-1", "high"],
      ["critical-1", "critical"],
      ["high-2", "high"],
      ["low-2", "low"],
    ] as const;
    for (const [messageId, priority] of sent) {
      const answer = await call(bus, "POST", "/messages/send", envelope(A, B, { message_id: messageId, priority }));
      expect(answer).toEqual({ status: 202, body: { success: true, message_id: messageId, status: "accepted" } });
      expect((await call(bus, "GET", `/messages/${messageId}`)).body).toEqual({ message_id: messageId, sender: A, status: "queued", attempts: 0 });
    }
    const beta = await connect(bus, B);
    await until(() => beta.received.length === sent.length);
    expect(beta.received.map((message) => message.message_id)).toEqual(["critical-1", "high-1", "high-2", "medium-1", "low-1", "low-2"]);
    await until(() => bus.messageStatus("low-2").status === "acknowledged");
  });

  it("writes at most maxInFlightPerAgent unacknowledged messages; the rest wait and leave by priority", async () => {
    const bus = await startBus({ maxInFlightPerAgent: 2 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    for (const [messageId, priority] of [
      ["first", "low"],
      ["second", "low"],
      ["third", "low"],
      ["urgent", "critical"],
      ["soon", "high"],
    ] as const) {
      await bus.send(envelope(A, B, { message_id: messageId, priority }));
    }
    await until(() => beta.frames.length === 2);
    expect(bus.messageStatus("third").status).toBe("queued");
    beta.ack("first");
    await until(() => beta.frames.length === 3);
    beta.ack("second");
    await until(() => beta.frames.length === 4);
    beta.ack("urgent");
    beta.ack("soon");
    await until(() => beta.frames.length === 5);
    expect(beta.frames.map((frame) => frame.message_id)).toEqual(["first", "second", "urgent", "soon", "third"]);
  });
});

describe("acknowledgement, retries and backoff", () => {
  it("moves a message accepted → delivered → acknowledged, with one attempt", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "m1" }));
    await until(() => beta.frames.length === 1);
    expect(bus.messageStatus("m1")).toEqual({ message_id: "m1", sender: A, status: "delivered", attempts: 1 });
    beta.ack("m1");
    await until(() => bus.messageStatus("m1").status === "acknowledged");
    expect(bus.messageStatus("m1")).toEqual({ message_id: "m1", sender: A, status: "acknowledged", attempts: 1 });
    beta.ack("m1");
    await flush();
    expect(bus.messageStatus("m1").status).toBe("acknowledged");
  });

  it("retries an unacknowledged message after ackTimeout with linear backoff, then declares it dead", async () => {
    const { bus, clock } = await startSimulatedBus({ ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "m1", routing: { retry_policy: { max_retries: 2, backoff: "linear" } } }));
    await until(() => beta.frames.length === 1);

    clock.increment(1_000);
    expect(bus.messageStatus("m1")).toMatchObject({ status: "retrying", attempts: 1, last_error: "No ack from opencode://beta within 1000 ms" });
    clock.increment(99);
    await flush();
    expect(beta.frames).toHaveLength(1);
    clock.increment(1);
    await until(() => beta.frames.length === 2);
    expect(bus.messageStatus("m1")).toMatchObject({ status: "delivered", attempts: 2 });

    // A simulated clock fires what falls due inside one increment at its end: step from deadline to deadline.
    clock.increment(1_000);
    clock.increment(199);
    await flush();
    expect(beta.frames).toHaveLength(2);
    clock.increment(1);
    await until(() => beta.frames.length === 3);
    clock.increment(1_000);
    expect(bus.messageStatus("m1")).toMatchObject({ status: "dead", attempts: 3 });
    expect(bus.messageStatus("m1").last_error).toMatch(/^Retries exhausted on opencode:\/\/beta/);
    expect(beta.frames.map((frame) => frame.message_id)).toEqual(["m1", "m1", "m1"]);
  });

  it("doubles the wait with exponential backoff", async () => {
    const { bus, clock } = await startSimulatedBus({ ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "m1", routing: { retry_policy: { max_retries: 3, backoff: "exponential" } } }));
    await until(() => beta.frames.length === 1);
    for (const [attempt, backoffMs] of [
      [2, 100],
      [3, 200],
      [4, 400],
    ] as const) {
      clock.increment(1_000);
      clock.increment(backoffMs - 1);
      await flush();
      expect(beta.frames, `before attempt ${attempt}`).toHaveLength(attempt - 1);
      clock.increment(1);
      await until(() => beta.frames.length === attempt);
    }
    beta.ack("m1");
    await until(() => bus.messageStatus("m1").status === "acknowledged");
    expect(bus.messageStatus("m1").attempts).toBe(4);
  });

  it("counts a late ack that arrives during the backoff", async () => {
    const { bus, clock } = await startSimulatedBus({ ackTimeout: 1_000, retryDelay: 500 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "m1" }));
    await until(() => beta.frames.length === 1);
    clock.increment(1_000);
    expect(bus.messageStatus("m1").status).toBe("retrying");
    beta.ack("m1");
    await until(() => bus.messageStatus("m1").status === "acknowledged");
    clock.increment(10_000);
    await flush();
    expect(beta.frames).toHaveLength(1);
  });

  it("retries when the socket closes before the ack, and delivers again once the agent is back", async () => {
    const { bus, clock } = await startSimulatedBus({ retryDelay: 100 });
    await register(bus, A, B);
    const first = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "m1" }));
    await until(() => first.frames.length === 1);
    first.socket.close();
    await until(() => bus.messageStatus("m1").status === "retrying");
    expect(bus.messageStatus("m1").last_error).toBe("Connection of opencode://beta closed before the ack");
    clock.increment(100);
    expect(bus.messageStatus("m1").status).toBe("queued");
    const again = await connect(bus, B);
    await until(() => bus.messageStatus("m1").status === "acknowledged");
    expect(again.received.map((message) => message.message_id)).toEqual(["m1"]);
    expect(bus.messageStatus("m1").attempts).toBe(2);
  });
});

describe("fallback agents and dead letters", () => {
  it("hands a message nobody acknowledges to the fallback agent once the recipient's retries are used", async () => {
    const { bus, clock } = await startSimulatedBus({ ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A, B, C);
    const beta = await rawConnect(bus, B);
    const gamma = await connect(bus, C);
    await bus.send(envelope(A, B, { message_id: "m1", routing: { retry_policy: { max_retries: 1, backoff: "linear" }, fallback_agents: [C] } }));
    await until(() => beta.frames.length === 1);
    clock.increment(1_000);
    clock.increment(100);
    await until(() => beta.frames.length === 2);
    clock.increment(1_000);
    await until(() => gamma.received.length === 1);
    await until(() => bus.messageStatus("m1").status === "acknowledged");
    expect(gamma.received[0]).toMatchObject({ message_id: "m1", recipient: { agent_id: B } });
    expect(bus.messageStatus("m1").attempts).toBe(3);
  });

  it("declares a message dead after routing.timeout and sends the sender a DELIVERY_FAILED error", async () => {
    const { bus, clock } = await startSimulatedBus();
    await register(bus, A, B);
    const alpha = await connect(bus, A);
    await bus.send(envelope(A, B, { message_id: "m1", metadata: { task_id: "t-1" }, routing: { timeout: "5s" } }));
    expect(bus.messageStatus("m1").status).toBe("queued");
    clock.increment(4_999);
    expect(bus.messageStatus("m1").status).toBe("queued");
    clock.increment(1);
    expect(bus.messageStatus("m1")).toEqual({ message_id: "m1", sender: A, status: "dead", attempts: 0, last_error: "Not acknowledged within 5000 ms" });
    await until(() => alpha.received.length === 1);
    expect(alpha.received[0]).toMatchObject({
      sender: { agent_id: BUS_AGENT_ID },
      recipient: { agent_id: A },
      message_type: "error",
      payload: { code: "DELIVERY_FAILED", in_reply_to: "m1", recipient: B },
      metadata: { in_reply_to: "m1", task_id: "t-1" },
    });
    // The beta agent connecting later does not get the dead message.
    const beta = await connect(bus, B);
    await flush();
    expect(beta.received).toEqual([]);
  });

  it("uses messageTimeout when routing.timeout is omitted", async () => {
    const { bus, clock } = await startSimulatedBus({ messageTimeout: 2_000 });
    await register(bus, A, B);
    await bus.send(envelope(A, B, { message_id: "m1" }));
    clock.increment(2_000);
    expect(bus.messageStatus("m1").status).toBe("dead");
  });
});

describe("dedupe", () => {
  it("answers a repeated message_id with duplicate and delivers it once", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const beta = await connect(bus, B);
    const body = envelope(A, B, { message_id: "same" });
    expect((await call(bus, "POST", "/messages/send", body)).body).toEqual({ success: true, message_id: "same", status: "accepted" });
    expect((await call(bus, "POST", "/messages/send", body)).body).toEqual({ success: true, message_id: "same", status: "duplicate" });
    expect((await call(bus, "POST", "/messages/send", { ...body, payload: { other: true } })).body.status).toBe("duplicate");
    await until(() => bus.messageStatus("same").status === "acknowledged");
    await flush();
    expect(beta.received).toHaveLength(1);
    expect((await call(bus, "GET", "/metrics")).body.messages.duplicates_total).toBe(2);
  });
});

describe("dedupe is per sender", () => {
  it("delivers the same message_id from two senders, each once, and tells their statuses apart", async () => {
    const bus = await startBus();
    await register(bus, A, B, C);
    const beta = await rawConnect(bus, B);
    // C squats the id A will use: A's message is still its own, and is delivered.
    expect((await call(bus, "POST", "/messages/send", envelope(C, B, { message_id: "shared-id", payload: { from: "c" } }))).body.status).toBe("accepted");
    expect((await call(bus, "POST", "/messages/send", envelope(A, B, { message_id: "shared-id", payload: { from: "a" } }))).body.status).toBe("accepted");
    expect((await call(bus, "POST", "/messages/send", envelope(A, B, { message_id: "shared-id", payload: { from: "a" } }))).body.status).toBe("duplicate");
    await until(() => beta.frames.length === 2);
    expect(beta.frames.map((frame) => frame.payload.from).sort()).toEqual(["a", "c"]);

    const ambiguous = await call(bus, "GET", "/messages/shared-id");
    expect(ambiguous.status).toBe(400);
    expect(ambiguous.body.error.details).toMatchObject({ field: "sender", senders: expect.arrayContaining([A, C]) });
    expect((await call(bus, "GET", `/messages/shared-id?sender=${encodeURIComponent(A)}`)).body).toEqual({
      message_id: "shared-id",
      sender: A,
      status: "delivered",
      attempts: 1,
    });

    // An ack names a message_id: both copies written to this agent are acknowledged by it.
    beta.ack("shared-id");
    await until(() => bus.messageStatus("shared-id", A).status === "acknowledged" && bus.messageStatus("shared-id", C).status === "acknowledged");
    expect((await call(bus, "GET", "/messages/shared-id?sender=nobody%3A%2F%2Fx")).status).toBe(404);
  });

  it("hands each sync sender the reply to its own message when two use the same id", async () => {
    const bus = await startBus();
    await register(bus, A, B, C);
    await connect(bus, B, {
      onMessage: async (message, context) => {
        await context.reply({ echo: message.payload["asker"] });
      },
    });
    const sync = { routing: { delivery_mode: "sync", timeout: "5s" } };
    const [fromA, fromC] = await Promise.all([
      call(bus, "POST", "/messages/send", envelope(A, B, { message_id: "q", payload: { asker: "a" }, ...sync })),
      call(bus, "POST", "/messages/send", envelope(C, B, { message_id: "q", payload: { asker: "c" }, ...sync })),
    ]);
    expect(fromA.body.response).toMatchObject({ recipient: { agent_id: A }, payload: { echo: "a" }, metadata: { in_reply_to: "q" } });
    expect(fromC.body.response).toMatchObject({ recipient: { agent_id: C }, payload: { echo: "c" }, metadata: { in_reply_to: "q" } });
  });
});

describe("sync delivery", () => {
  it("answers with the recipient's response", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    await connect(bus, B, {
      onMessage: async (message, context) => {
        await context.reply({ answer: 42, question: message.payload["question"] });
      },
    });
    const answer = await call(
      bus,
      "POST",
      "/messages/send",
      envelope(A, B, { message_id: "q1", payload: { question: "life" }, routing: { delivery_mode: "sync", timeout: "5s" } }),
    );
    expect(answer.status).toBe(202);
    expect(answer.body).toMatchObject({
      success: true,
      message_id: "q1",
      status: "delivered",
      response: { message_type: "task_response", sender: { agent_id: B }, payload: { answer: 42, question: "life" }, metadata: { in_reply_to: "q1" } },
    });
    const replyId = answer.body.response.message_id as string;
    await until(() => bus.messageStatus(replyId).status === "acknowledged");
  });

  it("answers 504 TIMEOUT when no response comes within routing.timeout", async () => {
    const { bus, clock } = await startSimulatedBus();
    await register(bus, A, B);
    await connect(bus, B);
    const pending = call(bus, "POST", "/messages/send", envelope(A, B, { message_id: "q1", routing: { delivery_mode: "sync", timeout: "3s" } }));
    await until(() => statusOf(bus, "q1") === "acknowledged");
    clock.increment(3_000);
    const answer = await pending;
    expect(answer.status).toBe(504);
    expect(answer.body.error).toMatchObject({ type: "TIMEOUT", message: "No reply to q1 within 3000 ms" });
  });

  it("answers 504 TIMEOUT with DELIVERY_FAILED when the request itself dies unacknowledged at routing.timeout", async () => {
    const { bus, clock } = await startSimulatedBus();
    await register(bus, A, B);
    const pending = call(bus, "POST", "/messages/send", envelope(A, B, { message_id: "q1", routing: { delivery_mode: "sync", timeout: "3s" } }));
    await until(() => statusOf(bus, "q1") === "queued");
    clock.increment(3_000);
    const answer = await pending;
    expect(answer.status).toBe(504);
    expect(answer.body.error).toMatchObject({ type: "TIMEOUT", message: "q1: Not acknowledged within 3000 ms", details: { code: "DELIVERY_FAILED" } });
  });

  it("answers 502 TRANSPORT with DELIVERY_FAILED when the request dies with every retry used", async () => {
    const { bus, clock } = await startSimulatedBus({ ackTimeout: 1_000 });
    await register(bus, A, B);
    await rawConnect(bus, B);
    const routing = { delivery_mode: "sync", timeout: "30s", retry_policy: { max_retries: 0, backoff: "linear" } };
    const pending = call(bus, "POST", "/messages/send", envelope(A, B, { message_id: "q1", routing }));
    await until(() => statusOf(bus, "q1") === "delivered");
    clock.increment(1_000);
    const answer = await pending;
    expect(answer.status).toBe(502);
    expect(answer.body.error).toMatchObject({ type: "TRANSPORT", message: expect.stringContaining("Retries exhausted"), details: { code: "DELIVERY_FAILED" } });
  });
});

describe("heartbeat", () => {
  it("terminates a socket that misses two pongs and marks its agent offline", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 30_000 });
    await register(bus, A, B);
    const silent = await rawConnect(bus, B);
    const alive = await connect(bus, A);
    let pings = 0;
    silent.socket.on("ping", () => (pings += 1));
    clock.increment(30_000);
    await until(() => pings === 1);
    clock.increment(30_000);
    await until(() => pings === 2);
    expect(bus.listAgents().find((agent) => agent.agent_id === B)?.online).toBe(true);
    clock.increment(30_000);
    expect((await silent.closed).code).toBe(1006);
    await until(() => bus.listAgents().find((agent) => agent.agent_id === B)?.online === false);
    // The agent that answers pings stays, and its last heartbeat is the last pong.
    await flush();
    expect(alive.client.connected).toBe(true);
    await until(() => (bus.listAgents().find((agent) => agent.agent_id === A)?.last_heartbeat ?? 0) === bus.clock.now());
    expect(bus.listAgents().find((agent) => agent.agent_id === A)?.online).toBe(true);
  });
});

describe("connections", () => {
  it("answers the upgrade past maxConnections with 503", async () => {
    const bus = await startBus({ maxConnections: 2 });
    await register(bus, A, B, C);
    await rawConnect(bus, A);
    await rawConnect(bus, B);
    expect(await upgradeStatus(bus, `?agent_id=${encodeURIComponent(C)}`)).toBe(503);
    // The refusal says which bound it hit, as every bound does.
    const refusal = new WebSocket(`${bus.url.replace("http", "ws")}/agents/connect?agent_id=${encodeURIComponent(C)}`, {
      headers: { "x-agent-api-key": TEST_KEY },
    });
    refusal.on("error", () => {});
    const [, response] = (await once(refusal, "unexpected-response")) as [unknown, IncomingMessage];
    let body = "";
    for await (const chunk of response) body += String(chunk);
    refusal.terminate();
    expect(JSON.parse(body).error).toMatchObject({ type: "CAPACITY", details: { limit: 2 } });
    expect((await call(bus, "GET", "/health")).status).toBe(200);
  });

  it("closes an agent that is neither registered nor a participant with 1008", async () => {
    const bus = await startBus();
    const stranger = await rawConnect(bus, "codex://stranger");
    expect(await stranger.closed).toEqual({ code: CLOSE_CODES.policy, reason: "Agent not registered: codex://stranger" });
  });

  it("closes a socket that connects as one of the runtime's agents, or any troupe:// id, with 1008 saying they answer in-process", async () => {
    const runtime = createRuntime({ agents: [createMockAgent({ id: "mock" }), createMockAgent({ id: "claude-code://reviewer" })] });
    await runtime.start();
    try {
      const bus = await startBus({ runtime });
      const reason = (agentId: string) => `A runtime agent (troupe://) answers in-process and cannot connect as a remote agent: ${agentId}`;
      for (const agentId of ["troupe://mock", "claude-code://reviewer", "troupe://nobody"]) {
        const socket = await rawConnect(bus, agentId);
        expect(await socket.closed).toEqual({ code: CLOSE_CODES.policy, reason: reason(agentId) });
      }
      await bus.stop();
    } finally {
      await runtime.stop();
    }
  });

  it("refuses an upgrade without the key (401), with a bad or repeated agent id (400) or on another path (404)", async () => {
    const bus = await startBus();
    await register(bus, A);
    expect(await upgradeStatus(bus, `?agent_id=${encodeURIComponent(A)}`, {})).toBe(401);
    expect(await upgradeStatus(bus, `?agent_id=${encodeURIComponent(A)}`, { "x-agent-api-key": "wrong" })).toBe(401);
    expect(await upgradeStatus(bus, "?agent_id=not-an-agent-id")).toBe(400);
    expect(await upgradeStatus(bus, "")).toBe(400);
    // Two agent ids are neither: the socket is not attached to the first one's.
    expect(await upgradeStatus(bus, `?agent_id=${encodeURIComponent(A)}&agent_id=${encodeURIComponent(A)}`)).toBe(400);
  });

  it("accepts the key as the Sec-WebSocket-Protocol value key.<key>, as browsers send it, and never echoes it back", async () => {
    const bus = await startBus();
    await register(bus, A);
    const { default: WebSocket } = await import("ws");
    const socket = new WebSocket(`${bus.url.replace("http", "ws")}/agents/connect?agent_id=${encodeURIComponent(A)}`, ["troupe", `key.${TEST_KEY}`]);
    const upgraded = new Promise<string | undefined>((resolve) => socket.once("upgrade", (response) => resolve(response.headers["sec-websocket-protocol"])));
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    expect(socket.protocol).toBe("troupe");
    expect(await upgraded).toBe("troupe");
    socket.close();
  });

  it("lets a newer connection of the same agent replace the older one (4000)", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const older = await rawConnect(bus, B);
    const newer = await rawConnect(bus, B);
    expect((await older.closed).code).toBe(CLOSE_CODES.replaced);
    await bus.send(envelope(A, B, { message_id: "m1" }));
    await until(() => newer.frames.length === 1);
    expect(bus.listAgents().find((agent) => agent.agent_id === B)?.online).toBe(true);
  });

  it("closes the socket of a deregistered agent with 1008", async () => {
    const bus = await startBus();
    await register(bus, B);
    const beta = await rawConnect(bus, B);
    expect(await call(bus, "DELETE", `/agents/${encodeURIComponent(B)}`)).toEqual({ status: 200, body: { success: true, agent_id: B } });
    expect((await beta.closed).code).toBe(CLOSE_CODES.policy);
    expect((await call(bus, "POST", "/messages/send", envelope("codex://alpha", B))).status).toBe(404);
  });

  it("routes envelopes an agent sends over its socket, and refuses one sent in another agent's name", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const alpha = await rawConnect(bus, A, undefined, { control: true });
    const beta = await connect(bus, B);
    alpha.socket.send(JSON.stringify(envelope(A, B, { message_id: "over-ws" })));
    await until(() => alpha.frames.length === 1);
    expect(alpha.frames[0]).toEqual({ type: "accepted", message_id: "over-ws", status: "accepted" });
    await until(() => beta.received.length === 1);
    alpha.socket.send(JSON.stringify(envelope(B, A, { message_id: "spoofed" })));
    await until(() => alpha.frames.length === 2);
    expect(alpha.frames[1]).toMatchObject({ type: "rejected", message_id: "spoofed", error: { type: "AUTH", details: { forbidden: true } } });
    alpha.socket.send("{not json");
    await until(() => alpha.frames.length === 3);
    expect(alpha.frames[2]).toMatchObject({ type: "rejected", error: { type: "CONFIG", details: { field: "(frame)" } } });
    alpha.socket.send(JSON.stringify({ message_id: "bad", sender: {} }));
    await until(() => alpha.frames.length === 4);
    expect(alpha.frames[3]).toMatchObject({ type: "rejected", message_id: "bad", error: { type: "CONFIG" } });
  });
});

describe("graceful stop", () => {
  it("waits for written messages to be acknowledged, then closes every socket with 1001", async () => {
    const bus = await startBus({ closeGraceMs: 2_000 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "m1" }));
    await until(() => beta.frames.length === 1);
    const stopped = bus.stop();
    await flush();
    expect(bus.messageStatus("m1").status).toBe("delivered");
    beta.ack("m1");
    await stopped;
    expect(bus.messageStatus("m1").status).toBe("acknowledged");
    expect((await beta.closed).code).toBe(CLOSE_CODES.goingAway);
    await expect(fetch(`${bus.url}/health`)).rejects.toThrow();
  });
});
