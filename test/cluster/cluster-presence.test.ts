/**
 * `GET /agents` across a cluster (docs/cluster.md, "Presence"), on a real NATS JetStream and PostgreSQL: any node
 * shows each agent online or offline cluster-wide and the node its socket is on; an agent that leaves is offline
 * everywhere; the agents of a node that dies (cut from NATS, or killed with SIGKILL) drop out once a survivor takes
 * it over, about a lease time; a node that cannot reach NATS answers with its own view and says so.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { CommunicationBus, openPostgresStore } from "../../src/index.js";
import { call, rawConnect, register, startBus } from "../bus/support.js";
import { useEngines } from "../support/engines.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { waitForAsync } from "../support/serve-process.js";

const LEASE_MS = 1_000;
const WORKER = "test://worker";

let nats: NatsServer;
let postgres: PostgresServer;
let clusters = 0;
const children: ChildProcess[] = [];

useEngines((engines) => ({ nats, postgres } = engines));

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    child.kill("SIGKILL");
    await once(child, "exit");
  }
});

/** A cluster of its own for each test: its PostgreSQL schema, stream and buckets. */
interface TestCluster {
  name: string;
}

function newCluster(): TestCluster {
  clusters += 1;
  return { name: `presence_${clusters}_${process.pid}` };
}

function node(cluster: TestCluster, nodeId: string, url = nats.url): Promise<CommunicationBus> {
  return startBus({
    store: () => openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.name }),
    cluster: {
      url,
      nodeId,
      leaseMs: LEASE_MS,
      stream: `STREAM_${cluster.name}`,
      subjectPrefix: `troupe.${cluster.name}.messages`,
      leaseBucket: `leases_${cluster.name}`,
      presenceBucket: `presence_${cluster.name}`,
    },
  });
}

/** A node in a child process (test/fixtures/cluster-node.ts), for the kill; its API key is its own. */
async function spawnNode(cluster: TestCluster, nodeId: string): Promise<{ child: ChildProcess; url: string; key: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/cluster-node.ts"], {
    cwd: fileURLToPath(new URL("../..", import.meta.url)),
    env: {
      ...process.env,
      CLUSTER_PG_URL: postgres.url(),
      CLUSTER_SCHEMA: cluster.name,
      CLUSTER_NATS_URL: nats.url,
      CLUSTER_NODE_ID: nodeId,
      CLUSTER_LEASE_MS: String(LEASE_MS),
      CLUSTER_BUCKET: `leases_${cluster.name}`,
      CLUSTER_PRESENCE_BUCKET: `presence_${cluster.name}`,
    },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  children.push(child);
  const [message] = (await once(child, "message")) as [{ ready?: boolean; url?: string }];
  expect(message).toMatchObject({ ready: true });
  return { child, url: message.url as string, key: "cluster-node-key" };
}

/** The page of `GET /agents` on `bus`, and the listing of `agentId` in it. */
async function agents(bus: CommunicationBus): Promise<{ presence: unknown; listing: (agentId: string) => Record<string, unknown> | undefined }> {
  const answer = await call(bus, "GET", "/agents");
  expect(answer.status).toBe(200);
  const listed = answer.body.agents as Array<Record<string, unknown>>;
  return { presence: answer.body.presence, listing: (agentId) => listed.find((agent) => agent.agent_id === agentId) };
}

describe("GET /agents across a cluster", () => {
  it("shows on every node an agent connected to node A online on node A, and offline on every node once it left", async () => {
    const cluster = newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    // Registered on A after B started: B hears of it, and lists it.
    await register(a, WORKER);
    const worker = await rawConnect(a, WORKER);
    await waitForAsync(async () => (await agents(b)).listing(WORKER)?.["online"] === true, 5_000);
    for (const bus of [a, b]) {
      const page = await agents(bus);
      expect(page.presence).toBe("cluster");
      expect(page.listing(WORKER)).toMatchObject({ online: true, status: "ready", node: "node-a", connected_at: expect.any(Number) });
    }

    worker.socket.close();
    await worker.closed;
    await waitForAsync(async () => (await agents(b)).listing(WORKER)?.["online"] === false, 5_000);
    for (const bus of [a, b]) expect((await agents(bus)).listing(WORKER)).toMatchObject({ online: false, status: "offline", node: null, connected_at: null });
  }, 30_000);

  it("lists on node B the agents connected to node A from its memory of the bucket, without a read per agent", async () => {
    const cluster = newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    const workers = Array.from({ length: 100 }, (_, index) => `test://worker-${index}`);
    await register(a, ...workers);
    for (const agentId of workers) await rawConnect(a, agentId);
    const onlineOn = async (bus: CommunicationBus): Promise<number> =>
      ((await call(bus, "GET", "/agents?limit=1000")).body.agents as Array<{ agent_id: string; online: boolean }>).filter(
        (agent) => agent.online && workers.includes(agent.agent_id),
      ).length;
    await waitForAsync(async () => (await onlineOn(b)) === workers.length, 10_000);
    const connection = b.cluster!.connection;
    const before = connection.nats.stats().outMsgs;
    const page = await call(b, "GET", "/agents?limit=1000");
    // A read of the bucket is a message to NATS: 100 before. What is left is the node's own traffic meanwhile (its lease).
    expect(connection.nats.stats().outMsgs - before).toBeLessThan(10);
    expect(page.body.presence).toBe("cluster");
    const listed = page.body.agents as Array<Record<string, unknown>>;
    for (const agentId of workers) expect(listed.find((agent) => agent.agent_id === agentId)).toMatchObject({ online: true, node: "node-a" });
  }, 60_000);

  it("follows an agent that moves from node A to node B, whatever the order of its arrival and its goodbye", async () => {
    const cluster = newCluster();
    const [a, b] = [await node(cluster, "node-a"), await node(cluster, "node-b")];
    await register(a, WORKER);
    const first = await rawConnect(a, WORKER);
    await waitForAsync(async () => (await agents(b)).listing(WORKER)?.["node"] === "node-a", 5_000);
    // It connects to B before its socket on A closes: A's goodbye must not take B's entry away.
    await rawConnect(b, WORKER);
    first.socket.close();
    await first.closed;
    await waitForAsync(async () => (await agents(a)).listing(WORKER)?.["node"] === "node-b", 5_000);
    await b.cluster!.presence.settle();
    await a.cluster!.presence.settle();
    expect((await agents(a)).listing(WORKER)).toMatchObject({ online: true, node: "node-b" });
  }, 30_000);

  it("drops the agents of a node cut from NATS from the others' view once a survivor took it over", async () => {
    const cluster = newCluster();
    const [a, c] = [await node(cluster, "node-a"), await node(cluster, "node-c")];
    await register(a, WORKER);
    await rawConnect(c, WORKER);
    await waitForAsync(async () => (await agents(a)).listing(WORKER)?.["node"] === "node-c", 5_000);
    const cutAt = performance.now();
    // C stops renewing its lease, as a partitioned node does for the others; its socket stays open, useless.
    await c.cluster!.close();
    await waitForAsync(async () => (await agents(a)).listing(WORKER)?.["online"] === false, 10 * LEASE_MS);
    const goneMs = Math.round(performance.now() - cutAt);
    report(`presence of a node cut from NATS gone after ${goneMs} ms (lease ${LEASE_MS} ms)`);
    // The failover's time: the lease, the renewal before the cut (a third of it), the scans (half of it each).
    expect(goneMs).toBeLessThan(3 * LEASE_MS);
  }, 30_000);

  it("drops the agents of a node killed with SIGKILL from the survivors' view within about the lease time", async () => {
    const cluster = newCluster();
    const a = await node(cluster, "node-a");
    await register(a, WORKER);
    const killed = await spawnNode(cluster, "node-k");
    await rawConnect({ url: killed.url }, WORKER, { "x-agent-api-key": killed.key });
    await waitForAsync(async () => (await agents(a)).listing(WORKER)?.["node"] === "node-k", 5_000);
    const killedAt = performance.now();
    killed.child.kill("SIGKILL");
    await once(killed.child, "exit");
    await waitForAsync(async () => (await agents(a)).listing(WORKER)?.["online"] === false, 10 * LEASE_MS);
    const goneMs = Math.round(performance.now() - killedAt);
    report(`presence of a SIGKILLed node gone after ${goneMs} ms (lease ${LEASE_MS} ms)`);
    expect(goneMs).toBeLessThan(3 * LEASE_MS);
    // The worker reconnects to a survivor, and shows there.
    await rawConnect(a, WORKER);
    expect((await agents(a)).listing(WORKER)).toMatchObject({ online: true, node: "node-a" });
  }, 30_000);

  it("answers with this node's own view, marked presence: node, while NATS is away", async () => {
    const own = await startNats();
    try {
      const cluster = newCluster();
      const [p, q] = [await node(cluster, "node-p", own.url), await node(cluster, "node-q", own.url)];
      await register(p, WORKER, "test://elsewhere");
      await rawConnect(p, WORKER);
      await rawConnect(q, "test://elsewhere");
      await waitForAsync(async () => (await agents(p)).listing("test://elsewhere")?.["node"] === "node-q", 5_000);
      await own.halt();
      await waitForAsync(async () => p.cluster!.state() === "disconnected", 10_000);
      const page = await agents(p);
      expect(page.presence).toBe("node");
      // What P knows itself is still right; where the others' agents are, it cannot say.
      expect(page.listing(WORKER)).toMatchObject({ online: true, node: "node-p" });
      expect(page.listing("test://elsewhere")).toMatchObject({ online: false, node: null });
      await own.start();
      await waitForAsync(async () => (await agents(p)).presence === "cluster", 15_000);
      expect((await agents(p)).listing("test://elsewhere")).toMatchObject({ online: true, node: "node-q" });
    } finally {
      await own.stop();
    }
  }, 60_000);
});

/** Figures for the report (`TROUPE_REPORT_PRESENCE=1`). */
function report(line: string): void {
  if (process.env["TROUPE_REPORT_PRESENCE"] !== undefined) process.stdout.write(`${line}\n`);
}
