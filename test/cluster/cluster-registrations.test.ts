/**
 * Registrations across a cluster (docs/cluster.md, "Registrations on every node"), on a real NATS JetStream and
 * PostgreSQL: a deregistration or a re-registration on one node reaches every node that holds the registration at
 * once (a nudge on NATS, then a read of the shared store), without a restart; a node that missed the nudge reads
 * the registration again at its first use after a lease time, or at once for its connected agents when its NATS
 * connection comes back. The nodes' lease time is long (60 s) wherever a test shows the nudge at work, so that
 * no re-read after a lease time can be what it sees.
 */
import { describe, expect, it } from "vitest";
import { CommunicationBus, openPostgresStore, type Store } from "../../src/index.js";
import { CLOSE_CODES } from "../../src/protocol/frames.js";
import { call, envelope, rawConnect, startBus, TEST_KEY, upgradeStatus } from "../bus/support.js";
import { useEngines } from "../support/engines.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { waitForAsync } from "../support/serve-process.js";

const LONG_LEASE_MS = 60_000;
const WORKER = "test://worker";
const BOSS = "test://boss";
const LEAD = "test://lead";

let nats: NatsServer;
let postgres: PostgresServer;
let clusters = 0;

useEngines((engines) => ({ nats, postgres } = engines));

interface TestCluster {
  database: string;
  name: string;
}

async function newCluster(): Promise<TestCluster> {
  clusters += 1;
  const name = `registrations_${clusters}_${process.pid}`;
  return { database: await postgres.createDatabase(name), name };
}

/** A node of the cluster with agent tokens on (`agentAuth: "token"`), as off loopback. */
function node(
  cluster: TestCluster,
  nodeId: string,
  { leaseMs = LONG_LEASE_MS, url = nats.url, wrap = (store) => store }: { leaseMs?: number; url?: string; wrap?: (store: Store) => Store } = {},
): Promise<CommunicationBus> {
  return startBus({
    agentAuth: "token",
    store: async () => wrap(await openPostgresStore({ url: cluster.database, exclusive: false })),
    cluster: {
      url,
      nodeId,
      leaseMs,
      stream: `REGISTRATIONS_${cluster.name}`,
      subjectPrefix: `troupe.${cluster.name}.messages`,
      leaseBucket: `leases_${cluster.name}`,
      presenceBucket: `presence_${cluster.name}`,
    },
  });
}

/** Registers an agent (with `token` when it is registered already) and answers its token, if it got a new one. */
async function register(bus: CommunicationBus, agentId: string, descriptor: Record<string, unknown> = {}, token?: string): Promise<string | undefined> {
  const answer = await call(
    bus,
    "POST",
    "/agents/register",
    { agent_descriptor: { agent_id: agentId, capabilities: [], metadata: {}, ...descriptor } },
    token === undefined ? {} : { "x-agent-token": token },
  );
  if (answer.status !== 201) throw new Error(`register ${agentId}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.agent_token as string | undefined;
}

function agentHeaders(token: string): Record<string, string> {
  return { "x-agent-api-key": TEST_KEY, "x-agent-token": token };
}

function sendAs(bus: CommunicationBus, from: string, token: string | undefined, to = WORKER) {
  return call(bus, "POST", "/messages/send", envelope(from, to, { message_type: "status_update" }), token === undefined ? {} : { "x-agent-token": token });
}

async function listed(bus: CommunicationBus, agentId: string): Promise<Record<string, unknown> | undefined> {
  const { body } = await call(bus, "GET", "/agents");
  return (body.agents as Array<Record<string, unknown>>).find((agent) => agent.agent_id === agentId);
}

const query = (agentId: string): string => `?agent_id=${encodeURIComponent(agentId)}`;

describe("registrations across a cluster", () => {
  it("refuses an agent deregistered on node A on node B at once: its socket there closed, messages to it 404, its token no longer opens a socket", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    const token = (await register(a, WORKER)) as string;
    const bossToken = (await register(a, BOSS)) as string;
    // B meets the worker, registered on A: its socket opens there with the token A gave, messages to it are taken.
    const there = await rawConnect(b, WORKER, agentHeaders(token));
    expect((await sendAs(b, BOSS, bossToken)).status).toBe(202);

    const deleted = await call(a, "DELETE", `/agents/${encodeURIComponent(WORKER)}`, undefined, { "x-agent-token": token });
    expect(deleted.status).toBe(200);
    // B was told: it closes the worker's socket as one node would (1008, deregistered)...
    expect(await there.closed).toMatchObject({ code: CLOSE_CODES.policy, reason: expect.stringContaining("deregistered") });
    // ...refuses messages to it as one node would...
    const refused = await sendAs(b, BOSS, bossToken);
    expect(refused.status).toBe(404);
    expect(refused.body.error).toMatchObject({ type: "NOT_FOUND", details: { agentId: WORKER } });
    // ...takes its token no more, and lists it no more.
    expect(await upgradeStatus(b, query(WORKER), agentHeaders(token))).toBe(401);
    expect(await listed(b, WORKER)).toBeUndefined();

    // It registers again on B (nobody's token is asked for: it is gone); A, which deregistered it, takes the new token only.
    const fresh = (await register(b, WORKER)) as string;
    expect(fresh).not.toBe(token);
    expect(await upgradeStatus(a, query(WORKER), agentHeaders(token))).toBe(401);
    await rawConnect(a, WORKER, agentHeaders(fresh));
    expect((await sendAs(a, BOSS, bossToken)).status).toBe(202);
  }, 30_000);

  it("carries a re-registration on node A that changes the descriptor and the token to node B at once", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    const oldToken = (await register(a, WORKER, { capabilities: ["draft"] })) as string;
    const bossToken = (await register(a, BOSS)) as string;
    // B reads the worker's registration when a message to it comes there.
    expect((await sendAs(b, BOSS, bossToken)).status).toBe(202);
    expect(await listed(b, WORKER)).toMatchObject({ capabilities: ["draft"] });

    const newToken = "a-token-the-agent-chose-itself";
    expect(await register(a, WORKER, { capabilities: ["review"], agent_token: newToken }, oldToken)).toBe(newToken);
    await waitForAsync(async () => (await listed(b, WORKER))?.["capabilities"]?.toString() === "review", 5_000);
    expect(await upgradeStatus(b, query(WORKER), agentHeaders(oldToken))).toBe(401);
    await rawConnect(b, WORKER, agentHeaders(newToken));
  }, 30_000);

  it("checks on node B the token of an agent registered on node A that B never met: to send as it, re-register it, deregister it", async () => {
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    const bossToken = (await register(a, BOSS)) as string;
    await register(a, WORKER);
    await register(a, LEAD);
    // Without its token, the shared key alone can neither take an agent over on B, nor deregister it, nor act as it
    // (each on an agent B meets there for the first time).
    expect((await call(b, "POST", "/agents/register", { agent_descriptor: { agent_id: BOSS, capabilities: [], metadata: {} } })).status).toBe(403);
    expect((await call(b, "DELETE", `/agents/${encodeURIComponent(WORKER)}`)).status).toBe(403);
    expect((await sendAs(b, LEAD, undefined)).status).toBe(403);
    expect((await sendAs(b, BOSS, bossToken)).status).toBe(202);
    // With it, B deregisters it (A registered it): A, told, refuses its socket.
    expect((await call(b, "DELETE", `/agents/${encodeURIComponent(BOSS)}`, undefined, { "x-agent-token": bossToken })).status).toBe(200);
    await waitForAsync(async () => (await listed(a, BOSS)) === undefined, 5_000);
    expect(await upgradeStatus(a, query(BOSS), agentHeaders(bossToken))).toBe(401);
  }, 30_000);

  it("reads a registration again at its first use after a lease time when it missed the change (a nudge lost)", async () => {
    const leaseMs = 2_000;
    const cluster = await newCluster();
    const [a, b] = [await node(cluster, "node-a", { leaseMs }), await node(cluster, "node-b", { leaseMs })];
    await register(a, WORKER);
    const bossToken = (await register(a, BOSS)) as string;
    expect((await sendAs(b, BOSS, bossToken)).status).toBe(202);
    // The registration goes from the store and no node is told, as when a nudge is lost.
    await postgres.query("DELETE FROM troupe.records WHERE collection = 'agents' AND id = $1", [WORKER], cluster.name);
    let refused: { status: number; body: any } | undefined;
    for (let attempt = 0; attempt < 50 && refused === undefined; attempt += 1) {
      const answer = await sendAs(b, BOSS, bossToken);
      if (answer.status === 404) refused = answer;
      else await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(refused?.body.error).toMatchObject({ type: "NOT_FOUND", details: { agentId: WORKER } });
  }, 30_000);

  it("reads no registration for an upgrade it refuses anyway: without the key, or with two agent ids", async () => {
    const cluster = await newCluster();
    const reads: string[] = [];
    // The node's store, its reads of registrations counted.
    const counted = (store: Store): Store =>
      new Proxy(store, {
        get(target, property) {
          if (property === "get") {
            return (collection: string, id: string) => {
              if (collection === "agents") reads.push(id);
              return target.get(collection as never, id);
            };
          }
          const value: unknown = Reflect.get(target, property, target);
          return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
    const a = await node(cluster, "node-a", { wrap: counted });
    expect(await upgradeStatus(a, query(WORKER), {})).toBe(401);
    expect(await upgradeStatus(a, `${query(WORKER)}&agent_id=${encodeURIComponent(BOSS)}`)).toBe(400);
    expect(reads).toEqual([]);
    // With the key, an agent the node does not know is looked up first (not registered: no token opens its socket).
    expect(await upgradeStatus(a, query(WORKER))).toBe(401);
    expect(reads).toEqual([WORKER]);
  }, 30_000);

  it("trusts for a lease time the registrations a node read as it started: their first use reads none again", async () => {
    const cluster = await newCluster();
    const a = await node(cluster, "node-a");
    await register(a, WORKER);
    const bossToken = (await register(a, BOSS)) as string;
    const b = await node(cluster, "node-b");
    // Gone from the store behind every node's back: node B, which read it at its start, does not look again yet.
    await postgres.query("DELETE FROM troupe.records WHERE collection = 'agents' AND id = $1", [WORKER], cluster.name);
    expect((await sendAs(b, BOSS, bossToken)).status).toBe(202);
    // A node that starts now reads the store as it is.
    const c = await node(cluster, "node-c");
    expect((await sendAs(c, BOSS, bossToken)).body.error).toMatchObject({ type: "NOT_FOUND", details: { agentId: WORKER } });
  }, 30_000);

  it("reads again, once its NATS connection is back, the registrations of the agents connected to it", async () => {
    const own = await startNats();
    try {
      const cluster = await newCluster();
      const [a, b] = [await node(cluster, "node-a", { url: own.url }), await node(cluster, "node-b", { url: own.url })];
      const token = (await register(a, WORKER)) as string;
      const there = await rawConnect(b, WORKER, agentHeaders(token));
      await own.halt();
      await waitForAsync(async () => b.cluster!.state() === "disconnected", 10_000);
      // Deregistered while B cannot hear of it (behind every node's back, so that no nudge waits to be sent).
      await postgres.query("DELETE FROM troupe.records WHERE collection = 'agents' AND id = $1", [WORKER], cluster.name);
      await own.start();
      expect(await there.closed).toMatchObject({ code: CLOSE_CODES.policy });
      expect(await listed(b, WORKER)).toBeUndefined();
    } finally {
      await own.stop();
    }
  }, 40_000);
});
