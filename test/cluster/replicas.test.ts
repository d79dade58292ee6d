/**
 * Replicas (docs/cluster.md, "Replicas"): on a NATS cluster of three JetStream servers, nodes given `replicas: 3`
 * keep three copies of the message stream and of the lease bucket, so that the death of one NATS server (SIGKILL)
 * loses nothing: messages are accepted and delivered again once the stream's new leader is elected, no node loses
 * its lease, and a node that leaves is taken over. A node refuses a number of copies NATS cannot keep (CONFIG).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Lease } from "../../src/cluster/leases.js";
import { openClusterNode } from "../../src/cluster/node.js";
import { BridgeError } from "../../src/errors.js";
import { openPostgresStore, type CommunicationBus, type MessageEnvelope, type RuntimeEvent } from "../../src/index.js";
import { frameText } from "../../src/protocol/frames.js";
import { call, envelope, rawConnect, register, startBus, until } from "../bus/support.js";
import { startNats, startNatsCluster, type NatsCluster, type NatsServer } from "../support/nats-server.js";
import { startPostgres, type PostgresServer } from "../support/postgres-server.js";

let natsCluster: NatsCluster;
let single: NatsServer;
let postgres: PostgresServer;

beforeAll(async () => {
  // Each kept as it starts, so that afterAll stops those that did when another failed.
  const started = await Promise.allSettled([
    startNatsCluster().then((value) => (natsCluster = value)),
    startNats().then((value) => (single = value)),
    startPostgres().then((value) => (postgres = value)),
  ]);
  for (const result of started) if (result.status === "rejected") throw result.reason;
}, 30_000);

afterAll(async () => {
  await Promise.all([natsCluster?.stop(), single?.stop(), postgres?.stop()]);
});

const STREAM = "TROUPE_REPLICATED";
const BUCKET = "leases_replicated";
/** Two thirds of it outlast the election of a replicated stream's new leader (4 to 8 s measured here). */
const LEASE_MS = 15_000;

async function node(nodeId: string, url: string, database: string): Promise<{ bus: CommunicationBus; events: RuntimeEvent[] }> {
  const bus = await startBus({
    store: () => openPostgresStore({ url: database, exclusive: false }),
    cluster: { url, nodeId, stream: STREAM, subjectPrefix: "troupe.replicated", leaseBucket: BUCKET, replicas: 3, leaseMs: LEASE_MS, ackWaitMs: 5_000 },
  });
  const events: RuntimeEvent[] = [];
  bus.on("*", (event) => {
    if (event.type.startsWith("cluster.")) events.push(event);
  });
  return { bus, events };
}

/** Sends a message through `bus` as a client would: again after each 503 (NATS electing a leader), until 202 or `timeoutMs`. */
async function sendUntilAccepted(bus: CommunicationBus, message: Record<string, unknown>, timeoutMs = 20_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const answer = await call(bus, "POST", "/messages/send", message);
    if (answer.status === 202) return;
    if (answer.status !== 503 || performance.now() > deadline) throw new Error(`not accepted: ${answer.status} ${JSON.stringify(answer.body)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Moves the leadership of stream `stream` to server `name`: each stepdown elects one of the other copies at random,
 * so it takes a few (each ends when JetStream names the new leader).
 */
async function leadTo(bus: CommunicationBus, stream: string, name: string): Promise<void> {
  const { nats } = bus.cluster!.connection;
  const deadline = performance.now() + 20_000;
  // Asked with a short wait: a stream between two leaders answers nothing.
  const leaderOf = async (): Promise<string | undefined> => {
    try {
      const info = (await nats.request(`$JS.API.STREAM.INFO.${stream}`, "", { timeout: 1_000 })).json<{ cluster?: { leader?: string } }>();
      return info.cluster?.leader;
    } catch {
      return undefined;
    }
  };
  for (let leader = await leaderOf(); leader !== name;) {
    if (performance.now() > deadline) throw new Error(`${stream} is still led by ${leader}, not ${name}`);
    if (leader !== undefined) await nats.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, "", { timeout: 5_000 });
    const before = leader;
    do leader = await leaderOf();
    while ((leader === undefined || leader === before) && performance.now() < deadline);
  }
}

/** Takes the lease of `resource` through `bus`'s node, asking again while NATS does not answer (TRANSPORT), for up to `timeoutMs`. */
async function takeLease(bus: CommunicationBus, resource: string, timeoutMs: number): Promise<Lease | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await bus.cluster!.leases.acquire(resource);
    } catch (error) {
      if (!(error instanceof BridgeError && error.type === "TRANSPORT") || performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

describe("replicas", () => {
  // The last test kills a NATS server: the ones before need all three.
  it("refuses a number of copies JetStream cannot keep (CONFIG naming cluster.replicas)", async () => {
    await expect(openClusterNode({ url: single.url, nodeId: "node-r", replicas: 2 as 3 })).rejects.toMatchObject({
      type: "CONFIG",
      details: { field: "cluster.replicas" },
    });
    // A server outside a NATS cluster would take the setting and keep one copy: refused before anything is made.
    await expect(openClusterNode({ url: single.url, nodeId: "node-r", replicas: 3, stream: "TROUPE_SINGLE", leaseBucket: "single" })).rejects.toMatchObject({
      type: "CONFIG",
      message: expect.stringContaining("not in a cluster"),
      details: { field: "cluster.replicas" },
    });
    // Five copies on three servers: JetStream finds no room for them.
    await expect(openClusterNode({ url: natsCluster.url, nodeId: "node-r", replicas: 5, stream: "TROUPE_FIVE", leaseBucket: "five" })).rejects.toMatchObject({
      type: "CONFIG",
      details: { field: "cluster.replicas" },
    });
  });

  it("brings an existing stream and bucket to the copies a node is given, and leaves them as they are when it is given none", async () => {
    const where = { url: natsCluster.url, stream: "TROUPE_RAISED", subjectPrefix: "troupe.raised", leaseBucket: "raised" };
    const copies = async (nodeId: string, replicas?: 1 | 3): Promise<number[]> => {
      const node = await openClusterNode({ ...where, nodeId, ...(replicas === undefined ? {} : { replicas }) });
      try {
        const { manager } = node.connection;
        return [(await manager.streams.info("TROUPE_RAISED")).config.num_replicas, (await manager.streams.info("KV_raised")).config.num_replicas];
      } finally {
        await node.close();
      }
    };
    expect(await copies("node-new")).toEqual([1, 1]);
    expect(await copies("node-3", 3)).toEqual([3, 3]);
    // A node started without the setting does not undo it.
    expect(await copies("node-unset")).toEqual([3, 3]);
    expect(await copies("node-1", 1)).toEqual([1, 1]);
  });

  it("keeps messages and leases going through the SIGKILL of the NATS server that leads the message stream and the lease bucket", async () => {
    const database = await postgres.createDatabase(`replicas_${process.pid}`);
    // node-b creates the stream and the bucket, with three copies each.
    const b = await node("node-b", natsCluster.url, database);
    const manager = b.bus.cluster!.connection.manager;
    const streamInfo = await manager.streams.info(STREAM);
    expect(streamInfo.config.num_replicas).toBe(3);
    expect(streamInfo.cluster?.replicas).toHaveLength(2);
    expect((await manager.streams.info(`KV_${BUCKET}`)).config.num_replicas).toBe(3);
    const victim = natsCluster.servers.find((server) => server.name === streamInfo.cluster?.leader)!;
    // The server that dies leads the lease bucket too: the nodes' renewals wait for its new leader as well.
    await leadTo(b.bus, `KV_${BUCKET}`, victim.name);
    // node-a is told only that server's URL: it learns the others from it, and moves to one when it dies.
    const a = await node("node-a", victim.url, database);
    expect(a.bus.cluster!.connection.server()).toBe(`127.0.0.1:${victim.port}`);

    await register(b.bus, "test://worker", "test://boss");
    const worker = await rawConnect(a.bus, "test://worker");
    worker.socket.on("message", (data) => worker.ack((JSON.parse(frameText(data)) as MessageEnvelope).message_id));
    const workflowId = b.bus.sessionManager.createSession("test://boss", [], [{ name: "plan", required_agents: [] }]);
    await b.bus.sessionManager.whenDurable();
    const sent: string[] = [];
    for (let n = 0; n < 10; n += 1) {
      const message = envelope("test://boss", "test://worker", { message_type: "status_update" });
      sent.push(message.message_id as string);
      await sendUntilAccepted(b.bus, message);
    }
    await until(() => worker.frames.length >= 10, 10_000);

    await victim.halt("SIGKILL");
    const killedAt = performance.now();
    // Through both nodes, as clients of a load balancer would send: each accepted once the stream has a leader again.
    for (let n = 0; n < 10; n += 1) {
      const message = envelope("test://boss", "test://worker", { message_type: "status_update" });
      sent.push(message.message_id as string);
      await sendUntilAccepted(n % 2 === 0 ? a.bus : b.bus, message);
    }
    const acceptedAgainMs = performance.now() - killedAt;
    await until(() => new Set(worker.frames.map((frame) => frame.message_id)).size === 20, 20_000);
    expect([...new Set(worker.frames.map((frame) => frame.message_id as string))].sort()).toEqual([...sent].sort());
    const newLeader = (await manager.streams.info(STREAM)).cluster?.leader;
    expect(newLeader).toBeDefined();
    expect(newLeader).not.toBe(victim.name);

    // node-a lost its server and said so, then went on through another; neither node lost its lease, their renewals
    // asked again until the bucket's new leader answered.
    expect(a.events.filter((event) => event.type.startsWith("cluster.nats_"))).toMatchObject([
      { type: "cluster.nats_disconnected", node: "node-a", server: `127.0.0.1:${victim.port}` },
      { type: "cluster.nats_reconnected", node: "node-a" },
    ]);
    expect(a.bus.cluster!.connection.server()).not.toBe(`127.0.0.1:${victim.port}`);
    for (const each of [a, b]) expect(each.events.filter((event) => event.type === "cluster.lease_lost")).toEqual([]);

    // Leases work on the two servers left: a new one is taken once the bucket's new leader answers (until then a
    // write is TRANSPORT), then node-b leaves, releasing its own, and node-a takes its workflow over at its next scan.
    const probe = await takeLease(a.bus, "test:probe", 20_000);
    expect(probe).toMatchObject({ resource: "test:probe", holder: "node-a" });
    const leaseAgainMs = performance.now() - killedAt;
    await b.bus.stop();
    const leftAt = performance.now();
    // At its next scan (every half lease time), or the one after when a scan was under way as node-b left.
    await until(() => a.events.some((event) => event.type === "cluster.takeover"), LEASE_MS);
    const takenOverMs = performance.now() - leftAt;
    expect(a.bus.sessionManager.runs(workflowId)).toBe(true);
    expect(a.events.filter((event) => event.type === "cluster.takeover")).toMatchObject([{ node: "node-a", fromNode: "node-b", workflows: 1 }]);
    if (process.env["TROUPE_REPORT_REPLICAS"] !== undefined) {
      process.stdout.write(
        `replicas: killed ${victim.name} (the stream's leader); 10 messages accepted again within ${Math.round(acceptedAgainMs)} ms; ` +
          `a new lease taken ${Math.round(leaseAgainMs)} ms after the kill; ` +
          `new leader ${newLeader}; node-b taken over ${Math.round(takenOverMs)} ms after it left\n`,
      );
    }
  }, 60_000);
});
