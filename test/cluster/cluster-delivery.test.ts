/**
 * The cluster's deliveries at their edges (src/bus/cluster-delivery.ts, docs/cluster.md): a message's record in the
 * shared store outlives its ack on no node, however late the accepting node's write commits; and the messages an
 * agent's dropped socket left unacknowledged reach it again wherever it reconnects, or die at their deadline with
 * DELIVERY_FAILED to their sender when it never does.
 */
import { describe, expect, it } from "vitest";
import { openPostgresStore, type CommunicationBus, type ListOptions, type Store, type StoreCollection, type StoreRecord } from "../../src/index.js";
import { messageKeyOf, parseEnvelope } from "../../src/protocol/envelope.js";
import { frameText } from "../../src/protocol/frames.js";
import type { WriteOptions } from "../../src/store/store.js";
import { call, connect, envelope, rawConnect, register, statusOf, until, type RawAgent } from "../bus/support.js";
import { useEngines } from "../support/engines.js";
import { waitForAsync } from "../support/serve-process.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { newTestCluster, startTestNode, type TestCluster, type TestNodeOptions } from "../support/cluster-nodes.js";

let nats: NatsServer;
let postgres: PostgresServer;

useEngines((engines) => ({ nats, postgres } = engines));

/** A fresh cluster of this file's. */
function newCluster(): Promise<TestCluster> {
  return newTestCluster(postgres, "delivery");
}

/** A node of `cluster` in this process. */
function node(cluster: TestCluster, nodeId: string, options: TestNodeOptions = {}): Promise<CommunicationBus> {
  return startTestNode(nats, cluster, nodeId, options);
}

/** The records of a collection in the cluster's database, by id, read from PostgreSQL itself (`id` alone: all of them). */
function storedRows(cluster: { database: string }, collection: StoreCollection, id?: string): Promise<Array<{ id: string; value: string }>> {
  return postgres.query<{ id: string; value: string }>(
    "SELECT id, value FROM troupe.records WHERE collection = $1 AND ($2::text IS NULL OR id = $2) ORDER BY id",
    [collection, id ?? null],
    cluster.database.slice(cluster.database.lastIndexOf("/") + 1),
  );
}

/** The live state a node stored for a message (`message_status/<key>`). */
async function storedState(cluster: { database: string }, key: string): Promise<{ status: string; targetIndex: number } | undefined> {
  const [row] = await storedRows(cluster, "message_status", key);
  return row === undefined ? undefined : (JSON.parse(row.value) as { status: string; targetIndex: number });
}

/** The ids of a collection's records in the cluster's database. */
async function storedIds(cluster: { database: string }, collection: StoreCollection): Promise<string[]> {
  return (await storedRows(cluster, collection)).map(({ id }) => id);
}

/**
 * A node's store that passes everything on to PostgreSQL except as told: its `messages` writes reach it only once
 * the message's end is there (another node delivered it) or after `lateMs`, the worst order a busy node's commits
 * can take; and its reads of `message_status` can be held back (`holdStatusReads`) until `releaseStatusReads`.
 */
class SteeredStore implements Store {
  readonly sharedAcrossProcesses = true;
  /** Per record id, the `messages` write that waits (later writes of the same record queue behind it). */
  private readonly lateWrites = new Map<string, Promise<void>>();
  private heldReads: Promise<void> | undefined;
  private releaseReads: (() => void) | undefined;
  /** Reads of `message_status` held back now. */
  waitingReads = 0;

  constructor(
    private readonly inner: Store,
    private readonly lateMs = 0,
  ) {}

  put(collection: StoreCollection, id: string, value: unknown, options?: WriteOptions): void {
    if (collection !== "messages" || this.lateMs === 0) return this.inner.put(collection, id, value, options);
    this.late(id, () => this.inner.put(collection, id, value, options));
  }

  delete(collection: StoreCollection, id: string, options?: WriteOptions): void {
    if (collection !== "messages" || !this.lateWrites.has(id)) return this.inner.delete(collection, id, options);
    this.late(id, () => this.inner.delete(collection, id, options));
  }

  move(collection: StoreCollection, id: string, node: string, options?: WriteOptions): void {
    this.inner.move(collection, id, node, options);
  }

  private late(id: string, write: () => void): void {
    const before = this.lateWrites.get(id) ?? this.endOrLate(id);
    const written = before.then(write);
    this.lateWrites.set(id, written);
    void written.then(() => {
      if (this.lateWrites.get(id) === written) this.lateWrites.delete(id);
    });
  }

  /** Resolves once the message's end is in the shared store, or after `lateMs`. */
  private async endOrLate(id: string): Promise<void> {
    const latest = Date.now() + this.lateMs;
    while (Date.now() < latest) {
      const status = (await this.inner.get("message_status", id)) as { status?: string } | undefined;
      if (status?.status === "acknowledged" || status?.status === "dead") return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async flush(): Promise<void> {
    await Promise.all([...this.lateWrites.values()]);
    await this.inner.flush();
  }

  async get(collection: StoreCollection, id: string): Promise<unknown> {
    if (collection === "message_status" && this.heldReads !== undefined) {
      this.waitingReads += 1;
      await this.heldReads;
      this.waitingReads -= 1;
    }
    return this.inner.get(collection, id);
  }

  list(collection: StoreCollection, options?: ListOptions): Promise<StoreRecord[]> {
    return this.inner.list(collection, options);
  }

  async close(): Promise<void> {
    await this.flush();
    await this.inner.close();
  }

  holdStatusReads(): void {
    this.heldReads ??= new Promise<void>((resolve) => (this.releaseReads = resolve));
  }

  releaseStatusReads(): void {
    this.releaseReads?.();
    this.heldReads = undefined;
  }
}

/**
 * Writes `messages` records from boss to worker as a node writes them before it publishes, naming `node`,
 * accepted `agoMs` ago with a deadline well ahead, and publishes none: what a node killed between the two leaves.
 */
async function plant(cluster: TestCluster, records: Array<{ node: string; agoMs: number }>): Promise<Array<{ key: string; message_id: string }>> {
  const writer = await openPostgresStore({ url: cluster.database, exclusive: false });
  const planted = records.map(({ node: nodeId, agoMs }, order) => {
    const parsed = parseEnvelope(retried("test://boss", "test://worker", "60s"), 300_000);
    const state = { status: "accepted", targetIndex: 0, retries: 0, attempts: 0, lastError: null, phaseDeadline: null };
    writer.put("messages", messageKeyOf(parsed), { envelope: parsed, acceptedAt: Date.now() - agoMs, timeoutMs: 160_000, node: nodeId, order, state });
    return { key: messageKeyOf(parsed), message_id: parsed.message_id };
  });
  await writer.close();
  return planted;
}

/** Messages that survive a dropped socket: a few retries, a deadline far enough for a reconnection. */
function retried(from: string, to: string, timeout = "20s"): Record<string, unknown> {
  return envelope(from, to, {
    message_type: "status_update",
    routing: { timeout, retry_policy: { max_retries: 3, backoff: "linear" }, delivery_mode: "async" },
  });
}

/** An agent on a raw socket that acknowledges every message it gets. */
async function ackingConnect(bus: CommunicationBus, agentId: string): Promise<RawAgent> {
  const agent = await rawConnect(bus, agentId);
  agent.socket.on("message", (data) => agent.ack((JSON.parse(frameText(data)) as { message_id: string }).message_id));
  return agent;
}

/** The ids of the messages an agent's raw socket was written, each once. */
function idsOf(agent: RawAgent): string[] {
  return [...new Set(agent.frames.map((frame: { message_id: string }) => frame.message_id))].sort();
}

describe("the cluster's deliveries", () => {
  it("leaves no record of a message that crossed nodes once it is acknowledged, however late its accepting node's write commits", async () => {
    const cluster = await newCluster();
    // A's writes of message records reach PostgreSQL only after the message's end (or 1.5 s): the race, always lost.
    const a = await node(cluster, "node-a", { wrap: (store) => new SteeredStore(store, 1_500) });
    const b = await node(cluster, "node-b");
    await register(b, "test://worker", "test://boss");
    const worker = await connect(b, "test://worker");
    const sent = [1, 2, 3].map(() => envelope("test://boss", "test://worker", { message_type: "status_update" }));
    const answers = await Promise.all(sent.map((message) => call(a, "POST", "/messages/send", message)));
    expect(answers.map(({ status }) => status)).toEqual([202, 202, 202]);
    await until(() => sent.every((message) => statusOf(b, message.message_id as string) === "acknowledged"), 10_000);
    await Promise.all([a.persisted(), b.persisted()]);
    expect(await storedIds(cluster, "message_status")).toHaveLength(3);
    expect(await storedIds(cluster, "messages")).toEqual([]);
    expect(worker.received).toHaveLength(3);
  }, 30_000);

  it("answers duplicate for a message sent again after its ack, and keeps no record of it", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(b, "test://worker", "test://boss");
    const worker = await connect(b, "test://worker");
    const message = envelope("test://boss", "test://worker", { message_type: "status_update" });
    expect((await call(a, "POST", "/messages/send", message)).status).toBe(202);
    await until(() => statusOf(b, message.message_id as string) === "acknowledged", 10_000);
    await b.persisted();
    // A client that lost the first answer sends it again, to the node that accepted it (which never delivered it).
    const again = await call(a, "POST", "/messages/send", message);
    expect(again.body).toMatchObject({ success: true, status: "duplicate" });
    await Promise.all([a.persisted(), b.persisted()]);
    expect(await storedIds(cluster, "messages")).toEqual([]);
    expect(worker.received).toHaveLength(1);
  }, 30_000);

  it("forgets the record an earlier send left when the workflow's node refuses the message for good (a node killed before publishing it)", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(a, "test://lead", "test://dev");
    const sessionId = a.sessionManager.createSession(
      "test://lead",
      [{ agent_id: "test://dev", role: "dev" }],
      [{ name: "design", required_agents: ["test://dev"] }],
    );
    a.sessionManager.completeSession(sessionId, { summary: "done" });
    await a.sessionManager.whenDurable();
    const answerTo = (messageId: string) =>
      envelope("test://dev", "test://lead", {
        message_id: messageId,
        message_type: "task_response",
        sender: { agent_id: "test://dev", framework: "test", session_id: sessionId },
        metadata: { task_id: "t-design" },
      });
    // What a node killed between committing a message's record and publishing it leaves: a record no delivery ends
    // (its envelope as the node read it: the bus's default timeout, 300 s, filled in).
    const leftBehind = async (message: Record<string, unknown>): Promise<string> => {
      const parsed = parseEnvelope(message, 300_000);
      const writer = await openPostgresStore({ url: cluster.database, exclusive: false });
      writer.put("messages", messageKeyOf(parsed), { envelope: parsed, acceptedAt: Date.now(), timeoutMs: 60_000 });
      await writer.close();
      return messageKeyOf(parsed);
    };

    // The sender asks again through node-b: node-a refuses it for good (its workflow ended), and the record goes;
    // the same through node-a itself, which runs the workflow and refuses it there.
    for (const [through, messageId] of [
      [b, "answer-1"],
      [a, "answer-2"],
    ] as const) {
      const answer = answerTo(messageId);
      const key = await leftBehind(answer);
      expect(await storedIds(cluster, "messages")).toContain(key);
      // Gone before the refusal is answered.
      expect(await call(through, "POST", "/messages/send", answer)).toMatchObject({ status: 409 });
      expect(await storedIds(cluster, "messages")).not.toContain(key);
    }

    // Another message under the same sender and id (another client's, say) is refused without touching that record.
    const kept = await leftBehind(answerTo("answer-3"));
    const forged = { ...answerTo("answer-3"), payload: { other: "content" } };
    expect(await call(b, "POST", "/messages/send", forged)).toMatchObject({ status: 409 });
    expect(await storedIds(cluster, "messages")).toContain(kept);
  }, 30_000);

  it("publishes at its start what its previous run recorded and never published (killed between the two), when it is recent enough", async () => {
    const cluster = await newCluster();
    let a = await node(cluster, "node-a");
    await register(a, "test://boss", "test://worker");
    await a.stop();
    // What a run killed between committing records and publishing them leaves.
    const planted = await plant(cluster, [
      { node: "node-a", agoMs: 0 },
      // Older than the stream's duplicate window less its margin: the stream could not say whether it had it.
      { node: "node-a", agoMs: 100_000 },
      // Another node's: that node's next run, or its takeover, publishes it.
      { node: "node-z", agoMs: 0 },
    ]);
    a = await node(cluster, "node-a");
    const worker = await ackingConnect(a, "test://worker");
    const after = retried("test://boss", "test://worker");
    expect((await call(a, "POST", "/messages/send", after)).status).toBe(202);
    await until(() => idsOf(worker).includes(after.message_id as string), 10_000);
    expect(idsOf(worker)).toEqual([planted[0]!.message_id, after.message_id].sort());
    // Its record is gone with its end; the two left out keep theirs.
    await waitForAsync(async () => !(await storedIds(cluster, "messages")).includes(planted[0]!.key), 10_000);
    expect(await storedIds(cluster, "messages")).toEqual([planted[1]!.key, planted[2]!.key].sort());
  }, 30_000);

  it("takes back the record of a message it would publish again that the stream refuses (its recipient's queue full)", async () => {
    const cluster = await newCluster();
    const a = await node(cluster, "node-a", { maxQueuedPerAgent: 2 });
    await register(a, "test://boss", "test://worker");
    // The worker is connected nowhere: two messages fill its queue in the stream.
    const queued = [retried("test://boss", "test://worker"), retried("test://boss", "test://worker")];
    for (const message of queued) expect((await call(a, "POST", "/messages/send", message)).status).toBe(202);
    expect((await call(a, "POST", "/messages/send", retried("test://boss", "test://worker"))).status).toBe(429);
    await a.stop();
    const [orphan] = await plant(cluster, [{ node: "node-a", agoMs: 0 }]);
    // Its next run publishes what it left.
    await node(cluster, "node-a", { maxQueuedPerAgent: 2 });
    await waitForAsync(async () => !(await storedIds(cluster, "messages")).includes(orphan!.key), 10_000);
    expect(await storedIds(cluster, "messages")).toEqual(queued.map((message) => `test://boss\u001f${message.message_id as string}`).sort());
  }, 30_000);

  it("publishes what a node it takes over recorded and never published, once, and nothing it published already", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a", { leaseMs: 1_000 }), await node(cluster, "node-b", { leaseMs: 1_000 })];
    await register(a, "test://boss", "test://worker");
    const published = retried("test://boss", "test://worker");
    expect((await call(a, "POST", "/messages/send", published)).status).toBe(202);
    const [orphan] = await plant(cluster, [{ node: "node-a", agoMs: 0 }]);
    // node-a is cut from NATS, as a killed node is for the others: node-b takes it over.
    await a.cluster!.close();
    const worker = await ackingConnect(b, "test://worker");
    await until(() => idsOf(worker).length === 2, 15_000);
    expect(idsOf(worker)).toEqual([published.message_id, orphan!.message_id].sort());
    await waitForAsync(async () => (await storedIds(cluster, "messages")).length === 0, 10_000);
    // Each written once (acknowledged at once, neither comes again).
    expect(worker.frames.map((frame: { message_id: string }) => frame.message_id).sort()).toEqual(idsOf(worker));
  }, 30_000);

  it("publishes again no message a node took, even one whose first copy the stream forgot (handed to a fallback, then NATS restarted)", async () => {
    const own = await startNats();
    try {
      const cluster = await newCluster();
      let a = await node(cluster, "node-a", { url: own.url, ackTimeout: 300 });
      let b = await node(cluster, "node-b", { url: own.url, ackTimeout: 300 });
      await register(a, "test://boss", "test://worker", "test://helper");
      const silent = await rawConnect(b, "test://worker");
      const message = envelope("test://boss", "test://worker", {
        message_type: "status_update",
        routing: { timeout: "60s", retry_policy: { max_retries: 0, backoff: "linear" }, delivery_mode: "async", fallback_agents: ["test://helper"] },
      });
      const key = `test://boss\u001f${message.message_id as string}`;
      expect((await call(a, "POST", "/messages/send", message)).status).toBe(202);
      // The worker never acks: its copy is acked to the stream as the message goes to the fallback agent.
      await waitForAsync(async () => (await storedState(cluster, key))?.targetIndex === 1, 10_000);
      // The stream holds the fallback's copy alone.
      await waitForAsync(async () => (await b.cluster!.connection.manager.streams.info(cluster.stream)).state.messages === 1, 10_000);
      silent.socket.terminate();
      await Promise.all([a.stop(), b.stop()]);
      // A restarted NATS server keeps the ids of the messages it still holds only: the worker's copy is forgotten.
      await own.halt();
      await own.start();
      b = await node(cluster, "node-b", { url: own.url });
      const worker = await ackingConnect(b, "test://worker");
      const c = await node(cluster, "node-c", { url: own.url });
      // The fallback agent has it and has not acked it yet: the message is live, its record still there.
      const helper = await rawConnect(c, "test://helper");
      await until(() => idsOf(helper).length === 1, 10_000);
      // node-a's next run finds its record, and a state: a node took it, so it is not published again.
      a = await node(cluster, "node-a", { url: own.url });
      const sent = retried("test://boss", "test://worker");
      expect((await call(a, "POST", "/messages/send", sent)).status).toBe(202);
      await until(() => idsOf(worker).includes(sent.message_id as string), 10_000);
      expect(idsOf(worker)).toEqual([sent.message_id]);
    } finally {
      await own.stop();
    }
  }, 40_000);

  it("takes back the record of a message the stream did not take (503), so that no takeover publishes a message refused", async () => {
    const cluster = await newCluster();
    const a = await node(cluster, "node-a");
    await register(a, "test://boss", "test://worker");
    // The stream gone behind the node's back: NATS answers the publish with an error, not a timeout.
    await a.cluster!.connection.manager.streams.delete(cluster.stream);
    const message = retried("test://boss", "test://worker");
    expect(await call(a, "POST", "/messages/send", message)).toMatchObject({ status: 503, body: { error: { type: "TRANSPORT" } } });
    expect(await storedIds(cluster, "messages")).toEqual([]);
  }, 30_000);

  it("removes at its start the records of messages whose end the store has, and keeps the others", async () => {
    const cluster = await newCluster();
    // What a node of an earlier version could leave: a message's record after its end.
    const [ended, waiting] = [retried("test://boss", "test://worker"), retried("test://boss", "test://worker")];
    const keyOf = (message: Record<string, unknown>): string => `test://boss\u001f${message.message_id as string}`;
    const earlier = await openPostgresStore({ url: cluster.database, exclusive: false });
    const state = { status: "accepted", targetIndex: 0, retries: 0, attempts: 0, lastError: null, phaseDeadline: null };
    for (const [order, message] of [ended, waiting].entries()) {
      earlier.put("messages", keyOf(message), { envelope: message, acceptedAt: Date.now(), timeoutMs: 60_000, order, state });
    }
    earlier.put("message_status", keyOf(ended), { message_id: ended.message_id, sender: "test://boss", status: "acknowledged", attempts: 1, order: 2 });
    await earlier.close();
    const a = await node(cluster, "node-a");
    await a.persisted();
    expect(await storedIds(cluster, "messages")).toEqual([keyOf(waiting)]);
  }, 30_000);

  it.each(["another node", "the same node"] as const)(
    "delivers on %s the messages its agent's dropped socket left unacknowledged",
    async (where) => {
      const cluster = await newCluster();
      const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
      await register(a, "test://worker", "test://boss");
      const silent = await rawConnect(a, "test://worker");
      // Accepted by both nodes: the agent's own, and another.
      const sent = [a, b, a, b].map(() => retried("test://boss", "test://worker"));
      for (const [index, message] of sent.entries()) expect((await call(index % 2 === 0 ? a : b, "POST", "/messages/send", message)).status).toBe(202);
      await until(() => silent.frames.length === 4, 10_000);
      silent.socket.terminate();
      if (where === "the same node") await until(() => !a.listAgents().some((agent) => agent.agent_id === "test://worker" && agent.online), 5_000);
      const back = await ackingConnect(where === "the same node" ? a : b, "test://worker");
      await until(() => idsOf(back).length === 4, 15_000);
      expect(idsOf(back)).toEqual(sent.map((message) => message.message_id).sort());
    },
    30_000,
  );

  it("kills at their deadline, telling their sender, the messages its agent's dropped socket left unacknowledged when it never comes back", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(a, "test://worker", "test://boss");
    const boss = await connect(b, "test://boss");
    const silent = await rawConnect(a, "test://worker");
    // Accepted by the agent's node (which watched no deadline: the agent was there) and by the other.
    const sent = [a, b, a, b].map(() => retried("test://boss", "test://worker", "3s"));
    for (const [index, message] of sent.entries()) expect((await call(index % 2 === 0 ? a : b, "POST", "/messages/send", message)).status).toBe(202);
    await until(() => silent.frames.length === 4, 10_000);
    silent.socket.terminate();
    await until(() => boss.received.length >= 4, 15_000);
    expect(boss.received.map((message) => message.payload)).toEqual(
      expect.arrayContaining(sent.map((message) => expect.objectContaining({ code: "DELIVERY_FAILED", in_reply_to: message.message_id }))),
    );
    expect(boss.received).toHaveLength(4);
    for (const message of sent) {
      const status = await call(b, "GET", `/messages/${message.message_id as string}?sender=${encodeURIComponent("test://boss")}`);
      expect(status.body).toMatchObject({ status: "dead" });
    }
  }, 30_000);

  it("gives back to the stream the messages it pulled for an agent that left while it was taking them", async () => {
    const cluster = await newCluster();
    let steered: SteeredStore | undefined;
    const a = await node(cluster, "node-a", { wrap: (store) => (steered = new SteeredStore(store)) });
    const b = await node(cluster, "node-b");
    await register(a, "test://worker", "test://boss");
    const silent = await rawConnect(a, "test://worker");
    // A pulls them and, before it hands them to its deliveries, reads whether they ended: held here.
    steered!.holdStatusReads();
    const sent = [1, 2, 3].map(() => retried("test://boss", "test://worker"));
    for (const message of sent) expect((await call(b, "POST", "/messages/send", message)).status).toBe(202);
    await until(() => steered!.waitingReads === 3, 10_000);
    silent.socket.terminate();
    await until(() => (a as unknown as { clusterDeliveries: { view(): { pulling: number } } }).clusterDeliveries.view().pulling === 0, 5_000);
    steered!.releaseStatusReads();
    const moved = await ackingConnect(b, "test://worker");
    await until(() => idsOf(moved).length === 3, 15_000);
    expect(idsOf(moved)).toEqual(sent.map((message) => message.message_id).sort());
    expect(silent.frames).toEqual([]);
  }, 30_000);
});
