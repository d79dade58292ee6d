/**
 * Fencing across the two engines: a node's lease (NATS JetStream) fences its writes to the shared store
 * (PostgreSQL), so that a node that lost its lease while it was not looking (paused, cut off) cannot write over
 * the node that took the resource over.
 */
import { describe, expect, it } from "vitest";
import { LeaseTable } from "../../src/cluster/leases.js";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { openPostgresStore, type Store } from "../../src/index.js";
import { useEngines } from "../support/engines.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";

const LEASE_MS = 5_000;
let nats: NatsServer;
let postgres: PostgresServer;

useEngines((engines) => ({ nats, postgres } = engines));

describe("a lease fences its holder's writes", () => {
  it("drops the writes of a node that lost its lease, keeps the new holder's, and tells the old one", async () => {
    const connections: ClusterConnection[] = [];
    const stores: Store[] = [];
    try {
      const nodes = await Promise.all(
        ["node-a", "node-b"].map(async (nodeId) => {
          const connection = await connectNats({ url: nats.url, name: nodeId });
          connections.push(connection);
          const store = await openPostgresStore({ url: postgres.url(), exclusive: false });
          stores.push(store);
          let now = 0;
          const leases = await LeaseTable.open(connection, { nodeId, leaseMs: LEASE_MS, clock: { now: () => now } });
          return { leases, store, advance: (ms: number) => (now += ms) };
        }),
      );
      const [a, b] = nodes as [(typeof nodes)[0], (typeof nodes)[0]];
      const lost: string[] = [];

      const leaseA = (await a.leases.acquire("workflow:sess_1"))!;
      a.store.put("workflows", "sess_1", { step: "design", by: "node-a" }, { fence: { ...leaseA, onRefused: () => lost.push("node-a") } });
      await a.store.flush();

      // node-a stops renewing (a long pause); node-b watches the lease for a lease time and takes it over.
      expect(await b.leases.acquire("workflow:sess_1")).toBeUndefined();
      b.advance(LEASE_MS);
      const leaseB = (await b.leases.acquire("workflow:sess_1"))!;
      b.store.put("workflows", "sess_1", { step: "implementation", by: "node-b" }, { fence: leaseB });
      await b.store.flush();

      // node-a wakes up still believing it holds the workflow, and writes: the store drops it.
      a.store.put("workflows", "sess_1", { step: "review", by: "node-a, too late" }, { fence: { ...leaseA, onRefused: () => lost.push("node-a") } });
      await a.store.flush();
      expect(lost).toEqual(["node-a"]);
      expect(await a.store.get("workflows", "sess_1")).toEqual({ step: "implementation", by: "node-b" });
      expect(await a.leases.renew(leaseA)).toBeUndefined();
    } finally {
      await Promise.allSettled([...stores.map((store) => store.close()), ...connections.map((connection) => connection.close())]);
    }
  });
});
