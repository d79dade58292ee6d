/**
 * Leases on a real NATS JetStream bucket: nodes are lease tables on connections of their own, each with a clock
 * the test moves, so that expiry is decided without waiting.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LeaseTable } from "../../src/cluster/leases.js";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { BridgeError } from "../../src/errors.js";
import { startNats, type NatsServer } from "../support/nats-server.js";

const LEASE_MS = 10_000;
let server: NatsServer;
let buckets = 0;
const connections: ClusterConnection[] = [];

beforeAll(async () => {
  server = await startNats();
});

afterAll(async () => {
  await server?.stop();
});

afterEach(async () => {
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
});

/** A node: its own connection, lease table and clock, on `bucket`. */
async function node(nodeId: string, bucket: string, url = server.url) {
  const connection = await connectNats({ url, name: nodeId, requestTimeoutMs: 1_000 });
  connections.push(connection);
  let now = 1_000_000;
  const leases = await LeaseTable.open(connection, { nodeId, leaseMs: LEASE_MS, bucket, clock: { now: () => now } });
  return { leases, connection, advance: (ms: number) => (now += ms), now: () => now };
}

/** Resolves once the connection is up (at once if it is). */
async function connectedAgain(connection: ClusterConnection): Promise<void> {
  if (connection.state() === "connected") return;
  await new Promise<void>((resolve) => {
    const stop = connection.onStateChange((state) => {
      if (state !== "connected") return;
      stop();
      resolve();
    });
  });
}

function freshBucket(): string {
  return `leases_${++buckets}`;
}

describe("leases on JetStream", () => {
  it("gives a free resource to the node that asks, and to no other while it is held", async () => {
    const bucket = freshBucket();
    const [a, b] = await Promise.all([node("node-a", bucket), node("node-b", bucket)]);
    const lease = await a.leases.acquire("workflow:sess_1");
    expect(lease).toMatchObject({ resource: "workflow:sess_1", holder: "node-a", validUntil: a.now() + LEASE_MS });
    expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
    b.advance(LEASE_MS - 1);
    expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
    expect(await b.leases.holderOf("workflow:sess_1")).toEqual({ holder: "node-a", token: lease!.token });
    expect(await b.leases.acquire("workflow:sess_2")).toMatchObject({ holder: "node-b" });
  });

  it("gives a resource many nodes ask for at once to exactly one of them", async () => {
    const bucket = freshBucket();
    const nodes = await Promise.all(Array.from({ length: 6 }, (_, index) => node(`node-${index}`, bucket)));
    for (let round = 0; round < 5; round++) {
      const leases = await Promise.all(nodes.map((each) => each.leases.acquire(`contested-${round}`)));
      expect(leases.filter((lease) => lease !== undefined)).toHaveLength(1);
    }
  });

  it("keeps a lease its holder renews: the same tenure, and no other node takes it however long it watches", async () => {
    const bucket = freshBucket();
    const [a, b] = await Promise.all([node("node-a", bucket), node("node-b", bucket)]);
    let lease = (await a.leases.acquire("workflow:sess_1"))!;
    const { token } = lease;
    for (let renewal = 0; renewal < 5; renewal++) {
      expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
      a.advance(LEASE_MS / 2);
      b.advance(LEASE_MS / 2);
      lease = (await a.leases.renew(lease))!;
      expect(lease).toMatchObject({ token, validUntil: a.now() + LEASE_MS });
    }
    b.advance(LEASE_MS);
    expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
  });

  it("lets another node take over a lease not renewed for a lease time, with a greater token; the old holder's renewal then fails", async () => {
    const bucket = freshBucket();
    const [a, b] = await Promise.all([node("node-a", bucket), node("node-b", bucket)]);
    const first = (await a.leases.acquire("workflow:sess_1"))!;
    expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
    b.advance(LEASE_MS);
    const second = await b.leases.acquire("workflow:sess_1");
    expect(second).toMatchObject({ holder: "node-b" });
    expect(second!.token).toBeGreaterThan(first.token);
    expect(await a.leases.renew(first)).toBeUndefined();
    expect(await a.leases.holderOf("workflow:sess_1")).toEqual({ holder: "node-b", token: second!.token });
    // Releasing a lease it lost leaves the new holder's alone.
    await a.leases.release(first);
    expect(await a.leases.holderOf("workflow:sess_1")).toEqual({ holder: "node-b", token: second!.token });
  });

  it("frees a released lease at once for the next node", async () => {
    const bucket = freshBucket();
    const [a, b] = await Promise.all([node("node-a", bucket), node("node-b", bucket)]);
    const lease = (await a.leases.acquire("workflow:sess_1"))!;
    expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
    await a.leases.release(lease);
    expect(await b.leases.holderOf("workflow:sess_1")).toBeUndefined();
    const next = await b.leases.acquire("workflow:sess_1");
    expect(next).toMatchObject({ holder: "node-b" });
    expect(next!.token).toBeGreaterThan(lease.token);
  });

  it("keeps leases across a crash of the NATS server", async () => {
    const own = await startNats();
    try {
      const bucket = freshBucket();
      const a = await node("node-a", bucket, own.url);
      const lease = (await a.leases.acquire("workflow:sess_1"))!;
      await own.halt("SIGKILL");
      const renewal = await a.leases.renew(lease).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(renewal).toBeInstanceOf(BridgeError);
      expect((renewal as BridgeError).type).toBe("TRANSPORT");
      await own.start();
      await connectedAgain(a.connection);
      const b = await node("node-b", bucket, own.url);
      expect(await b.leases.holderOf("workflow:sess_1")).toEqual({ holder: "node-a", token: lease.token });
      expect(await a.leases.renew(lease)).toMatchObject({ token: lease.token });
    } finally {
      await own.stop();
    }
  });

  it("is CONFIG without a node id or with a bad lease time", async () => {
    const connection = await connectNats({ url: server.url });
    connections.push(connection);
    for (const options of [
      { nodeId: "", leaseMs: 1_000 },
      { nodeId: "n", leaseMs: 0 },
    ]) {
      const error = await LeaseTable.open(connection, options).catch((caught: unknown) => caught);
      expect((error as BridgeError).type).toBe("CONFIG");
    }
  });
});
