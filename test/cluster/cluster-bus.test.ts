/**
 * The bus as a cluster (docs/cluster.md): several buses on one NATS JetStream and one PostgreSQL deliver to an
 * agent whichever node it is connected to, each message once to its ack, and a node's unacknowledged messages
 * are delivered by another node once that node is gone.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { CommunicationBus, type MessageEnvelope } from "../../src/index.js";
import type { MessageContext } from "../../src/client/connect-agent.js";
import { call, connect, envelope, rawConnect, register, statusOf, TEST_KEY, until } from "../bus/support.js";
import { openEventSocket, type Frame } from "../events/support.js";
import { useEngines } from "../support/engines.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { newTestCluster, startTestNode, type TestCluster, type TestNodeOptions } from "../support/cluster-nodes.js";
import { frameText } from "../../src/protocol/frames.js";

let nats: NatsServer;
let postgres: PostgresServer;

useEngines((engines) => ({ nats, postgres } = engines));

/** A fresh cluster of this file's. */
function newCluster(): Promise<TestCluster> {
  return newTestCluster(postgres, "cluster");
}

/** A node of `cluster` in this process. */
function node(cluster: TestCluster, nodeId: string, options: TestNodeOptions = {}): Promise<CommunicationBus> {
  return startTestNode(nats, cluster, nodeId, options);
}

/** A node of `cluster` in a process of its own (test/support/cluster-node-process.ts), for tests that SIGKILL it. */
interface NodeProcess {
  url: string;
  kill(): Promise<void>;
}

async function nodeProcess(
  cluster: TestCluster,
  nodeId: string,
  options: { ackWaitMs: number; leaseMs?: number },
  processes: NodeProcess[],
): Promise<NodeProcess> {
  const lease = options.leaseMs === undefined ? [] : [`leases_${cluster.names}`, String(options.leaseMs)];
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "test/support/cluster-node-process.ts",
      nats.url,
      cluster.database,
      nodeId,
      cluster.stream,
      `troupe.${cluster.names}.messages`,
      String(options.ackWaitMs),
      ...lease,
    ],
    { cwd: fileURLToPath(new URL("../..", import.meta.url)), stdio: ["ignore", "pipe", "pipe"] },
  );
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill("SIGKILL");
    await exited;
  };
  processes.push({ url: "", kill });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const ready = /ready (\S+)\n/.exec(out);
      if (ready) resolve(ready[1] as string);
    });
    child.once("exit", (code) => reject(new Error(`${nodeId} exited (${code})`)));
  });
  return { url, kill };
}

describe("a cluster of buses", () => {
  it("delivers a message posted to node B to its agent connected to node A, most urgent first", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    // Registered on B: A reads the registration from the shared store when the agent connects there.
    await register(b, "test://worker", "test://boss");
    const sent: string[] = [];
    for (const priority of ["low", "medium", "high", "critical"]) {
      const message = envelope("test://boss", "test://worker", { priority, message_type: "status_update" });
      sent.push(message.message_id as string);
      const answer = await call(b, "POST", "/messages/send", message);
      expect(answer.status).toBe(202);
    }
    const worker = await connect(a, "test://worker");
    await until(() => worker.received.length === 4, 10_000);
    expect(worker.received.map((message) => message.priority)).toEqual(["critical", "high", "medium", "low"]);
    // B's sender hears nothing more; the stream keeps nothing once A's deliveries ended.
    await until(
      () => a.cluster !== undefined && (a as unknown as { clusterDeliveries: { view(): { held: number } } }).clusterDeliveries.view().held === 0,
      5_000,
    );
    // Any node answers for it: A, which delivered it, from memory; B, which accepted it, from the shared store.
    expect((await call(a, "GET", `/messages/${sent[0]}`)).body).toMatchObject({ status: "acknowledged", attempts: 1 });
    expect((await call(b, "GET", `/messages/${sent[0]}?sender=${encodeURIComponent("test://boss")}`)).body).toMatchObject({
      status: "acknowledged",
      sender: "test://boss",
    });
    expect((await call(b, "GET", `/messages/${sent[0]}`)).status).toBe(404);
  }, 30_000);

  it("takes an answer sent through another node as the ack of the message it answers", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(a, "test://worker", "test://boss");
    // The worker sends no ack frames: its answer, posted to B, is the ack of the request A delivered to it.
    const worker = await rawConnect(a, "test://worker");
    const request = envelope("test://boss", "test://worker");
    expect((await call(b, "POST", "/messages/send", request)).status).toBe(202);
    await until(() => worker.frames.length === 1, 10_000);
    const answer = envelope("test://worker", "test://boss", { message_type: "task_response", metadata: { in_reply_to: request.message_id } });
    expect((await call(b, "POST", "/messages/send", answer)).status).toBe(202);
    await until(() => statusOf(a, request.message_id as string) === "acknowledged", 10_000);
  }, 30_000);

  it("answers a sync sender on node B with the reply its recipient on node A sends", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(b, "test://worker", "test://boss");
    await connect(a, "test://worker", {
      onMessage: async (message: MessageEnvelope, context: MessageContext) => {
        if (message.message_type === "task_request") await context.reply({ answer: 42 });
      },
    });
    const request = envelope("test://boss", "test://worker", {
      routing: { timeout: "10s", retry_policy: { max_retries: 1, backoff: "linear" }, delivery_mode: "sync" },
    });
    const answer = await call(b, "POST", "/messages/send", request);
    expect(answer.status).toBe(202);
    expect(answer.body).toMatchObject({ status: "delivered", response: { sender: { agent_id: "test://worker" }, payload: { answer: 42 } } });
  }, 30_000);

  it("times out a message for an agent connected nowhere once, on the node that accepted it, and tells its sender on another node", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(b, "test://absent", "test://boss");
    const boss = await connect(a, "test://boss");
    const message = envelope("test://boss", "test://absent", {
      routing: { timeout: "500ms", retry_policy: { max_retries: 0, backoff: "linear" }, delivery_mode: "async" },
    });
    expect((await call(b, "POST", "/messages/send", message)).status).toBe(202);
    await until(() => boss.received.length === 1, 10_000);
    expect(boss.received[0]).toMatchObject({
      message_type: "error",
      payload: { code: "DELIVERY_FAILED", in_reply_to: message.message_id, recipient: "test://absent" },
    });
    // The agent connecting later gets nothing: the message died, and left the stream.
    const late = await connect(a, "test://absent");
    const more = await call(b, "POST", "/messages/send", envelope("test://boss", "test://absent", { message_type: "status_update" }));
    expect(more.status).toBe(202);
    await until(() => late.received.length === 1, 10_000);
    expect(late.received.map((received) => received.message_id)).toEqual([more.body.message_id]);
    expect(boss.received).toHaveLength(1);
  }, 30_000);

  it("shows every node's events, each with its node id, on each node's event stream", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(b, "test://on-b", "test://on-a", "test://boss");
    await connect(b, "test://on-b");
    await connect(a, "test://on-a");
    const watcher = await openEventSocket(a);
    // B sends its events once it has heard that A watches: a message or two may pass before.
    const fromB = (frames: Frame[]): Frame[] => frames.filter((frame) => frame.node === "node-b" && String(frame.type).startsWith("message."));
    for (let attempt = 0; attempt < 20 && fromB(watcher.frames).length === 0; attempt += 1) {
      await b.send(envelope("test://boss", "test://on-b", { message_type: "status_update" }));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(fromB(watcher.frames).length).toBeGreaterThan(0);
    await a.send(envelope("test://boss", "test://on-a", { message_type: "status_update" }));
    await watcher.until((frames) => frames.some((frame) => frame.node === "node-a" && frame.type === "message.acknowledged"));
    // One numbering per node: A's seq grows by one per event, whichever node made it.
    const seqs = watcher.frames.filter((frame) => typeof frame.seq === "number").map((frame) => frame.seq as number);
    expect(seqs).toEqual(seqs.map((_, index) => (seqs[0] as number) + index));
    expect(watcher.frames.filter((frame) => typeof frame.seq === "number").every((frame) => frame.node === "node-a" || frame.node === "node-b")).toBe(true);
  }, 30_000);

  it("announces a message for an agent connected nowhere on the node that accepted it, once: its delivery on another node does not again", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(b, "test://absent", "test://boss");
    const messageEvents = (bus: CommunicationBus): Frame[] => {
      const events: Frame[] = [];
      bus.on("*", (event) => {
        if (event.type.startsWith("message.")) events.push(event);
      });
      return events;
    };
    const [onA, onB] = [messageEvents(a), messageEvents(b)];
    const watcher = await openEventSocket(b, "?types=message.*");
    const message = envelope("test://boss", "test://absent", { message_type: "status_update" });
    expect((await call(b, "POST", "/messages/send", message)).status).toBe(202);
    // Its agent is connected nowhere: the node that accepted it says so on its stream.
    await watcher.until((frames) => frames.some((frame) => frame.type === "message.accepted"));
    expect(watcher.frames).toMatchObject([
      {
        type: "message.accepted",
        node: "node-b",
        actorId: `message:test://boss\u001f${message.message_id as string}`,
        messageId: message.message_id,
        target: "test://absent",
        from: "test://boss",
      },
    ]);
    const worker = await connect(a, "test://absent");
    await until(() => worker.received.length === 1 && onA.some((event) => event.type === "message.acknowledged"), 10_000);
    expect(onB.map((event) => [event.type, event.node])).toEqual([["message.accepted", "node-b"]]);
    expect(onA.map((event) => [event.type, event.node])).toEqual([
      ["message.delivered", "node-a"],
      ["message.acknowledged", "node-a"],
    ]);
  }, 30_000);

  it("hands a message to its fallback agent on another node once its recipient failed it", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a", { ackTimeout: 300 }), await node(cluster, "node-b", { ackTimeout: 300 })];
    await register(a, "test://first", "test://backup", "test://boss");
    const boss = await connect(b, "test://boss");
    // The recipient takes the message on A and never acknowledges it; its fallback is on B.
    const silent = await rawConnect(a, "test://first");
    const backup = await connect(b, "test://backup");
    const message = envelope("test://boss", "test://first", {
      message_type: "status_update",
      routing: { timeout: "20s", retry_policy: { max_retries: 0, backoff: "linear" }, delivery_mode: "async", fallback_agents: ["test://backup"] },
    });
    expect((await call(b, "POST", "/messages/send", message)).status).toBe(202);
    await until(() => backup.received.length === 1, 10_000);
    expect(backup.received[0]).toMatchObject({ message_id: message.message_id, recipient: { agent_id: "test://first" } });
    expect(silent.frames.map((frame) => frame.message_id)).toEqual([message.message_id]);
    expect(boss.received).toEqual([]);
  }, 30_000);

  it("refuses with 429 a message past maxQueuedPerAgent waiting for its recipient in the cluster, keeping nothing of it", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a", { maxQueuedPerAgent: 5 }), await node(cluster, "node-b", { maxQueuedPerAgent: 5 })];
    await register(a, "test://absent", "test://boss");
    const answers: number[] = [];
    for (let n = 0; n < 8; n += 1) {
      const message = envelope("test://boss", "test://absent", { message_type: "status_update", priority: "low" });
      answers.push((await call(n % 2 === 0 ? a : b, "POST", "/messages/send", message)).status);
    }
    // Five wait in the stream for the agent, whichever node took them; the others are refused as one node refuses them.
    expect(answers).toEqual([202, 202, 202, 202, 202, 429, 429, 429]);
    const refused = await call(a, "POST", "/messages/send", envelope("test://boss", "test://absent", { message_type: "status_update", priority: "low" }));
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { retryable: true } });
    // Another priority has its own room, as a node's queue counts all (the stream bounds each priority).
    expect(
      (await call(a, "POST", "/messages/send", envelope("test://boss", "test://absent", { message_type: "status_update", priority: "high" }))).status,
    ).toBe(202);
    // Nothing of a refused message is kept: only the accepted ones' records remain.
    await a.persisted();
    const records = await (a as unknown as { runtime: { store: { list(collection: string): Promise<unknown[]> } } }).runtime.store.list("messages");
    expect(records).toHaveLength(6);
    const worker = await connect(b, "test://absent");
    await until(() => worker.received.length === 6, 10_000);
  }, 30_000);

  it("refuses a cluster bus whose store the nodes cannot share (CONFIG, naming the store)", async () => {
    const bus = new CommunicationBus({ host: "127.0.0.1", port: 0, apiKey: TEST_KEY, env: {}, cluster: { url: nats.url, nodeId: "lonely" } });
    await expect(bus.start()).rejects.toMatchObject({ type: "CONFIG", details: { field: "store" } });
    expect(bus.cluster).toBeUndefined();
    await bus.stop();
  });

  it("carries thousands of messages between three nodes, each delivered once to its agent's ack", async () => {
    const cluster = await newCluster();
    const nodes = [await node(cluster, "n1"), await node(cluster, "n2"), await node(cluster, "n3")];
    const agents = ["test://a1", "test://a2", "test://a3"];
    await register(nodes[0]!, ...agents, "test://sender");
    // Raw sockets that ack every frame: what they count is what the bus wrote, with no client deduplicating it.
    const connected = await Promise.all(
      agents.map(async (agentId, index) => {
        const raw = await rawConnect(nodes[index]!, agentId);
        raw.socket.on("message", (data) => raw.ack((JSON.parse(frameText(data)) as MessageEnvelope).message_id));
        return { received: raw.frames as MessageEnvelope[] };
      }),
    );
    const total = 3_000;
    const priorities = ["low", "medium", "high", "critical"];
    const expected = new Map<string, string>();
    const sends: Array<Promise<unknown>> = [];
    for (let n = 0; n < total; n += 1) {
      const to = agents[n % 3]!;
      const via = nodes[(n + 1) % 3]!;
      const message = envelope("test://sender", to, { priority: priorities[n % 4], message_type: "status_update" });
      expected.set(message.message_id as string, to);
      sends.push(via.send(message));
      if (sends.length >= 100) await Promise.all(sends.splice(0));
    }
    await Promise.all(sends);
    await until(() => connected.reduce((sum, agent) => sum + agent.received.length, 0) >= total, 60_000);
    const seen = new Map<string, number>();
    connected.forEach((agent, index) => {
      for (const message of agent.received) {
        expect(expected.get(message.message_id)).toBe(agents[index]);
        seen.set(message.message_id, (seen.get(message.message_id) ?? 0) + 1);
      }
    });
    expect(seen.size).toBe(total);
    expect([...seen.values()].every((count) => count === 1)).toBe(true);
  }, 120_000);

  it("delivers through another node the messages a node held unacknowledged when it died", async () => {
    const cluster = await newCluster();
    const ackWaitMs = 1_500;
    const [a, c] = [await node(cluster, "node-a", { ackWaitMs }), await node(cluster, "node-c", { ackWaitMs })];
    await register(a, "test://worker", "test://boss");
    // The worker takes its messages on C and never acknowledges them.
    const silent = await rawConnect(c, "test://worker");
    const ids: string[] = [];
    for (let n = 0; n < 5; n += 1) {
      const message = envelope("test://boss", "test://worker", { message_type: "status_update" });
      ids.push(message.message_id as string);
      expect((await call(a, "POST", "/messages/send", message)).status).toBe(202);
    }
    await until(() => silent.frames.length === 5, 10_000);
    // C dies: its NATS connection drops without a word and its agent's socket with it.
    await c.cluster!.connection.nats.close();
    silent.socket.terminate();
    const worker = await connect(a, "test://worker");
    await until(() => worker.received.length === 5, 15_000);
    expect(worker.received.map((message) => message.message_id).sort()).toEqual([...ids].sort());
  }, 30_000);

  it("delivers through another node what a SIGKILLed node held, and nothing its agent had acknowledged", async () => {
    const cluster = await newCluster();
    const ackWaitMs = 1_500;
    const a = await node(cluster, "node-a", { ackWaitMs });
    const processes: NodeProcess[] = [];
    try {
      const { url, kill } = await nodeProcess(cluster, "node-k", { ackWaitMs }, processes);
      await register(a, "test://worker", "test://boss");
      // The worker connects to node-k, and acknowledges only the first half of what it gets there.
      const there = await rawConnect({ url }, "test://worker");
      const ids: string[] = [];
      for (let n = 0; n < 20; n += 1) {
        const message = envelope("test://boss", "test://worker", { message_type: "status_update" });
        ids.push(message.message_id as string);
        expect((await call(a, "POST", "/messages/send", message)).status).toBe(202);
      }
      await until(() => there.frames.length === 20, 10_000);
      const acknowledged = there.frames.slice(0, 10).map((frame) => frame.message_id as string);
      for (const messageId of acknowledged) there.ack(messageId);
      // Their acks are durable (in the shared store) before the kill.
      const keys = acknowledged.map((messageId) => `test://boss\u001f${messageId}`);
      let durable = 0;
      for (let tries = 0; tries < 100 && durable < 10; tries += 1) {
        if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 50));
        const rows = await postgres.query<{ id: string }>(
          "SELECT id FROM troupe.records WHERE collection = 'message_status' AND id = ANY($1) AND (value::jsonb)->>'status' = 'acknowledged'",
          [keys],
          cluster.database.slice(cluster.database.lastIndexOf("/") + 1),
        );
        durable = rows.length;
      }
      expect(durable).toBe(10);
      await kill();
      there.socket.terminate();
      const worker = await rawConnect(a, "test://worker");
      worker.socket.on("message", (data) => worker.ack((JSON.parse(frameText(data)) as MessageEnvelope).message_id));
      await until(() => worker.frames.length >= 10, 15_000);
      // After one more ack wait, nothing else came: the acknowledged half is never delivered again.
      await new Promise((resolve) => setTimeout(resolve, ackWaitMs + 500));
      expect(worker.frames.map((frame) => frame.message_id as string).sort()).toEqual(ids.filter((id) => !acknowledged.includes(id)).sort());
    } finally {
      await Promise.all(processes.map((child) => child.kill()));
    }
  }, 60_000);

  it("times out a message for an agent connected nowhere whose deadline passed while the cluster was down", async () => {
    const cluster = await newCluster();
    const first = await node(cluster, "node-a");
    await register(first, "test://absent", "test://boss");
    const message = envelope("test://boss", "test://absent", {
      routing: { timeout: "300ms", retry_policy: { max_retries: 0, backoff: "linear" }, delivery_mode: "async" },
    });
    expect((await call(first, "POST", "/messages/send", message)).status).toBe(202);
    await first.stop();
    await new Promise((resolve) => setTimeout(resolve, 400));
    // The only node starts again: it watches what the store holds, and the message dies (its sender is told).
    const again = await node(cluster, "node-a");
    const boss = await connect(again, "test://boss");
    await until(() => boss.received.length === 1, 10_000);
    expect(boss.received[0]).toMatchObject({ message_type: "error", payload: { code: "DELIVERY_FAILED", in_reply_to: message.message_id } });
  }, 30_000);

  it("times out at its deadline a message for an agent connected nowhere whose accepting node was SIGKILLed", async () => {
    const cluster = await newCluster();
    const leaseMs = 1_000;
    const a = await node(cluster, "node-a", { leaseMs });
    const processes: NodeProcess[] = [];
    try {
      const k = await nodeProcess(cluster, "node-k", { ackWaitMs: 30_000, leaseMs }, processes);
      await register(a, "test://absent", "test://boss");
      const boss = await connect(a, "test://boss");
      // Accepted by node-k, which alone watched its deadline, then killed long before it.
      const message = envelope("test://boss", "test://absent", {
        routing: { timeout: "3s", retry_policy: { max_retries: 0, backoff: "linear" }, delivery_mode: "async" },
      });
      const acceptedAt = Date.now();
      expect((await call(k, "POST", "/messages/send", message)).status).toBe(202);
      await k.kill();
      await until(() => boss.received.length === 1, 15_000);
      // Dead of its own timeout, not of its node's death: not before its deadline.
      expect(Date.now() - acceptedAt).toBeGreaterThanOrEqual(3_000);
      expect(boss.received[0]).toMatchObject({
        message_type: "error",
        payload: { code: "DELIVERY_FAILED", in_reply_to: message.message_id, recipient: "test://absent" },
      });
      expect((await call(a, "GET", `/messages/${message.message_id as string}?sender=${encodeURIComponent("test://boss")}`)).body).toMatchObject({
        status: "dead",
      });
      // The agent connecting later gets only what was sent after.
      const late = await connect(a, "test://absent");
      const more = await call(a, "POST", "/messages/send", envelope("test://boss", "test://absent", { message_type: "status_update" }));
      expect(more.status).toBe(202);
      await until(() => late.received.length === 1, 10_000);
      expect(late.received.map((received) => received.message_id)).toEqual([more.body.message_id]);
      expect(boss.received).toHaveLength(1);
    } finally {
      await Promise.all(processes.map((child) => child.kill()));
    }
  }, 60_000);

  it("kills at their deadline the messages a SIGKILLed node held for an agent that never connects again, though they come back after it", async () => {
    const cluster = await newCluster();
    // The deadline passes before the dead node's messages come back (after the ack wait): a look finds them held.
    const [ackWaitMs, leaseMs] = [4_000, 1_000];
    const a = await node(cluster, "node-a", { ackWaitMs, leaseMs });
    const processes: NodeProcess[] = [];
    try {
      const k = await nodeProcess(cluster, "node-k", { ackWaitMs, leaseMs }, processes);
      await register(a, "test://worker", "test://boss");
      const boss = await connect(a, "test://boss");
      const silent = await rawConnect(k, "test://worker");
      const sent = [1, 2, 3].map(() =>
        envelope("test://boss", "test://worker", {
          message_type: "status_update",
          routing: { timeout: "2s", retry_policy: { max_retries: 3, backoff: "linear" }, delivery_mode: "async" },
        }),
      );
      for (const message of sent) expect((await call(a, "POST", "/messages/send", message)).status).toBe(202);
      await until(() => silent.frames.length === 3, 10_000);
      await k.kill();
      silent.socket.terminate();
      await until(() => boss.received.length === 3, 20_000);
      expect(boss.received.map((message) => message.payload)).toEqual(
        expect.arrayContaining(sent.map((message) => expect.objectContaining({ code: "DELIVERY_FAILED", in_reply_to: message.message_id }))),
      );
    } finally {
      await Promise.all(processes.map((child) => child.kill()));
    }
  }, 60_000);

  it("refuses new messages with 503 while cut from NATS and takes them again once NATS is back", async () => {
    const own = await startNats();
    try {
      const cluster = await newCluster();
      const bus = await node(cluster, "node-p", { url: own.url });
      const clusterEvents = await openEventSocket(bus, "?types=cluster.*");
      await register(bus, "test://worker", "test://boss");
      const worker = await connect(bus, "test://worker");
      const boss = await rawConnect(bus, "test://boss", undefined, { control: true });
      const health = await call(bus, "GET", "/health");
      expect(health.status).toBe(200);
      expect(health.body.cluster).toMatchObject({ node: "node-p", nats: "connected", store: "reachable" });
      await own.halt();
      await until(() => bus.cluster!.state() === "disconnected", 10_000);
      const refused = await call(bus, "POST", "/messages/send", envelope("test://boss", "test://worker"));
      expect(refused.status).toBe(503);
      expect(refused.body.error).toMatchObject({ type: "TRANSPORT" });
      // Over WebSocket, the same refusal comes as a rejected frame.
      const frame = envelope("test://boss", "test://worker");
      boss.socket.send(JSON.stringify(frame));
      await until(() => boss.frames.some((received) => received.type === "rejected"), 10_000);
      expect(boss.frames.find((received) => received.type === "rejected")).toMatchObject({
        message_id: frame.message_id,
        error: { type: "TRANSPORT", details: { unavailable: true, retryable: true } },
      });
      const down = await call(bus, "GET", "/health");
      expect(down.status).toBe(503);
      expect(down.body.cluster).toMatchObject({ nats: "disconnected" });
      await own.start();
      await until(() => bus.cluster!.state() === "connected", 15_000);
      // The node said so on its stream (and in its log): NATS lost, then back.
      await clusterEvents.until((frames) => frames.some((frame) => frame.type === "cluster.nats_reconnected"));
      const server = `127.0.0.1:${own.port}`;
      expect(clusterEvents.frames).toMatchObject([
        { type: "cluster.nats_disconnected", node: "node-p", actorId: "node:node-p", server },
        { type: "cluster.nats_reconnected", node: "node-p", server, downMs: expect.any(Number) },
      ]);
      const after = await call(bus, "POST", "/messages/send", envelope("test://boss", "test://worker"));
      expect(after.status).toBe(202);
      // The worker's pull survived the outage: the message reaches it.
      await until(() => worker.received.some((message) => message.message_id === after.body.message_id), 15_000);
    } finally {
      await own.stop();
    }
  }, 60_000);
});
