/**
 * The keeper of a node's lease (src/cluster/ownership.ts) on fake time and a scripted lease table: it renews every
 * third of the lease time, and the node stops everything it runs, at once and once, whichever way it loses the
 * lease: a renewal that finds it taken, a lease time without an answered renewal, a fenced write refused. A node
 * that lost it takes it back at a later scan and runs again what its records still name it for. Each of these is
 * announced as a `cluster.*` event, once.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BridgeError } from "../../src/errors.js";
import type { Lease } from "../../src/cluster/leases.js";
import type { ClusterNode } from "../../src/cluster/node.js";
import { NodeOwnership, type OwnershipHost } from "../../src/cluster/ownership.js";
import { createMemoryStore, type Clock, type Store } from "../../src/index.js";
import type { StoredSession } from "../../src/runtime/session-records.js";

const LEASE_MS = 3_000;
const clock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** A lease table whose answers the test scripts; it counts renewals. */
interface ScriptedLeases {
  acquire: ReturnType<typeof vi.fn>;
  renew: ReturnType<typeof vi.fn>;
  release: ReturnType<typeof vi.fn>;
}

function leaseOf(token: number, revision = token): Lease {
  return { resource: "node:node-a", token, holder: "node-a", revision, validUntil: Date.now() + LEASE_MS };
}

function fakeCluster(leases: ScriptedLeases): ClusterNode {
  return {
    nodeId: "node-a",
    leaseMs: LEASE_MS,
    leases,
    serve: async () => () => undefined,
    presence: { clearNode: async () => 0, reannounce: () => undefined },
    answers: { listen: () => () => undefined, publish: async () => undefined, replay: async () => 0 },
    connection: { server: () => "127.0.0.1:4222" },
  } as unknown as ClusterNode;
}

/** What the keeper announced: each event's type and fields. */
type Announced = Array<{ type: string } & Record<string, unknown>>;

function fakeHost(store: Store): OwnershipHost & { halts: number; adopted: string[][]; announced: Announced } {
  const host = {
    halts: 0,
    adopted: [] as string[][],
    announced: [] as Announced,
    announce: (type: string, fields: object) => {
      host.announced.push({ type, ...fields });
    },
    store: () => store,
    adoptWorkflows: async (records: Array<{ sessionId: string }>) => {
      host.adopted.push(records.map((record) => record.sessionId));
      return records.map((record) => record.sessionId);
    },
    adoptSessions: async () => undefined,
    adoptA2aTasks: async () => undefined,
    resumeWorkflows: () => undefined,
    watchDeadlines: () => Promise.resolve(),
    halt: async () => {
      host.halts += 1;
    },
    concerns: () => true,
    checkSender: () => undefined,
    observe: () => undefined,
    answerRoute: async () => null,
    whenDurable: () => Promise.resolve(),
  };
  return host;
}

let store: Store;

beforeEach(() => {
  // The store commits on setImmediate, which stays real: only the keeper's timers and the clock are fake.
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date"] });
  store = createMemoryStore();
});

afterEach(async () => {
  vi.useRealTimers();
  await store.close();
});

async function started(leases: ScriptedLeases): Promise<{ ownership: NodeOwnership; host: ReturnType<typeof fakeHost> }> {
  const host = fakeHost(store);
  const ownership = new NodeOwnership(fakeCluster(leases), host, { clock });
  await ownership.claim();
  await ownership.start();
  return { ownership, host };
}

describe("the keeper of a node's lease", () => {
  it("renews every third of the lease time and keeps the same fence while renewals succeed", async () => {
    let revision = 1;
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async () => leaseOf(1, (revision += 1))),
      release: vi.fn(async () => undefined),
    };
    const { ownership, host } = await started(leases);
    const fence = ownership.fence();
    await vi.advanceTimersByTimeAsync(3 * LEASE_MS);
    expect(leases.renew).toHaveBeenCalledTimes(9);
    expect(ownership.fence()).toBe(fence);
    expect(host.halts).toBe(0);
    await ownership.quiesce();
    await ownership.stop();
    expect(leases.release).toHaveBeenCalledTimes(1);
    expect(host.announced).toEqual([{ type: "cluster.node_joined", server: "127.0.0.1:4222" }, { type: "cluster.node_left" }]);
  });

  it("stops everything at once when a renewal finds the lease taken, and writes nothing after", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async (): Promise<Lease | undefined> => undefined),
      release: vi.fn(async () => undefined),
    };
    const { ownership, host } = await started(leases);
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS / 3);
    expect(host.halts).toBe(1);
    expect(ownership.fence()).toBeUndefined();
    expect(ownership.holdsLease()).toBe(false);
    await vi.advanceTimersByTimeAsync(3 * LEASE_MS);
    expect(host.halts).toBe(1);
    expect(host.announced.filter(({ type }) => type === "cluster.lease_lost")).toEqual([
      { type: "cluster.lease_lost", cause: "taken", reason: "another node took its lease" },
    ]);
    await ownership.stop();
  });

  it("answers a route for a workflow still named for it, once it lost its lease, TRANSPORT (503) and not as if unknown", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async (): Promise<Lease | undefined> => undefined),
      release: vi.fn(async () => undefined),
    };
    const { ownership } = await started(leases);
    store.put("workflows", "wf-here", { node: "node-a" });
    await store.flush();
    // With its lease, its own workflow is answered here (the route runs locally), an unknown one too (404 there).
    await expect(ownership.forward("wf-here", {})).resolves.toBeUndefined();
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS / 3);
    expect(ownership.holdsLease()).toBe(false);
    await expect(ownership.forward("wf-here", {})).rejects.toMatchObject({ type: "TRANSPORT", details: { unavailable: true, retryable: true } });
    await expect(ownership.forward("wf-nobody-knows", {})).resolves.toBeUndefined();
    await ownership.stop();
  });

  it("stops everything once a lease time has passed since the last renewal that got an answer", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async () => {
        throw new BridgeError("TRANSPORT", "NATS did not answer");
      }),
      release: vi.fn(async () => undefined),
    };
    const { ownership, host } = await started(leases);
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS - 1);
    expect(host.halts).toBe(0);
    expect(ownership.holdsLease()).toBe(true);
    await vi.advanceTimersByTimeAsync(1);
    expect(host.halts).toBe(1);
    expect(ownership.fence()).toBeUndefined();
    expect(host.announced.filter(({ type }) => type === "cluster.lease_lost")).toMatchObject([{ cause: "expired" }]);
    await ownership.stop();
  });

  it("asks again within a twentieth of the lease time after a renewal NATS did not answer, and keeps its lease once one gets through", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async (): Promise<Lease | undefined> => {
        throw new BridgeError("TRANSPORT", "the bucket has no leader");
      }),
      release: vi.fn(async () => undefined),
    };
    const { ownership, host } = await started(leases);
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS / 3);
    expect(leases.renew).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(LEASE_MS / 20);
    expect(leases.renew).toHaveBeenCalledTimes(2);
    // The bucket's new leader answers: the lease goes on, well before the next third of the lease time.
    leases.renew.mockImplementation(async () => leaseOf(1, 2));
    await vi.advanceTimersByTimeAsync(LEASE_MS / 20);
    expect(leases.renew).toHaveBeenCalledTimes(3);
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(host.halts).toBe(0);
    expect(ownership.holdsLease()).toBe(true);
    expect(host.announced.filter(({ type }) => type === "cluster.lease_lost")).toEqual([]);
    await ownership.stop();
  });

  it("stops everything when the store refuses a write fenced by the lease, however many are refused", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async () => leaseOf(1, 2)),
      release: vi.fn(async () => undefined),
    };
    const { ownership, host } = await started(leases);
    leases.acquire.mockResolvedValue(undefined);
    const fence = ownership.fence()!;
    fence.onRefused!();
    fence.onRefused!();
    await vi.advanceTimersByTimeAsync(0);
    expect(host.halts).toBe(1);
    expect(ownership.fence()).toBeUndefined();
    expect(host.announced.filter(({ type }) => type === "cluster.lease_lost")).toMatchObject([{ cause: "write_refused" }]);
    await ownership.stop();
  });

  it("takes its lease back at a later scan and runs again the workflows its records still name it for", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async (): Promise<Lease | undefined> => undefined),
      release: vi.fn(async () => undefined),
    };
    store.put("workflows", "sess_mine", workflowRecord("sess_mine", "node-a"));
    store.put("workflows", "sess_theirs", workflowRecord("sess_theirs", "node-b"));
    const { ownership, host } = await started(leases);
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS / 3);
    expect(host.halts).toBe(1);
    leases.acquire.mockResolvedValue(leaseOf(7));
    leases.renew.mockResolvedValue(leaseOf(7, 8));
    await vi.advanceTimersByTimeAsync(LEASE_MS / 2);
    expect(ownership.fence()).toMatchObject({ resource: "node:node-a", token: 7 });
    expect(host.adopted).toEqual([["sess_mine"]]);
    expect(await store.get("meta", "cluster/nodes/node-a")).toMatchObject({ nodeId: "node-a" });
    expect(host.announced.map(({ type }) => type)).toEqual(["cluster.node_joined", "cluster.lease_lost", "cluster.lease_regained"]);
    expect(host.announced.at(-1)).toEqual({ type: "cluster.lease_regained", workflows: 1, sessions: 0 });
    await ownership.stop();
  });

  it("announces a failed scan once per outage, and again at the next outage", async () => {
    let revision = 1;
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async () => leaseOf(1, (revision += 1))),
      release: vi.fn(async () => undefined),
    };
    store.put("meta", "cluster/nodes/node-b", { nodeId: "node-b" });
    const { ownership, host } = await started(leases);
    const scanFailures = (): Announced => host.announced.filter(({ type }) => type === "cluster.scan_failed");
    leases.acquire.mockRejectedValue(new BridgeError("TRANSPORT", "NATS did not answer"));
    await vi.advanceTimersByTimeAsync(3 * LEASE_MS);
    expect(leases.acquire.mock.calls.length).toBeGreaterThan(3);
    expect(scanFailures()).toEqual([{ type: "cluster.scan_failed", error: "NATS did not answer" }]);
    // NATS answers again (node-b's lease is held): the outage ended; the next one is announced again.
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    leases.acquire.mockRejectedValue(new BridgeError("TRANSPORT", "NATS did not answer"));
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(scanFailures()).toHaveLength(2);
    await ownership.stop();
  });

  it("answers TRANSPORT (503), not as if unknown, for a record named for it while it restores what that record names", async () => {
    const leases = {
      acquire: vi.fn(async (): Promise<Lease | undefined> => leaseOf(1)),
      renew: vi.fn(async (): Promise<Lease | undefined> => undefined),
      release: vi.fn(async () => undefined),
    };
    store.put("workflows", "sess_mine", workflowRecord("sess_mine", "node-a"));
    store.put("bridge_sessions", "bridge_mine", bridgeSessionRecord("bridge_mine", "node-a"));
    const { ownership, host } = await started(leases);
    leases.acquire.mockResolvedValue(undefined);
    await vi.advanceTimersByTimeAsync(LEASE_MS / 3);
    expect(host.halts).toBe(1);
    // The lease comes back; the restore of what its records name waits until the test lets it go.
    let restored!: () => void;
    host.adoptWorkflows = async (records) => {
      await new Promise<void>((resolve) => (restored = resolve));
      return records.map((record) => record.sessionId);
    };
    leases.acquire.mockResolvedValue(leaseOf(7));
    leases.renew.mockResolvedValue(leaseOf(7, 8));
    await vi.advanceTimersByTimeAsync(LEASE_MS / 2);
    expect(ownership.holdsLease()).toBe(true);
    const restoring = { type: "TRANSPORT", details: { unavailable: true, retryable: true } };
    await expect(ownership.forward("sess_mine", {})).rejects.toMatchObject(restoring);
    await expect(ownership.sessionNodeOf("bridge_mine")).rejects.toMatchObject(restoring);
    restored();
    await vi.advanceTimersByTimeAsync(0);
    await expect(ownership.forward("sess_mine", {})).resolves.toBeUndefined();
    await expect(ownership.sessionNodeOf("bridge_mine")).resolves.toBeUndefined();
    await ownership.stop();
  });
});

/** The smallest workflow record `loadWorkflows` reads. */
function workflowRecord(sessionId: string, node: string): unknown {
  return {
    v: 1,
    node,
    snapshot: {
      status: "active",
      value: "design",
      context: { sessionId, steps: [{ name: "design", required_agents: [] }], participants: [], tasks: [], createdAt: 0, stepEnteredAt: 0 },
    },
  };
}

/** A bridge session record as `SessionRecords.load` reads it. */
function bridgeSessionRecord(sessionId: string, node: string): StoredSession {
  return {
    v: 1,
    node,
    sessionId,
    agentId: "worker",
    metadata: {},
    createdAt: 0,
    ttlMs: 0,
    idleMs: 0,
    maxQueuedPrompts: 8,
    historyWindow: 30,
    status: "idle",
    lastActivityAt: 0,
    history: [],
    usage: { inputTokens: 0, outputTokens: 0 },
    error: null,
  };
}
