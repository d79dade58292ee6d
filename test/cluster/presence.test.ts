/**
 * The presence bucket (src/cluster/presence.ts) on a real NATS JetStream: each node writes where its agents are
 * connected and removes only what it wrote; every node keeps the bucket in memory through a watch and answers
 * `where` from it without a read (src/cluster/presence-view.ts); a dead node's entries are cleared by whoever takes
 * it over; a node cut from NATS says so at once, and catches up with what it owes once NATS is back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { PresenceTable } from "../../src/cluster/presence.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import { waitForAsync } from "../support/serve-process.js";

let server: NatsServer;
let buckets = 0;
const connections: ClusterConnection[] = [];
const tables: PresenceTable[] = [];

beforeAll(async () => {
  server = await startNats();
});

afterAll(async () => {
  await server?.stop();
});

afterEach(async () => {
  const closing = tables.splice(0);
  await Promise.allSettled(closing.map((table) => table.settle()));
  for (const table of closing) table.close();
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
});

/** A node's presence table on a connection of its own; `now` is its clock. */
async function node(
  nodeId: string,
  bucket: string,
  url = server.url,
  now = () => 1_000,
  markerKeepMs?: number,
): Promise<{ presence: PresenceTable; connection: ClusterConnection }> {
  const connection = await connectNats({ url, name: nodeId, requestTimeoutMs: 1_000 });
  connections.push(connection);
  const presence = await PresenceTable.open(connection, { nodeId, bucket, clock: { now }, ...(markerKeepMs === undefined ? {} : { markerKeepMs }) });
  tables.push(presence);
  return { presence, connection };
}

/** `find`'s answer and how many messages the node sent NATS meanwhile (a read of the bucket is one). */
async function counted<T>(connection: ClusterConnection, find: () => Promise<T>): Promise<{ found: T; sent: number }> {
  const before = connection.nats.stats().outMsgs;
  const found = await find();
  return { found, sent: connection.nats.stats().outMsgs - before };
}

/** How many messages the bucket's stream holds (entries, and delete markers not yet purged). */
async function storedMessages(connection: ClusterConnection, bucket: string): Promise<number> {
  return (await connection.manager.streams.info(`KV_${bucket}`)).state.messages;
}

function newBucket(): string {
  buckets += 1;
  return `presence_${process.pid}_${buckets}`;
}

/** Where `agentId` is, as node `reader` reads the bucket. */
async function whereIs(reader: PresenceTable, agentId: string): Promise<string | undefined> {
  return (await reader.lookup([agentId])).get(agentId)?.node;
}

describe("the presence bucket", () => {
  it("names the node an agent connected to, with when, and forgets it once it left, leaving nothing behind a while later", async () => {
    const bucket = newBucket();
    const a = await node("node-a", bucket, server.url, () => 1_234, 50);
    const b = await node("node-b", bucket);
    a.presence.arrived("test://worker");
    await a.presence.settle();
    expect(await b.presence.lookup(["test://worker", "test://nobody"])).toEqual(new Map([["test://worker", { node: "node-a", since: 1_234 }]]));
    await waitForAsync(async () => (await b.presence.where(["test://worker"])).has("test://worker"));
    expect(await b.presence.where(["test://worker", "test://nobody"])).toEqual(new Map([["test://worker", { node: "node-a", since: 1_234 }]]));
    a.presence.left("test://worker");
    await a.presence.settle();
    expect(await b.presence.lookup(["test://worker"])).toEqual(new Map());
    // The delete marker tells every node's watch, then goes: no message per agent that ever connected.
    await waitForAsync(async () => !(await b.presence.where(["test://worker"])).has("test://worker"));
    await waitForAsync(async () => (await storedMessages(a.connection, bucket)) === 0);
  });

  it("answers from every node's memory, without a read, where the agents of the other nodes are, as they come, move and go", async () => {
    const bucket = newBucket();
    const a = await node("node-a", bucket);
    const agents = Array.from({ length: 150 }, (_, index) => `test://agent-${index}`);
    for (const agentId of agents.slice(0, 100)) a.presence.arrived(agentId);
    await a.presence.settle();
    // Node B opens after those were written (its first read) and hears the rest (its watch).
    const b = await node("node-b", bucket);
    const c = await node("node-c", bucket);
    expect(b.presence.watching()).toBe(true);
    for (const agentId of agents.slice(100)) a.presence.arrived(agentId);
    c.presence.arrived(agents[0]!);
    await Promise.all([a.presence.settle(), c.presence.settle()]);
    a.presence.left(agents[0]!);
    a.presence.left(agents[1]!);
    await a.presence.settle();
    const expected = new Map(agents.slice(2).map((agentId) => [agentId, { node: "node-a", since: 1_000 }]));
    expected.set(agents[0]!, { node: "node-c", since: 1_000 });
    await waitForAsync(async () => (await b.presence.where(agents)).size === expected.size && !(await b.presence.where([agents[1]!])).has(agents[1]!));
    const fromMemory = await counted(b.connection, () => b.presence.where(agents));
    expect(fromMemory).toEqual({ found: expected, sent: 0 });
    // The bucket says the same, at a read per agent.
    const read = await counted(b.connection, () => b.presence.lookup(agents));
    expect(read.found).toEqual(expected);
    expect(read.sent).toBeGreaterThanOrEqual(agents.length);
  });

  it("keeps the entry of the node an agent moved to when the node it left says goodbye late", async () => {
    const bucket = newBucket();
    const [a, b] = [await node("node-a", bucket), await node("node-b", bucket)];
    a.presence.arrived("test://worker");
    await a.presence.settle();
    b.presence.arrived("test://worker");
    await b.presence.settle();
    a.presence.left("test://worker");
    await a.presence.settle();
    expect(await whereIs(a.presence, "test://worker")).toBe("node-b");
  });

  it("clears a dead node's entries for the node that takes it over, and leaves the others'", async () => {
    const bucket = newBucket();
    const [dead, live, other] = [await node("node-dead", bucket), await node("node-live", bucket), await node("node-other", bucket)];
    const everyone = ["test://one", "test://two", "test://three", "test://four"];
    for (const agentId of everyone.slice(0, 3)) dead.presence.arrived(agentId);
    live.presence.arrived("test://four");
    await Promise.all([dead.presence.settle(), live.presence.settle()]);
    await waitForAsync(async () => (await other.presence.where(everyone)).size === 4);
    expect(await live.presence.clearNode("node-dead")).toBe(3);
    const left = [["test://four", { node: "node-live", since: 1_000 }]];
    expect([...(await live.presence.lookup(everyone)).entries()]).toEqual(left);
    // Every node's memory hears it.
    await waitForAsync(async () => (await other.presence.where(everyone)).size === 1);
    expect([...(await other.presence.where(everyone)).entries()]).toEqual(left);
  });

  it("purges at a takeover the delete markers a dead node wrote and did not live to purge", async () => {
    const bucket = newBucket();
    const [dead, live] = [await node("node-dead", bucket, server.url, () => 1_000, 3_600_000), await node("node-live", bucket, server.url, () => 1_000, 50)];
    dead.presence.arrived("test://gone");
    await dead.presence.settle();
    dead.presence.left("test://gone");
    await dead.presence.settle();
    expect(await storedMessages(live.connection, bucket)).toBe(1);
    // The marker is older than the survivor's keep time (50 ms) after a while: its takeover purges it.
    await waitForAsync(async () => {
      await live.presence.clearNode("node-dead");
      return (await storedMessages(live.connection, bucket)) === 0;
    });
  });

  it("removes, when it next reads it, an entry of its own for an agent that is not connected to it", async () => {
    const bucket = newBucket();
    const before = await node("node-a", bucket);
    before.presence.arrived("test://worker");
    await before.presence.settle();
    // The same node restarted (its previous incarnation killed with the agent connected): the entry is stale.
    const after = await node("node-a", bucket);
    expect(await after.presence.lookup(["test://worker"])).toEqual(new Map());
    await after.presence.settle();
    const other = await node("node-b", bucket);
    expect(await other.presence.lookup(["test://worker"])).toEqual(new Map());
  });

  it("refuses a lookup at once while cut from NATS, and removes what it owes once NATS is back", async () => {
    const own = await startNats();
    try {
      const bucket = newBucket();
      const a = await node("node-a", bucket, own.url);
      a.presence.arrived("test://gone");
      a.presence.arrived("test://staying");
      await a.presence.settle();
      const b = await node("node-b", bucket, own.url);
      await own.halt();
      await waitForAsync(async () => a.connection.state() === "disconnected", 10_000);
      await expect(a.presence.lookup(["test://gone"])).rejects.toMatchObject({ type: "TRANSPORT", details: { unavailable: true } });
      // Its memory of the bucket is no longer current: it reads, and cannot.
      await expect(a.presence.where(["test://gone"])).rejects.toMatchObject({ type: "TRANSPORT", details: { unavailable: true } });
      // It leaves while NATS is away: its entry cannot go now.
      a.presence.left("test://gone");
      await a.presence.settle();
      await own.start();
      await waitForAsync(async () => a.connection.state() === "connected", 15_000);
      await waitForAsync(async () => !(await a.presence.lookup(["test://gone"])).has("test://gone"), 10_000);
      expect(await whereIs(a.presence, "test://staying")).toBe("node-a");
      // Node B's memory, begun again once NATS was back, says the same without a read.
      await waitForAsync(async () => b.presence.watching() && !(await b.presence.where(["test://gone"])).has("test://gone"), 10_000);
      expect(await counted(b.connection, () => b.presence.where(["test://gone", "test://staying"]))).toEqual({
        found: new Map([["test://staying", { node: "node-a", since: 1_000 }]]),
        sent: 0,
      });
    } finally {
      await own.stop();
    }
  }, 40_000);

  it("writes the entry of an agent that connected while NATS was away once NATS is back", async () => {
    const own = await startNats();
    try {
      const bucket = newBucket();
      const a = await node("node-a", bucket, own.url);
      await own.halt();
      await waitForAsync(async () => a.connection.state() === "disconnected", 10_000);
      a.presence.arrived("test://late");
      await a.presence.settle();
      await own.start();
      await waitForAsync(async () => a.connection.state() === "connected", 15_000);
      await waitForAsync(async () => (await a.presence.lookup(["test://late"])).get("test://late")?.node === "node-a", 10_000);
    } finally {
      await own.stop();
    }
  }, 40_000);

  it("writes again the entries of its agents when told to (after a node that took it over cleared them)", async () => {
    const bucket = newBucket();
    const [a, b] = [await node("node-a", bucket), await node("node-b", bucket)];
    a.presence.arrived("test://worker");
    await a.presence.settle();
    await b.presence.clearNode("node-a");
    expect(await whereIs(b.presence, "test://worker")).toBeUndefined();
    a.presence.reannounce();
    await a.presence.settle();
    expect(await whereIs(b.presence, "test://worker")).toBe("node-a");
  });
});
