/**
 * Ownership across the nodes of a cluster (issue 15, docs/cluster.md "Ownership and failover"), on a real NATS
 * JetStream and a real PostgreSQL: each workflow runs on exactly one node, the one holding the lease its record
 * names; a node that stops renewing is taken over by a survivor within about the lease time (its workflows go on
 * there, its bridge sessions come back idle with their history, the interrupted prompt failed TRANSPORT); a node
 * that lost its lease cannot write (its fenced write is refused, its actors stop). Nodes are buses in this
 * process, each with its own NATS connection, store and lease; a node dies by losing NATS, as a killed or
 * partitioned node does for the others, or is a child process killed with SIGKILL (test/fixtures/cluster-node.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import {
  CommunicationBus,
  createRuntime,
  openPostgresStore,
  type ListOptions,
  type Runtime,
  type RuntimeEvent,
  type Store,
  type StoreCollection,
} from "../../src/index.js";
import type { NodeOwnership } from "../../src/cluster/ownership.js";
import { useEngines } from "../support/engines.js";
import { createControlledAgent, type ControlledAgent } from "../support/controlled-agent.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { envelope, until } from "../bus/support.js";
import { settle } from "../support/runtime.js";

const LEASE_MS = 1_000;
const KEY = "cluster-test-key";
const WORKER = "troupe://worker";
const LEAD = "cli://lead";
const STEPS = [
  { name: "design", required_agents: [WORKER] },
  { name: "review", required_agents: [WORKER] },
];

let nats: NatsServer;
let postgres: PostgresServer;
let testNumber = 0;

useEngines((engines) => ({ nats, postgres } = engines));

/** One node of a test's cluster. */
interface ClusterTestNode {
  nodeId: string;
  bus: CommunicationBus;
  runtime: Runtime;
  worker: ControlledAgent;
  events: RuntimeEvent[];
  ownership: NodeOwnership;
}

const running: ClusterTestNode[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.allSettled(
    running.splice(0).map(async (node) => {
      await node.bus.stop();
      await node.runtime.stop();
    }),
  );
});

/** A cluster of its own for each test: its PostgreSQL schema and its lease bucket. */
function newCluster(): { schema: string; bucket: string } {
  testNumber += 1;
  return { schema: `own_${process.pid}_${testNumber}`, bucket: `own_${process.pid}_${testNumber}` };
}

/**
 * Starts a node: a bus given an unstarted runtime with the controlled agent `troupe://worker` (the bus starts it),
 * or with `ownsRuntime` a bus that makes its runtime (no agents) and stops it with itself.
 */
async function startNode(
  cluster: { schema: string; bucket: string },
  nodeId: string,
  {
    clock,
    ownsRuntime = false,
    natsUrl = nats.url,
    leaseMs = LEASE_MS,
    wrapStore = (store) => store,
  }: { clock?: SimulatedClock; ownsRuntime?: boolean; natsUrl?: string; leaseMs?: number; wrapStore?: (store: Store) => Store } = {},
): Promise<ClusterTestNode> {
  const worker = createControlledAgent("worker");
  const store = async () => wrapStore(await openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.schema }));
  const given = ownsRuntime ? undefined : createRuntime({ agents: [worker.agent], defaultAgentId: "worker", store, ...(clock === undefined ? {} : { clock }) });
  const bus = new CommunicationBus({
    ...(given === undefined ? { store } : { runtime: given }),
    host: "127.0.0.1",
    port: 0,
    apiKey: KEY,
    closeGraceMs: 50,
    env: {},
    cluster: { url: natsUrl, nodeId, leaseMs, leaseBucket: cluster.bucket },
    ...(clock === undefined ? {} : { clock }),
  });
  const runtime = given ?? (bus as unknown as { runtime: Runtime }).runtime;
  const events: RuntimeEvent[] = [];
  runtime.on("*", (event) => events.push(event));
  await bus.start();
  const node = { nodeId, bus, runtime, worker, events, ownership: (bus as unknown as { ownership: NodeOwnership }).ownership };
  running.push(node);
  return node;
}

/** The node is cut from NATS, as a killed or partitioned node is for the others: it renews nothing more. */
async function cutFromNats(node: ClusterTestNode): Promise<void> {
  await node.bus.cluster!.close();
}

function createWorkflow(node: ClusterTestNode): string {
  return node.bus.sessionManager.createSession(
    "troupe://orchestrator",
    [
      { agent_id: LEAD, role: "lead" },
      { agent_id: WORKER, role: "dev" },
    ],
    STEPS,
  );
}

/** The lead, registered on `node`, delegates the design (task `t-design`) of workflow `sessionId` to the worker through it. */
async function delegateDesign(node: ClusterTestNode, sessionId: string): Promise<void> {
  node.bus.registerAgent({ agent_id: LEAD, framework: "cli", capabilities: [] });
  await node.bus.persisted();
  await node.bus.send(
    envelope(LEAD, WORKER, {
      sender: { agent_id: LEAD, framework: "cli", session_id: sessionId },
      payload: { prompt: "design it" },
      metadata: { task_id: "t-design" },
    }),
  );
}

/** The events of `type` a node's hub carried (`cluster.*` among them). */
function clusterEvents(node: ClusterTestNode, type: string): RuntimeEvent[] {
  return node.events.filter((event) => event.type === type);
}

async function storedRecord(node: ClusterTestNode, sessionId: string): Promise<{ node?: string; snapshot: { value: unknown } } | undefined> {
  return (await node.runtime.store.get("workflows", sessionId)) as { node?: string; snapshot: { value: unknown } } | undefined;
}

describe("workflow ownership", () => {
  it("runs a workflow on the node that created it only; a task and its answer accepted by another node reach it there", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = createWorkflow(a);
    await a.bus.sessionManager.whenDurable();
    expect(await storedRecord(b, sessionId)).toMatchObject({ node: "node-a" });
    expect(b.bus.sessionManager.getSession(sessionId)).toBeUndefined();

    // The lead, registered on node-b, delegates the design through node-b: node-a records the task.
    await delegateDesign(b, sessionId);
    expect(a.bus.sessionManager.getSession(sessionId)?.tasks).toMatchObject([{ task_id: "t-design", status: "pending", to: WORKER }]);

    // node-b's worker answers (an answer naming only its task): node-a hears it, and the workflow moves on.
    await until(() => b.worker.prompts.length === 1);
    b.worker.current().reply({ text: "designed" });
    await until(() => a.bus.sessionManager.getSession(sessionId)?.workflow.current_step === "review", 5_000);
    expect(a.bus.sessionManager.getSession(sessionId)?.tasks).toMatchObject([{ task_id: "t-design", status: "completed" }]);
    expect(b.bus.sessionManager.getSession(sessionId)).toBeUndefined();

    // A node that starts now restores nothing of it: node-a runs it.
    const c = await startNode(cluster, "node-c");
    expect(c.bus.sessionManager.runs(sessionId)).toBe(false);
    expect(c.bus.sessionManager.sessionCounts().total).toBe(0);

    // The node that runs it checks what another node sends: a sender that is no participant is refused there.
    b.bus.registerAgent({ agent_id: "cli://stranger", framework: "cli", capabilities: [] });
    await expect(
      b.bus.send(envelope("cli://stranger", WORKER, { sender: { agent_id: "cli://stranger", framework: "cli", session_id: sessionId } })),
    ).rejects.toMatchObject({ type: "AUTH" });
  }, 30_000);

  it("hands the survivor that takes a workflow over the answers naming only their task told while no node ran it", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = createWorkflow(a);
    await a.bus.sessionManager.whenDurable();
    await delegateDesign(b, sessionId);
    await until(() => b.worker.prompts.length === 1);

    // node-a dies with the task pending; the worker answers (naming only its task) before anyone took node-a over.
    await cutFromNats(a);
    b.worker.current().reply({ text: "designed" });
    await until(() => clusterEvents(b, "cluster.takeover").length === 1, 5 * LEASE_MS);
    // The survivor read the answer again: the workflow moved on, where it now runs.
    await until(() => b.bus.sessionManager.getSession(sessionId)?.workflow.current_step === "review", 5_000);
    expect(b.bus.sessionManager.getSession(sessionId)?.tasks).toMatchObject([{ task_id: "t-design", status: "completed", result: { text: "designed" } }]);
  }, 30_000);

  it("sends again the answer of a runtime agent whose node was cut from NATS, once NATS is back, and its workflow moves on", async () => {
    const own = await startNats();
    try {
      const cluster = newCluster();
      // A lease longer than the outage: the node keeps its workflow throughout.
      const a = await startNode(cluster, "node-a", { natsUrl: own.url, leaseMs: 20_000 });
      const sessionId = createWorkflow(a);
      await delegateDesign(a, sessionId);
      await until(() => a.worker.prompts.length === 1);
      await own.halt();
      await until(() => a.bus.cluster!.state() === "disconnected", 10_000);
      // The answer is refused (503: the node cannot keep it; after 2 s of offering it to a sync sender) and sent
      // again every second.
      a.worker.current().reply({ text: "designed" });
      await new Promise((resolve) => setTimeout(resolve, 4_000));
      expect(a.bus.sessionManager.getSession(sessionId)?.workflow.current_step).toBe("design");
      await own.start();
      await until(() => a.bus.sessionManager.getSession(sessionId)?.workflow.current_step === "review", 20_000);
      expect(a.bus.sessionManager.getSession(sessionId)?.tasks).toMatchObject([{ task_id: "t-design", status: "completed" }]);
    } finally {
      await own.stop();
    }
  }, 60_000);

  it("moves the workflows of a node cut from the cluster to one survivor within about the lease time, where they finish", async () => {
    const cluster = newCluster();
    const [a, b, c] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b"), await startNode(cluster, "node-c")];
    const sessionIds = [createWorkflow(a), createWorkflow(a)];
    a.bus.sessionManager.updateWorkflow(sessionIds[0]!, { current_step: "review" });
    await a.bus.sessionManager.whenDurable();

    const cutAt = performance.now();
    await cutFromNats(a);
    // node-a stops them itself once its lease ran out; one survivor (and only one) runs them after.
    await until(() => a.bus.sessionManager.sessionCounts().total === 0, 3 * LEASE_MS);
    await until(
      () => sessionIds.every((id) => b.bus.sessionManager.getSession(id) !== undefined || c.bus.sessionManager.getSession(id) !== undefined),
      5 * LEASE_MS,
    );
    const failoverMs = performance.now() - cutAt;
    const survivor = b.bus.sessionManager.getSession(sessionIds[0]!) === undefined ? c : b;
    const other = survivor === b ? c : b;
    for (const sessionId of sessionIds) {
      expect(other.bus.sessionManager.getSession(sessionId)).toBeUndefined();
      expect(await storedRecord(survivor, sessionId)).toMatchObject({ node: survivor.nodeId });
    }
    expect(survivor.bus.sessionManager.getSession(sessionIds[0]!)?.workflow.current_step).toBe("review");
    expect(failoverMs).toBeLessThan(4 * LEASE_MS);

    // They go on where they were, on the survivor, to their end.
    survivor.bus.sessionManager.completeSession(sessionIds[0]!, { summary: "done on the survivor" });
    survivor.bus.sessionManager.updateWorkflow(sessionIds[1]!, { current_step: "review" });
    survivor.bus.sessionManager.completeSession(sessionIds[1]!, { summary: "done too" });
    await survivor.bus.sessionManager.whenDurable();
    for (const sessionId of sessionIds) {
      expect(survivor.bus.sessionManager.getSession(sessionId)?.status).toBe("completed");
      expect(await storedRecord(other, sessionId)).toMatchObject({ node: survivor.nodeId, snapshot: { value: "completed" } });
    }
    // Each node says what happened to it: node-a lost its lease; the survivor took node-a over, once: the dead
    // node is forgotten by the cluster, and no other survivor takes it over again.
    expect(clusterEvents(a, "cluster.lease_lost")).toMatchObject([{ node: "node-a", actorId: "node:node-a", cause: "expired" }]);
    // Announced once the takeover ended (the answers kept meanwhile read again after the restore).
    await until(() => clusterEvents(survivor, "cluster.takeover").length === 1, 5 * LEASE_MS);
    expect(clusterEvents(survivor, "cluster.takeover")).toMatchObject([{ node: survivor.nodeId, fromNode: "node-a", workflows: 2, sessions: 0 }]);
    expect(clusterEvents(other, "cluster.takeover")).toEqual([]);
    for (const node of [a, b, c]) expect(clusterEvents(node, "cluster.node_joined")).toMatchObject([{ node: node.nodeId }]);
  }, 30_000);

  it("refuses the write of a node whose lease was taken while it was paused, and stops its workflow there", async () => {
    const cluster = newCluster();
    // node-a's clock stands still, as a paused process's does: it never sees its lease run out.
    const pausedClock = new SimulatedClock();
    pausedClock.set(Date.now());
    const a = await startNode(cluster, "node-a", { clock: pausedClock });
    const b = await startNode(cluster, "node-b");
    const sessionId = createWorkflow(a);
    await a.bus.sessionManager.whenDurable();
    await cutFromNats(a);
    await until(() => b.bus.sessionManager.getSession(sessionId) !== undefined, 5 * LEASE_MS);
    expect(a.ownership.holdsLease()).toBe(true);

    // node-a wakes up and moves its workflow: the store refuses the write, and node-a stops the workflow.
    a.bus.sessionManager.updateWorkflow(sessionId, { current_step: "review" });
    await a.bus.sessionManager.whenDurable();
    await until(() => !a.ownership.holdsLease() && a.bus.sessionManager.getSession(sessionId) === undefined);
    expect(await storedRecord(b, sessionId)).toMatchObject({ node: "node-b", snapshot: { value: "design" } });
    // Refused as a node without its lease refuses everything: 503 (unavailable), ask another node or again.
    expect(() => createWorkflow(a)).toThrow(expect.objectContaining({ type: "TRANSPORT", details: expect.objectContaining({ unavailable: true }) }));
    await expect(a.runtime.bridge.sessionsCreate({})).rejects.toMatchObject({ type: "TRANSPORT", details: { unavailable: true } });
    // Its health says so, for a load balancer to send no one there; node-b's holds its lease.
    const health = await fetch(`${a.bus.url}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: "unavailable", cluster: { node: "node-a", lease: "lost" } });
    expect(await (await fetch(`${b.bus.url}/health`)).json()).toMatchObject({ cluster: { node: "node-b", lease: "held" } });
  }, 30_000);
});

describe("nodes joining and leaving", () => {
  it("hands the workflows of a node that stops with its runtime to a survivor at its next scan, without waiting for the lease time", async () => {
    const cluster = newCluster();
    // A lease long enough that its next scan (every half lease) comes well before it would run out, even on a loaded machine.
    const leaseMs = 4 * LEASE_MS;
    const [a, b] = [await startNode(cluster, "node-a", { ownsRuntime: true, leaseMs }), await startNode(cluster, "node-b", { leaseMs })];
    // A runtime the bus makes has no agents: the workflow's agents are remote ones.
    const sessionId = a.bus.sessionManager.createSession(LEAD, [{ agent_id: "cli://dev", role: "dev" }], [{ name: "design", required_agents: ["cli://dev"] }]);
    await a.bus.sessionManager.whenDurable();
    await a.bus.stop();
    // Its lease is released as it stops: no survivor waits for it to run out.
    const stoppedAt = performance.now();
    await until(() => b.bus.sessionManager.runs(sessionId), 3 * leaseMs);
    expect(performance.now() - stoppedAt).toBeLessThan(leaseMs);
    expect(await storedRecord(b, sessionId)).toMatchObject({ node: "node-b" });
  }, 30_000);

  it("lets the lease of a node whose runtime outlives its bus run out: a survivor takes its work over a lease time later", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = createWorkflow(a);
    await a.bus.sessionManager.whenDurable();
    await a.bus.stop();
    expect(a.ownership.holdsLease()).toBe(false);
    await until(() => b.bus.sessionManager.runs(sessionId), 5 * LEASE_MS);
    expect(await storedRecord(b, sessionId)).toMatchObject({ node: "node-b" });
  }, 30_000);

  it("refuses to start a second node with the id of a running one (CONFIG), and leaves the first as it was", async () => {
    const cluster = newCluster();
    const a = await startNode(cluster, "node-a");
    const sessionId = createWorkflow(a);
    await expect(startNode(cluster, "node-a")).rejects.toMatchObject({ type: "CONFIG", details: { field: "cluster.nodeId" } });
    expect(a.ownership.holdsLease()).toBe(true);
    expect(a.bus.sessionManager.runs(sessionId)).toBe(true);
  }, 30_000);
});

describe("bridge sessions after their node dies", () => {
  it("come back idle on a survivor with their history, the interrupted prompt failed TRANSPORT", async () => {
    const cluster = newCluster();
    const a = await startNode(cluster, "node-a");
    const b = await startNode(cluster, "node-b");
    const { sessionId } = await a.runtime.bridge.sessionsCreate({ metadata: { project: "notifications" } });
    const first = a.runtime.bridge.sessionsPrompt({ sessionId, prompt: "design it" });
    await until(() => a.worker.prompts.length === 1);
    a.worker.current().reply({ text: "designed" });
    await first;
    const interrupted = a.runtime.bridge.sessionsPrompt({ sessionId, prompt: "build it" });
    interrupted.catch(() => undefined);
    await until(() => a.worker.prompts.length === 2);
    await settle();
    await a.runtime.store.flush();

    await cutFromNats(a);
    await until(() => b.runtime.hasSession(sessionId), 5 * LEASE_MS);
    expect(await b.runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "idle" });
    expect(b.events.find((event) => event.type === "prompt.interrupted")).toMatchObject({ sessionId, error: { type: "TRANSPORT" } });
    expect(((await b.runtime.store.get("bridge_sessions", sessionId)) as { node?: string }).node).toBe("node-b");
    // The session goes on on node-b, with the history it had on node-a.
    const next = b.runtime.bridge.sessionsPrompt({ sessionId, prompt: "review it" });
    await until(() => b.worker.prompts.length === 1);
    expect(b.worker.current().ctx.history).toEqual([
      { role: "user", content: "design it" },
      { role: "assistant", content: "designed" },
    ]);
    b.worker.current().reply({ text: "reviewed" });
    expect(await next).toMatchObject({ text: "reviewed" });
  }, 30_000);

  it("are read by a starting node and a survivor a page at a time, their own only: another node's records are never read", async () => {
    const cluster = newCluster();
    // A node that never ran, whose records (1 MiB in all) no node may read: 40 workflows, sessions and A2A tasks of 8 KiB.
    const seeder = await openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.schema });
    const padding = "x".repeat(8 * 1024);
    for (let index = 0; index < 40; index++) {
      for (const collection of ["workflows", "bridge_sessions", "a2a_tasks"] as const)
        seeder.put(collection, `elsewhere-${index}`, { node: "node-z", padding });
    }
    await seeder.close();
    const lists: Array<{ collection: StoreCollection; options: ListOptions | undefined; nodes: unknown[] }> = [];
    const recordLists = (store: Store): Store =>
      new Proxy(store, {
        get(target, property, receiver) {
          if (property !== "list") {
            const member = Reflect.get(target, property, receiver) as unknown;
            // The store's own members (private fields among them) work on the store itself, not on this proxy.
            return typeof member === "function" ? (member as (...args: unknown[]) => unknown).bind(target) : member;
          }
          return async (collection: StoreCollection, options?: ListOptions) => {
            const records = await target.list(collection, options);
            lists.push({ collection, options, nodes: records.map(({ value }) => (value as { node?: unknown } | null)?.node) });
            return records;
          };
        },
      });
    const a = await startNode(cluster, "node-a");
    const b = await startNode(cluster, "node-b", { wrapStore: recordLists });
    const sessionIds = await Promise.all(Array.from({ length: 3 }, async () => (await a.runtime.bridge.sessionsCreate({})).sessionId));
    // More than a page (100) of workflows: moved and restored a page at a time, every one of them.
    const workflowIds = Array.from({ length: 130 }, () => createWorkflow(a));
    await a.bus.sessionManager.whenDurable();

    await cutFromNats(a);
    await until(() => sessionIds.every((id) => b.runtime.hasSession(id)) && workflowIds.every((id) => b.bus.sessionManager.runs(id)), 5 * LEASE_MS);
    for (const id of workflowIds.slice(0, 5)) expect(await storedRecord(b, id)).toMatchObject({ node: "node-b" });
    const owned = lists.filter(({ collection }) => ["workflows", "bridge_sessions", "a2a_tasks"].includes(collection));
    // Read at node-b's start (its own: none) and at the takeover (node-a's): by node, a page at a time, never node-z's.
    expect(owned.length).toBeGreaterThanOrEqual(6);
    for (const { options, nodes } of owned) {
      expect(options).toMatchObject({ node: expect.stringMatching(/^node-[ab]$/), limit: expect.any(Number) });
      expect(nodes.every((node) => node === options?.node)).toBe(true);
    }
    expect(owned.flatMap(({ nodes }) => nodes)).toHaveLength(3 + 130);
    expect(Math.max(...owned.map(({ nodes }) => nodes.length))).toBeLessThanOrEqual(100);
    // The messages' deadlines are read a page at a time too.
    expect(lists.filter(({ collection }) => collection === "messages").every(({ options }) => options?.limit !== undefined)).toBe(true);
  }, 30_000);

  it("answer the task of an auto workflow whose prompt the death interrupted with TRANSPORT, on the survivor that runs the workflow", async () => {
    const cluster = newCluster();
    const a = await startNode(cluster, "node-a");
    const b = await startNode(cluster, "node-b");
    const sessionId = a.bus.sessionManager.createSession(
      "troupe://orchestrator",
      [{ agent_id: WORKER, role: "dev" }],
      [{ name: "design", required_agents: [WORKER], task: "Design it" }],
      {},
      { dispatch: "auto" },
    );
    await until(() => a.worker.prompts.length === 1);
    await settle();
    await a.runtime.store.flush();

    await cutFromNats(a);
    await until(() => b.bus.sessionManager.getSession(sessionId)?.status === "terminated", 6 * LEASE_MS);
    expect(b.bus.sessionManager.getSession(sessionId)).toMatchObject({
      termination: { reason: "task_failed" },
      tasks: [{ status: "failed", error: { code: "TRANSPORT" } }],
    });
  }, 30_000);
});

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));

/** A node in a child process (test/fixtures/cluster-node.ts), started and ready. */
async function spawnNode(cluster: { schema: string; bucket: string }, nodeId: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/fixtures/cluster-node.ts"], {
    cwd: projectRoot,
    env: {
      ...process.env,
      CLUSTER_PG_URL: postgres.url(),
      CLUSTER_SCHEMA: cluster.schema,
      CLUSTER_NATS_URL: nats.url,
      CLUSTER_NODE_ID: nodeId,
      CLUSTER_LEASE_MS: String(LEASE_MS),
      CLUSTER_BUCKET: cluster.bucket,
    },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  children.push(child);
  const [message] = (await once(child, "message")) as [{ ready?: boolean }];
  expect(message).toMatchObject({ ready: true });
  return child;
}

async function createIn(child: ChildProcess, count: number): Promise<string[]> {
  const created = once(child, "message");
  child.send({ create: count });
  const [message] = (await created) as [{ created: string[] }];
  return message.created;
}

describe("a node killed with SIGKILL", () => {
  it("has its workflows taken over by exactly one survivor within about the lease time, killed and restarted 3 times", async () => {
    const cluster = newCluster();
    const survivors = [await startNode(cluster, "node-b"), await startNode(cluster, "node-c")];
    const failoversMs: number[] = [];
    const runs = (sessionId: string): ClusterTestNode[] => survivors.filter((node) => node.bus.sessionManager.runs(sessionId));
    for (let round = 0; round < 3; round += 1) {
      // The same node id each time: the restarted node takes its lease back once a survivor let it go.
      const killed = await spawnNode(cluster, "node-a");
      const sessionIds = await createIn(killed, 20);
      expect(sessionIds.flatMap(runs)).toEqual([]);
      const exited = once(killed, "exit");
      const killedAt = performance.now();
      killed.kill("SIGKILL");
      await until(() => sessionIds.every((id) => runs(id).length === 1), 5 * LEASE_MS);
      failoversMs.push(Math.round(performance.now() - killedAt));
      expect(sessionIds.every((id) => runs(id).length === 1)).toBe(true);
      await exited;
    }
    if (process.env["TROUPE_REPORT_FAILOVER"] !== undefined)
      process.stdout.write(`failover after SIGKILL (lease ${LEASE_MS} ms): ${failoversMs.join(", ")} ms\n`);
    // Within the lease time, and the scan that notices it (half a lease time), and the takeover itself.
    for (const failoverMs of failoversMs) expect(failoverMs).toBeLessThan(3 * LEASE_MS);
    const total = survivors.reduce((sum, node) => sum + node.bus.sessionManager.sessionCounts().active, 0);
    expect(total).toBe(60);
  }, 60_000);
});
