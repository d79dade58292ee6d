/**
 * A hostile network (SPEC §3.8), in-process: a connection that never sends a byte is closed, JSON nested too
 * deep is refused at the edge, a socket that is not read is closed, ids that disguise themselves are refused,
 * and every bound answers a clear error. The same attacks against a spawned `troupe serve` process, which must
 * stay alive and keep answering, are in attacks.test.ts.
 */
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH } from "../../src/protocol/json-depth.js";
import { call, envelope, rawConnect, register, startBus, until } from "../bus/support.js";

const sockets: Socket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
});

/** Opens a raw TCP connection to the server. */
async function tcp(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  socket.on("error", () => {});
  await once(socket, "connect");
  return socket;
}

/** JSON text of objects nested `depth` levels deep (text: a client need not be able to build the value). */
function nested(depth: number): string {
  return `${'{"a":'.repeat(depth)}0${"}".repeat(depth)}`;
}

/** An envelope's JSON text whose payload is `payloadText`. */
function envelopeText(from: string, to: string, payloadText: string): string {
  return JSON.stringify(envelope(from, to, { payload: { placeholder: true } })).replace('{"placeholder":true}', payloadText);
}

describe("a hostile client", () => {
  it("closes a connection that never sends a byte after connectionIdleMs, and keeps one that does", async () => {
    const bus = await startBus({ connectionIdleMs: 100 });
    const silent = await tcp(bus.url);
    const talking = await tcp(bus.url);
    talking.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    const [first] = (await once(talking, "data")) as [Buffer];
    expect(first.toString()).toMatch(/^HTTP\/1\.1 200/);
    await once(silent, "close");
    expect(talking.destroyed).toBe(false);
  });

  it(`refuses JSON nested deeper than ${MAX_JSON_DEPTH} levels in a body or a frame, and keeps serving its listings`, async () => {
    const bus = await startBus();
    await register(bus, "cc://a", "cc://b");
    const deep = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", nested(5_000)));
    expect(deep.status).toBe(400);
    expect(deep.body.error).toMatchObject({ type: "CONFIG", details: { limit: MAX_JSON_DEPTH } });
    // The envelope is one level, its payload the next: a payload of 63 levels is 64 in all.
    const atLimit = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", nested(MAX_JSON_DEPTH - 1)));
    expect(atLimit.status).toBe(202);
    const overLimit = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", nested(MAX_JSON_DEPTH)));
    expect(overLimit.status).toBe(400);
    expect((await call(bus, "GET", "/agents")).status).toBe(200);

    const agent = await rawConnect(bus, "cc://a", undefined, { control: true });
    agent.socket.send(nested(1_000));
    await until(() => agent.frames.some((frame) => frame.type === "rejected"));
    expect(agent.frames.find((frame) => frame.type === "rejected").error).toMatchObject({ type: "CONFIG", details: { limit: MAX_JSON_DEPTH } });
  });

  it("refuses a lone UTF-16 surrogate in any string of a body or a frame with 400, changes nothing, and keeps running on a SQLite store", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "troupe-surrogate-"));
    try {
      const bus = await startBus({ persistenceEnabled: true, dataDir });
      await register(bus, "cc://a", "cc://b");
      const lone = String.raw`"\ud800"`;
      const sent = await call(bus, "POST", "/messages/send", JSON.stringify(envelope("cc://a", "cc://b")).replace(/"msg-\d+"/, lone));
      expect(sent.status).toBe(400);
      expect(sent.body.error).toMatchObject({ type: "CONFIG", details: { field: "(body)" } });
      expect(sent.body.error.message).toMatch(/unpaired UTF-16 surrogate/);
      const registered = await call(bus, "POST", "/agents/register", `{"agent_id":"x://a${String.raw`\udc00`}","capabilities":[]}`);
      expect(registered.status).toBe(400);
      expect((await call(bus, "GET", "/agents")).body.agents.map((agent: { agent_id: string }) => agent.agent_id)).not.toContain("x://a\udc00");
      const workflow = await call(bus, "POST", "/sessions", `{"initiator":"cc://a","participants":[],"steps":[{"name":${lone},"agent":"cc://a"}]}`);
      expect(workflow.status).toBe(400);
      // A surrogate pair is one well-formed character: accepted, escaped or not.
      const pair = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", String.raw`{"text":"\ud83d\ude00 😀"}`));
      expect(pair.status).toBe(202);

      const agent = await rawConnect(bus, "cc://a", undefined, { control: true });
      agent.socket.send(JSON.stringify({ type: "send", envelope: envelope("cc://a", "cc://b") }).replace(/"msg-\d+"/, lone));
      await until(() => agent.frames.some((frame) => frame.type === "rejected"));
      expect(agent.frames.find((frame) => frame.type === "rejected").error).toMatchObject({
        type: "CONFIG",
        details: { field: "(frame)" },
        message: expect.stringMatching(/surrogate/),
      });
      // The message never existed: nothing for its timeout to write, nothing to crash on.
      expect((await call(bus, "GET", "/health")).status).toBe(200);
      expect((await call(bus, "GET", "/metrics", undefined, { accept: "application/json" })).status).toBe(200);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("writes no more than maxSocketBufferBytes ahead to an agent that stops reading, and keeps the rest queued until it reads again", async () => {
    const maxSocketBufferBytes = 64 * 1024;
    const bus = await startBus({ maxSocketBufferBytes, maxInFlightPerAgent: 1_000, maxQueuedPerAgent: 10_000 });
    await register(bus, "cc://sender", "cc://sink");
    const sink = await rawConnect(bus, "cc://sink");
    // The client stops reading: the kernel's buffers fill, then the bus's.
    (sink.socket as unknown as { _socket: Socket })._socket.pause();
    const payload = { blob: "x".repeat(32 * 1024) };
    const messageIds: string[] = [];
    // 19 MB: more than loopback's kernel buffers hold, so the bus's own buffer for this socket fills.
    for (let index = 0; index < 600; index += 1) {
      const message = envelope("cc://sender", "cc://sink", { payload });
      messageIds.push(message["message_id"] as string);
      expect((await call(bus, "POST", "/messages/send", message)).status).toBe(202);
    }
    const serverSide = (bus as unknown as { connections: { get(agentId: string): { socket: { bufferedAmount: number } } } }).connections.get("cc://sink");
    expect(serverSide.socket.bufferedAmount).toBeLessThanOrEqual(maxSocketBufferBytes + 33 * 1024);
    // What the socket could not take waits in the agent's queue: none is lost, and the socket stays open.
    const statuses = new Set(messageIds.map((messageId) => bus.messageStatus(messageId).status));
    expect(statuses.has("queued")).toBe(true);
    expect(statuses.has("dead")).toBe(false);
    expect(sink.socket.readyState).toBe(sink.socket.OPEN);

    (sink.socket as unknown as { _socket: Socket })._socket.resume();
    const acked = new Set<string>();
    await until(() => {
      for (const { message_id } of sink.frames) if (!acked.has(message_id)) sink.ack(acked.add(message_id) && message_id);
      return messageIds.every((messageId) => bus.messageStatus(messageId).status === "acknowledged");
    }, 10_000);
  });

  it("delivers a backlog larger than maxSocketBufferBytes to an agent that reads, without closing its socket", async () => {
    const bus = await startBus({ maxSocketBufferBytes: 64 * 1024 });
    await register(bus, "cc://sender", "cc://sink");
    const payload = { blob: "x".repeat(16 * 1024) };
    const messageIds: string[] = [];
    // 640 KiB wait for the agent while it is offline: ten times what its socket may buffer.
    for (let index = 0; index < 40; index += 1) {
      const message = envelope("cc://sender", "cc://sink", { payload });
      messageIds.push(message["message_id"] as string);
      expect((await call(bus, "POST", "/messages/send", message)).status).toBe(202);
    }
    const sink = await rawConnect(bus, "cc://sink");
    const acked = new Set<string>();
    await until(() => {
      for (const { message_id } of sink.frames) if (!acked.has(message_id)) sink.ack(acked.add(message_id) && message_id);
      return messageIds.every((messageId) => bus.messageStatus(messageId).status === "acknowledged");
    });
    expect(sink.socket.readyState).toBe(sink.socket.OPEN);
  });

  it("answers HEAD like GET without a body, and refuses ids with control characters or bidirectional overrides", async () => {
    const bus = await startBus();
    const head = await fetch(`${bus.url}/health`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toContain("application/json");
    expect(await head.text()).toBe("");
    expect((await fetch(`${bus.url}/agents`, { method: "HEAD", headers: { "x-agent-api-key": "test-key" } })).status).toBe(200);

    for (const disguised of ["cc://adm\u202Enimda", "cc://a\u0000b", "cc://x\u2066y"]) {
      const refused = await call(bus, "POST", "/agents/register", { agent_id: disguised });
      expect(refused.status, JSON.stringify(disguised)).toBe(400);
    }
    await register(bus, "cc://a", "cc://b");
    const message = await call(bus, "POST", "/messages/send", envelope("cc://a", "cc://b", { message_id: "m\u202E1" }));
    expect(message.status).toBe(400);
    expect(message.body.error.details.field).toBe("message_id");
  });

  it("bounds registered agents, the bytes of undelivered messages and a workflow's shared context, each with a clear error, and recovers", async () => {
    const bus = await startBus({ maxAgents: 2, maxQueuedBytes: 4_096, maxSharedContextBytes: 1_024 });
    await register(bus, "cc://a", "cc://b");
    const third = await call(bus, "POST", "/agents/register", { agent_id: "cc://c" });
    expect(third.status).toBe(429);
    expect(third.body.error).toMatchObject({ type: "CAPACITY", details: { limit: 2 } });
    expect((await call(bus, "POST", "/agents/register", { agent_id: "cc://a" })).status).toBe(201);

    // cc://b is offline: its messages wait, and their bytes count until they are delivered.
    const big = { blob: "x".repeat(1_500) };
    const accepted: string[] = [];
    let refused: { status: number; body: any } | undefined;
    for (let index = 0; index < 10 && refused === undefined; index += 1) {
      const message = envelope("cc://a", "cc://b", { payload: big });
      const answer = await call(bus, "POST", "/messages/send", message);
      if (answer.status === 202) accepted.push(message["message_id"] as string);
      else refused = answer;
    }
    expect(accepted.length).toBeGreaterThan(0);
    expect(refused?.status).toBe(429);
    expect(refused?.body.error).toMatchObject({ type: "CAPACITY", details: { limit: 4_096 } });
    const agent = await rawConnect(bus, "cc://b");
    await until(() => agent.frames.length === accepted.length);
    for (const messageId of accepted) agent.ack(messageId);
    await until(() => accepted.every((messageId) => bus.messageStatus(messageId).status === "acknowledged"));
    expect((await call(bus, "POST", "/messages/send", envelope("cc://a", "cc://b", { payload: big }))).status).toBe(202);

    const steps = [{ name: "only", required_agents: ["cc://a"] }];
    const tooBig = await call(bus, "POST", "/sessions", { initiator: "cc://a", participants: [], steps, shared_context: { blob: "x".repeat(2_000) } });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.details).toMatchObject({ field: "shared_context", limitBytes: 1_024 });
    const created = await call(bus, "POST", "/sessions", { initiator: "cc://a", participants: [], steps, shared_context: { small: true } });
    expect(created.status).toBe(201);
    const patched = await call(bus, "PATCH", `/sessions/${created.body.session_id}/context`, { shared_context: { blob: "x".repeat(2_000) } });
    expect(patched.status).toBe(413);
  });

  it("counts maxQueuedBytes in UTF-8 bytes, not characters: three-byte characters fill it three times as fast", async () => {
    const bus = await startBus({ maxQueuedBytes: 8_192 });
    await register(bus, "cc://a", "cc://b");
    // 1,000 characters of U+20AC (€): 3,000 bytes of JSON. Two fit in 8 KiB; counted as characters, eight would.
    const euros = { blob: "€".repeat(1_000) };
    const statuses: number[] = [];
    for (let index = 0; index < 4; index += 1)
      statuses.push((await call(bus, "POST", "/messages/send", envelope("cc://a", "cc://b", { payload: euros }))).status);
    expect(statuses).toEqual([202, 202, 429, 429]);
    // The same number of characters in ASCII takes a third of the room.
    const ascii = { blob: "e".repeat(1_000) };
    expect((await call(bus, "POST", "/messages/send", envelope("cc://a", "cc://b", { payload: ascii }))).status).toBe(202);
  });

  it("refuses a message past maxQueuedPerAgent with 429 CAPACITY naming the limit and the agent", async () => {
    const bus = await startBus({ maxQueuedPerAgent: 2 });
    await register(bus, "cc://a", "cc://b");
    for (let index = 0; index < 2; index += 1) expect((await call(bus, "POST", "/messages/send", envelope("cc://a", "cc://b"))).status).toBe(202);
    const full = await call(bus, "POST", "/messages/send", envelope("cc://a", "cc://b"));
    expect(full.status).toBe(429);
    expect(full.body.error).toMatchObject({ type: "CAPACITY", details: { limit: 2, agentId: "cc://b", retryable: true } });
  });

  it("pages GET /agents and GET /sessions with limit and cursor, so no listing answers with everything at once", async () => {
    const bus = await startBus();
    const agentIds = Array.from({ length: 5 }, (_, index) => `cc://agent-${index}`);
    await register(bus, ...agentIds);
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await call(bus, "GET", `/agents?limit=2${cursor === undefined ? "" : `&cursor=${cursor}`}`);
      expect(page.status).toBe(200);
      expect(page.body.agents.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.agents.map((agent: { agent_id: string }) => agent.agent_id));
      cursor = page.body.next_cursor;
    } while (cursor !== undefined);
    expect(seen).toEqual(bus.listAgents().map((agent) => agent.agent_id));
    expect(seen).toEqual(agentIds);

    const steps = [{ name: "only", required_agents: ["cc://agent-0"] }];
    for (let index = 0; index < 3; index += 1) await call(bus, "POST", "/sessions", { initiator: "cc://agent-0", participants: [], steps });
    const first = await call(bus, "GET", "/sessions?limit=2");
    expect(first.body.sessions).toHaveLength(2);
    const second = await call(bus, "GET", `/sessions?limit=2&cursor=${first.body.next_cursor}`);
    expect(second.body.sessions).toHaveLength(1);
    expect(second.body.next_cursor).toBeUndefined();
    expect([...first.body.sessions, ...second.body.sessions].map((session: { session_id: string }) => session.session_id)).toEqual(
      bus.sessionManager.listSessions().map((session) => session.session_id),
    );
    // Newest first (what /ui shows), paged the same way.
    const newest = await call(bus, "GET", "/sessions?limit=2&order=newest");
    const rest = await call(bus, "GET", `/sessions?limit=2&order=newest&cursor=${newest.body.next_cursor}`);
    expect([...newest.body.sessions, ...rest.body.sessions].map((session: { session_id: string }) => session.session_id)).toEqual(
      bus.sessionManager
        .listSessions()
        .map((session) => session.session_id)
        .reverse(),
    );
    expect((await call(bus, "GET", "/sessions?order=oldest")).body.error).toMatchObject({ type: "CONFIG", details: { field: "order" } });

    expect((await call(bus, "GET", "/agents?limit=0")).status).toBe(400);
    expect((await call(bus, "GET", "/agents?limit=1001")).status).toBe(400);
    // A parameter given twice is neither value: the answer names it.
    for (const query of ["limit=1&limit=1000", "cursor=x&cursor=y", "node=a&node=b"]) {
      const answer = await call(bus, "GET", `/sessions?${query}`);
      expect(answer.status, query).toBe(400);
      expect(answer.body.error, query).toMatchObject({ type: "CONFIG", message: `${query.split("=")[0]}: given more than once` });
    }
    expect((await call(bus, "GET", "/sessions?cursor=not%20a%20cursor")).body.error).toMatchObject({ type: "CONFIG", details: { field: "cursor" } });
    // Only what the server writes (`o:<digits>`, base64url) is a cursor: not another number's spelling, not blanks.
    for (const text of ["o:1e9", "o:0x10", "  ", "o:-1", "o:1.5"]) {
      const answer = await call(bus, "GET", `/sessions?cursor=${Buffer.from(text, "utf8").toString("base64url")}`);
      expect(answer.status, text).toBe(400);
    }
  });
});
