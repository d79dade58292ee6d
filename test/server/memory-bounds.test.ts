/**
 * Memory is bounded by configuration (SPEC §3.8, issue 9): for each bound, a spawned `troupe serve` is filled
 * to it and answers the clear error, then drained, and what it holds (heap and external memory after full
 * garbage collections) returns near where it started. Each fill is large enough (megabytes) that the margins
 * below are a small part of it.
 */
import type { Socket } from "node:net";
import { describe, expect, it } from "vitest";
import { connectSocket, envelope, registerAgent, startServeProcess, waitFor, waitForAsync, type HeapUse, type ServeProcess } from "../support/serve-process.js";

const MiB = 1024 * 1024;
/** What may stay after a drain: code compiled and caches filled on the way, status records of finished messages. */
const DRAINED_MARGIN_BYTES = 3 * MiB;

/** Heap and external memory together: message frames are strings on the heap, socket buffers are external. */
function held(heap: HeapUse): number {
  return heap.heapUsed + heap.external;
}

/** Sends `count` messages over HTTP, `concurrency` at a time; resolves with the answers in order. */
async function sendAll(served: ServeProcess, messages: Array<Record<string, unknown>>, concurrency = 16): Promise<number[]> {
  const statuses: number[] = [];
  for (let first = 0; first < messages.length; first += concurrency) {
    const batch = messages.slice(first, first + concurrency);
    statuses.push(...(await Promise.all(batch.map(async (message) => (await served.call("POST", "/messages/send", message)).status))));
  }
  return statuses;
}

/** Connects `agentId`, takes and acknowledges every message in `messageIds`, then disconnects. */
async function drainTo(served: ServeProcess, agentId: string, token: string, messageIds: string[]): Promise<void> {
  const agent = await connectSocket(served, agentId, { token, autoAck: true });
  const received = (): Set<string> => new Set(agent.frames.map((frame) => frame.message_id));
  await waitFor(() => {
    const ids = received();
    return messageIds.every((messageId) => ids.has(messageId));
  }, 15_000);
  await waitForAsync(async () => (await served.call("GET", "/metrics")).body.messages.by_status.delivered === 0, 15_000);
  agent.socket.close();
  await agent.closed;
}

describe("each memory bound of troupe serve", () => {
  it("maxQueuedBytes: fills with messages to an offline agent, refuses the next with 429, and gives the memory back once they are delivered", async () => {
    const maxQueuedBytes = 16 * MiB;
    const served = await startServeProcess({ bus: { maxQueuedBytes } });
    const token = await registerAgent(served, "cc://offline");
    const payload = { blob: "x".repeat(256 * 1024) };
    const message = () => envelope("cc://sender", "cc://offline", { payload });
    // The same path once, so that what it compiles and caches is in the baseline.
    const warmUp = [message(), message()];
    await sendAll(served, warmUp);
    await drainTo(
      served,
      "cc://offline",
      token,
      warmUp.map((each) => each["message_id"] as string),
    );
    const baseline = await served.heap();

    const fill = Array.from({ length: 64 }, message);
    const statuses = await sendAll(served, fill, 1);
    const accepted = fill.filter((_, index) => statuses[index] === 202).map((each) => each["message_id"] as string);
    // 256 KiB and an envelope each: 63 fit in 16 MiB, the 64th does not.
    expect(accepted).toHaveLength(63);
    const refused = await served.call("POST", "/messages/send", message());
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: maxQueuedBytes } });
    const full = await served.heap();
    expect(held(full) - held(baseline)).toBeGreaterThan(maxQueuedBytes / 2);

    await drainTo(served, "cc://offline", token, accepted);
    const drained = await served.heap();
    expect(held(drained) - held(baseline)).toBeLessThan(DRAINED_MARGIN_BYTES);
  });

  it("maxQueuedPerAgent: fills one agent's queue, refuses the next with 429, and gives the memory back once they are delivered", async () => {
    const maxQueuedPerAgent = 400;
    const served = await startServeProcess({ bus: { maxQueuedPerAgent } });
    const token = await registerAgent(served, "cc://offline");
    const payload = { blob: "x".repeat(16 * 1024) };
    const message = () => envelope("cc://sender", "cc://offline", { payload });
    const warmUp = [message(), message()];
    await sendAll(served, warmUp);
    await drainTo(
      served,
      "cc://offline",
      token,
      warmUp.map((each) => each["message_id"] as string),
    );
    const baseline = await served.heap();

    const fill = Array.from({ length: maxQueuedPerAgent }, message);
    expect(new Set(await sendAll(served, fill))).toEqual(new Set([202]));
    const refused = await served.call("POST", "/messages/send", message());
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: maxQueuedPerAgent, agentId: "cc://offline" } });
    // Another agent's queue is not this one's: it still takes messages.
    await registerAgent(served, "cc://other");
    expect((await served.call("POST", "/messages/send", envelope("cc://sender", "cc://other"))).status).toBe(202);
    const full = await served.heap();
    expect(held(full) - held(baseline)).toBeGreaterThan((maxQueuedPerAgent * 16 * 1024) / 2);

    await drainTo(
      served,
      "cc://offline",
      token,
      fill.map((each) => each["message_id"] as string),
    );
    const drained = await served.heap();
    expect(held(drained) - held(baseline)).toBeLessThan(DRAINED_MARGIN_BYTES);
  });

  it("maxAgents: fills the registry, refuses the next registration with 429, and gives the memory back once they are deregistered", async () => {
    const maxAgents = 500;
    const served = await startServeProcess({ bus: { maxAgents } });
    const metadata = { notes: "x".repeat(16 * 1024) };
    const register = (agentId: string) => served.call("POST", "/agents/register", { agent_descriptor: { agent_id: agentId, metadata } });
    const deregister = (agentId: string) => served.call("DELETE", `/agents/${encodeURIComponent(agentId)}`);
    await register("cc://warm-up");
    await deregister("cc://warm-up");
    const baseline = await served.heap();

    const agentIds = Array.from({ length: maxAgents }, (_, index) => `cc://agent-${index}`);
    for (let first = 0; first < maxAgents; first += 25) {
      const answers = await Promise.all(agentIds.slice(first, first + 25).map(register));
      expect(new Set(answers.map((answer) => answer.status))).toEqual(new Set([201]));
    }
    const refused = await register("cc://one-too-many");
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: maxAgents } });
    const full = await served.heap();
    expect(held(full) - held(baseline)).toBeGreaterThan((maxAgents * 16 * 1024) / 2);

    for (let first = 0; first < maxAgents; first += 25) {
      const answers = await Promise.all(agentIds.slice(first, first + 25).map(deregister));
      expect(new Set(answers.map((answer) => answer.status))).toEqual(new Set([200]));
    }
    const drained = await served.heap();
    expect(held(drained) - held(baseline)).toBeLessThan(DRAINED_MARGIN_BYTES);
    expect((await register("cc://after-the-drain")).status).toBe(201);
  });

  it("maxWorkflowSessions and maxSharedContextBytes: fills the sessions, refuses the next with 429 and a larger context with 413, and gives the memory back once they are deleted", async () => {
    const maxWorkflowSessions = 200;
    const maxSharedContextBytes = 32 * 1024;
    // One client fills the server here: its own quota (a quarter by default) is raised to the whole bound.
    const served = await startServeProcess({ bus: { maxWorkflowSessions, maxWorkflowSessionsPerClient: maxWorkflowSessions, maxSharedContextBytes } });
    const steps = [{ name: "only", required_agents: ["cc://initiator"] }];
    const context = { notes: "x".repeat(maxSharedContextBytes - 64) };
    const create = () => served.call("POST", "/sessions", { initiator: "cc://initiator", participants: [], steps, shared_context: context });
    const remove = (sessionId: string) => served.call("DELETE", `/sessions/${sessionId}`);
    await remove((await create()).body.session_id);
    const baseline = await served.heap();

    const sessionIds: string[] = [];
    for (let index = 0; index < maxWorkflowSessions; index += 1) {
      const created = await create();
      expect(created.status).toBe(201);
      sessionIds.push(created.body.session_id);
    }
    const refused = await create();
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: maxWorkflowSessions } });
    const oversized = await served.call("PATCH", `/sessions/${sessionIds[0]}/context`, { shared_context: { notes: "x".repeat(maxSharedContextBytes) } });
    expect(oversized.status).toBe(413);
    expect(oversized.body.error).toMatchObject({ type: "CONFIG", details: { field: "shared_context", limitBytes: maxSharedContextBytes } });
    const full = await served.heap();
    expect(held(full) - held(baseline)).toBeGreaterThan((maxWorkflowSessions * maxSharedContextBytes) / 2);

    for (const sessionId of sessionIds) expect((await remove(sessionId)).status).toBe(200);
    const drained = await served.heap();
    expect(held(drained) - held(baseline)).toBeLessThan(DRAINED_MARGIN_BYTES);
    expect((await create()).status).toBe(201);
  });

  it("maxRetainedMessages: forgets the oldest status record past the bound (then 404), so what it holds stops growing", async () => {
    const maxRetainedMessages = 5_000;
    const served = await startServeProcess({ bus: { maxRetainedMessages } });
    const senderToken = await registerAgent(served, "cc://sender");
    const sinkToken = await registerAgent(served, "cc://sink");
    const sender = await connectSocket(served, "cc://sender", { token: senderToken });
    const sink = await connectSocket(served, "cc://sink", { token: sinkToken, autoAck: true });
    const sendAcknowledged = async (count: number): Promise<string[]> => {
      // Long ids make each status record weigh: what they hold is then well above the noise of a measure.
      const messages = Array.from({ length: count }, () => {
        const message = envelope("cc://sender", "cc://sink", { message_type: "status_update" });
        return { ...message, message_id: `${String(message["message_id"])}-${"r".repeat(200)}` };
      });
      for (const message of messages) sender.send(message);
      const target = sink.frames.length + count;
      await waitFor(() => sink.frames.length === target, 15_000);
      await waitForAsync(async () => (await served.call("GET", "/metrics")).body.messages.by_status.delivered === 0);
      return messages.map((message) => message["message_id"]);
    };
    await sendAcknowledged(500);
    const baseline = await served.heap();

    const first = await sendAcknowledged(maxRetainedMessages);
    const atBound = await served.heap();
    expect((await served.call("GET", `/messages/${first[0]}`)).body.status).toBe("acknowledged");
    // As many again: every record of the first round is replaced by one of the second.
    await sendAcknowledged(maxRetainedMessages);
    const forgotten = await served.call("GET", `/messages/${first[0]}`);
    expect(forgotten.status).toBe(404);
    expect(forgotten.body.error.type).toBe("NOT_FOUND");
    const metrics = (await served.call("GET", "/metrics")).body;
    expect(metrics.messages.by_status.acknowledged).toBe(maxRetainedMessages);
    const past = await served.heap();
    // The records of the first round cost megabytes; the second round's replaced them at no further cost.
    expect(held(atBound) - held(baseline)).toBeGreaterThan(2 * MiB);
    expect(held(past) - held(atBound)).toBeLessThan((held(atBound) - held(baseline)) / 2);
  }, 30_000);

  it("maxSocketBufferBytes: writes no more than the bound ahead to an agent that stops reading, and gives the memory back once it reads again", async () => {
    const maxSocketBufferBytes = MiB;
    // A window larger than the kernel's buffers: what the socket cannot take is up to the bus.
    const served = await startServeProcess({ bus: { maxSocketBufferBytes, maxInFlightPerAgent: 1_000 } });
    const token = await registerAgent(served, "cc://sink");
    const payload = { blob: "x".repeat(64 * 1024) };
    const message = () => envelope("cc://sender", "cc://sink", { payload });
    const warmUp = [message(), message()];
    await sendAll(served, warmUp);
    await drainTo(
      served,
      "cc://sink",
      token,
      warmUp.map((each) => each["message_id"] as string),
    );
    const baseline = await served.heap();

    const sink = await connectSocket(served, "cc://sink", { token, autoAck: true });
    const transport = (sink.socket as unknown as { _socket: Socket })._socket;
    transport.pause();
    // 38 MiB: more than loopback's kernel buffers hold, so the bus's own buffer for this socket reaches its bound.
    const fill = Array.from({ length: 600 }, message);
    expect(new Set(await sendAll(served, fill))).toEqual(new Set([202]));
    const stalled = await served.heap();
    // The messages are held (accepted, not yet acknowledged); a socket buffers the very strings their deliveries
    // hold, and nothing else (no copies in external memory). The bound shows as messages left in the queue: the
    // bus stopped writing to the socket while its window (1,000) still had room.
    expect(held(stalled) - held(baseline)).toBeGreaterThan(600 * 64 * 1024);
    expect(stalled.external - baseline.external).toBeLessThan(maxSocketBufferBytes);
    const waiting = (await served.call("GET", "/metrics")).body.messages.by_status;
    expect(waiting.queued).toBeGreaterThan(0);

    transport.resume();
    await waitFor(() => fill.every((each) => sink.frames.some((frame) => frame.message_id === each["message_id"])), 15_000);
    await waitForAsync(async () => (await served.call("GET", "/metrics")).body.messages.acknowledged_total === 602);
    const drained = await served.heap();
    expect(held(drained) - held(baseline)).toBeLessThan(DRAINED_MARGIN_BYTES);
  }, 30_000);

  it("maxSocketBufferBytes: closes with 1013 an agent that does not read the answers to its own frames, and gives the memory back", async () => {
    const maxSocketBufferBytes = MiB;
    const served = await startServeProcess({ bus: { maxSocketBufferBytes } });
    const token = await registerAgent(served, "cc://deaf");
    const warmUp = await connectSocket(served, "cc://deaf", { token, control: true });
    warmUp.send('"junk"');
    await waitFor(() => warmUp.frames.length === 1);
    warmUp.socket.close();
    await warmUp.closed;
    const baseline = await served.heap();

    const deaf = await connectSocket(served, "cc://deaf", { token, control: true });
    const transport = (deaf.socket as unknown as { _socket: Socket })._socket;
    transport.pause();
    // 8 bytes in, ~700 bytes of `rejected` frame out, each: 30,000 of them would be ~20 MB to buffer, where the
    // kernel's buffers on loopback take ~1.5 MB. Few enough that the bus answers them all well before it cuts a
    // socket whose close it could not write (5 s), so the close that reaches the client is the 1013.
    for (let index = 0; index < 30_000; index += 1) deaf.send('"junk"');
    // Frames are read in order: once this message is accepted, every frame before it was answered.
    deaf.send(envelope("cc://deaf", "cc://deaf", { message_type: "status_update" }));
    await waitForAsync(async () => (await served.call("GET", "/metrics")).body.messages.accepted_total === 1, 20_000);
    const flooded = await served.heap();
    expect(held(flooded) - held(baseline)).toBeLessThan(maxSocketBufferBytes + 4 * MiB);
    transport.resume();
    expect((await deaf.closed).code).toBe(1013);
    await waitForAsync(async () => (await served.call("GET", "/metrics")).body.agents.connections === 0);
    const drained = await served.heap();
    expect(held(drained) - held(baseline)).toBeLessThan(DRAINED_MARGIN_BYTES);
  }, 30_000);
});
