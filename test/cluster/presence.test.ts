/**
 * The presence bucket (src/cluster/presence.ts) on a real NATS JetStream: each node writes where its agents are
 * connected and removes only what it wrote; a dead node's entries are cleared by whoever takes it over; a node
 * cut from NATS says so at once, and catches up with what it owes once NATS is back.
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
  await Promise.allSettled(tables.splice(0).map((table) => table.settle()));
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
});

/** A node's presence table on a connection of its own; `now` is its clock. */
async function node(nodeId: string, bucket: string, url = server.url, now = () => 1_000): Promise<{ presence: PresenceTable; connection: ClusterConnection }> {
  const connection = await connectNats({ url, name: nodeId, requestTimeoutMs: 1_000 });
  connections.push(connection);
  const presence = await PresenceTable.open(connection, { nodeId, bucket, clock: { now } });
  tables.push(presence);
  return { presence, connection };
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
  it("names the node an agent connected to, with when, and forgets it once it left", async () => {
    const bucket = newBucket();
    const a = await node("node-a", bucket, server.url, () => 1_234);
    const b = await node("node-b", bucket);
    a.presence.arrived("test://worker");
    await a.presence.settle();
    expect(await b.presence.lookup(["test://worker", "test://nobody"])).toEqual(new Map([["test://worker", { node: "node-a", since: 1_234 }]]));
    a.presence.left("test://worker");
    await a.presence.settle();
    expect(await b.presence.lookup(["test://worker"])).toEqual(new Map());
    // Nothing is left behind in the bucket: no delete marker per agent that ever connected.
    const info = await a.connection.manager.streams.info(`KV_${bucket}`);
    expect(info.state.messages).toBe(0);
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
    const [dead, live] = [await node("node-dead", bucket), await node("node-live", bucket)];
    for (const agentId of ["test://one", "test://two", "test://three"]) dead.presence.arrived(agentId);
    live.presence.arrived("test://four");
    await Promise.all([dead.presence.settle(), live.presence.settle()]);
    expect(await live.presence.clearNode("node-dead")).toBe(3);
    const found = await live.presence.lookup(["test://one", "test://two", "test://three", "test://four"]);
    expect([...found.entries()]).toEqual([["test://four", { node: "node-live", since: 1_000 }]]);
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
      await own.halt();
      await waitForAsync(async () => a.connection.state() === "disconnected", 10_000);
      await expect(a.presence.lookup(["test://gone"])).rejects.toMatchObject({ type: "TRANSPORT", details: { unavailable: true } });
      // It leaves while NATS is away: its entry cannot go now.
      a.presence.left("test://gone");
      await a.presence.settle();
      await own.start();
      await waitForAsync(async () => a.connection.state() === "connected", 15_000);
      await waitForAsync(async () => !(await a.presence.lookup(["test://gone"])).has("test://gone"), 10_000);
      expect(await whereIs(a.presence, "test://staying")).toBe("node-a");
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
