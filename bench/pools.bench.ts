/**
 * The bus's actors in the supervisor's pools: the creation cost of workflow sessions and of message deliveries
 * at 100 and 10,000 live, and the heap a workflow leaves behind once it ended and was evicted.
 *
 * Each size has its own bus, over its own runtime on its own `SimulatedClock` (no timer fires unless the bench
 * moves that clock), started on 127.0.0.1 port 0. A window of creations is timed on every bus, in batches taken
 * from each in turn (in a random order every round), then the window's actors are removed, which returns every
 * bus to its size: the "100 live" bus never holds more than 200. The bus at 100 is the baseline. Workflow
 * deletions are timed the same way; the messages of a window are removed untimed, by timing them out.
 *
 * Workflows are also compared with root actors of the same workflow machine and input, created in the same
 * rounds: what `createSession` adds to XState's own cost (validation, ids, the pool and its shard, inspection).
 */
import { createActor, SimulatedClock, type AnyActor } from "xstate";
import { createWorkflowMachine, type WorkflowInput, type WorkflowParticipant } from "../machines/workflow.machine.js";
import { CommunicationBus, createRuntime, type Runtime } from "../src/index.js";
import { Batches, compareToFirst, costsOf, formatCount, fullOrQuick, heapUsedAfterGc, progress, settle, type ComparedCost, type Cost } from "./measure.js";

/** Live workflows or deliveries of the buses compared; the first is the baseline. */
const SIZES = fullOrQuick([100, 10_000], [10, 100]);
/** Creations timed per window on each bus (then removed), per batch, and windows per bus. */
const WINDOW = fullOrQuick(100, 20);
const BATCH = 10;
const CYCLES = fullOrQuick(20, 1);
/** Workflows created, ended and evicted for the heap figures, twice over on the same bus. */
const HEAP_WORKFLOWS = fullOrQuick(10_000, 100);
const HEAP_ROUNDS = 2;
const WARMUP = fullOrQuick(1_000, 100);
const RETENTION_MS = 60_000;
const START_MS = 1_700_000_000_000;
/** A window's messages die after `WINDOW_TIMEOUT` of simulated time; the bus's standing messages live far longer. */
const WINDOW_TIMEOUT = "1s";
const WINDOW_TIMEOUT_MS = 1_000;
const STANDING_TIMEOUT = "24h";

/** The seed tutorial's workflow (test/bus/support.ts): an initiator, three participants, three steps. */
const LEAD = "claude-code://orchestrator";
const PARTICIPANTS = [
  { agent_id: "opencode://backend", role: "implementer" },
  { agent_id: "codex://frontend", role: "implementer" },
  { agent_id: "claude-code://qa", role: "reviewer" },
];
const STEPS = [
  { name: "design", required_agents: [LEAD] },
  { name: "implementation", required_agents: ["opencode://backend", "codex://frontend"] },
  { name: "review", required_agents: ["claude-code://qa"] },
];
const SENDER = "bench://sender";
/** Registered and never connected: every message to it stays queued, a live delivery actor. */
const OFFLINE = "bench://offline";

/** Heap after one round of workflows: held while they live, and left once they ended and were evicted. */
export interface WorkflowHeapRound {
  workflows: number;
  bytesPerLiveWorkflow: number;
  bytesPerEvictedWorkflow: number;
}

/** Everything the pools bench measures. */
export interface PoolsBenchResult {
  /** `sessionManager.createSession` at each size; ratio = median ÷ median at 100 live. */
  workflowCreation: ComparedCost[];
  /** `sessionManager.deleteSession` of an active workflow (terminated, then evicted at once) at each size. */
  workflowDeletion: ComparedCost[];
  /** Root actors of the workflow machine, no pool: the machine built once, and built per workflow as `createWorkflowMachine(steps)`. */
  workflowRootActor: { prebuiltMachine: Cost; machinePerWorkflow: Cost };
  /** `bus.send` of an async message to a registered, offline agent at each size; ratio = median ÷ median at 100 live. */
  deliveryCreation: ComparedCost[];
  workflowHeap: WorkflowHeapRound[];
}

/** A bus over a runtime of its own, on a simulated clock. */
class PooledBus {
  /** The workflows created since the last `deleteCreated()`. */
  private readonly created: string[] = [];

  private constructor(
    readonly bus: CommunicationBus,
    readonly runtime: Runtime,
    readonly clock: SimulatedClock,
  ) {}

  static async start(): Promise<PooledBus> {
    const clock = new SimulatedClock();
    clock.set(START_MS);
    const runtime = createRuntime({ clock, maxWorkflowSessions: 100_000 });
    await runtime.start();
    const bus = new CommunicationBus({
      clock,
      runtime,
      host: "127.0.0.1",
      port: 0,
      apiKey: "bench-key",
      env: {},
      closeGraceMs: 0,
      workflowRetentionMs: RETENTION_MS,
      maxQueuedPerAgent: 100_000,
    });
    await bus.start();
    bus.registerAgent({ agent_id: OFFLINE, framework: "bench", capabilities: [], metadata: {} });
    return new PooledBus(bus, runtime, clock);
  }

  createWorkflow(): string {
    const sessionId = this.bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS, {});
    this.created.push(sessionId);
    return sessionId;
  }

  /** Deletes the oldest workflow created since the last `keepCreated()`: it is terminated and evicted at once. */
  deleteOne(): void {
    const sessionId = this.created.shift();
    if (sessionId !== undefined) this.bus.sessionManager.deleteSession(sessionId);
  }

  /** Deletes every workflow created since the last `keepCreated()`. */
  deleteCreated(): void {
    while (this.created.length > 0) this.deleteOne();
  }

  /** Forgets the workflows created so far: they stay. */
  keepCreated(): void {
    this.created.length = 0;
  }

  async stop(): Promise<void> {
    await this.bus.stop();
    await this.runtime.stop();
  }
}

let messageSeq = 0;

/** An async `task_request` to the offline agent. */
function message(timeout: string): Record<string, unknown> {
  messageSeq += 1;
  return {
    message_id: `bench-${messageSeq}`,
    timestamp: new Date(START_MS).toISOString(),
    sender: { agent_id: SENDER, framework: "bench" },
    recipient: { agent_id: OFFLINE, framework: "bench" },
    message_type: "task_request",
    priority: "medium",
    payload: { n: messageSeq },
    routing: { timeout },
  };
}

/** A workflow's input as the session manager makes it for the seed's workflow. */
function workflowInput(index: number): WorkflowInput {
  const participants: WorkflowParticipant[] = [LEAD, ...PARTICIPANTS.map((participant) => participant.agent_id)].map((agentId, position) => ({
    agent_id: agentId,
    framework: agentId.split("://")[0] ?? "",
    role: PARTICIPANTS[position - 1]?.role ?? "initiator",
    status: "active",
    joined_at: START_MS,
  }));
  return { sessionId: `root-${index}`, initiator: LEAD, participants, sharedContext: {}, createdAt: START_MS, retentionMs: RETENTION_MS, dispatch: "manual" };
}

/** A seeded pseudo-random source in [0, 1) (mulberry32): runs shuffle alike. */
function seededRandom(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state);
    mixed = (mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed)) ^ mixed;
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const random = seededRandom(8);

/**
 * Runs `step` for each of `count` targets, `rounds` times, in a new random order every round. A fixed order
 * would not do here: the windows allocate alike, so a young-generation collection falls at the same point of
 * every window, and in a fixed order always in the same target's batch.
 */
async function interleave(count: number, rounds: number, step: (index: number) => Promise<void>): Promise<void> {
  for (let round = 0; round < rounds; round += 1) {
    const order = Array.from({ length: count }, (_, index) => index);
    for (let last = count - 1; last > 0; last -= 1) {
      const pick = Math.floor(random() * (last + 1));
      [order[last], order[pick]] = [order[pick] as number, order[last] as number];
    }
    for (const index of order) await step(index);
  }
}

function fillWorkflows(pooled: PooledBus, live: number): void {
  while (pooled.runtime.pooledCount("workflow") < live) pooled.createWorkflow();
  pooled.keepCreated();
}

/** Messages waiting for the offline agent: each carried by a delivery actor (the pool also holds idle ones). */
function queuedDeliveries(pooled: PooledBus): number {
  return pooled.bus.metricsSnapshot().messages.by_status.queued;
}

async function fillDeliveries(pooled: PooledBus, live: number): Promise<void> {
  while (queuedDeliveries(pooled) < live) await pooled.bus.send(message(STANDING_TIMEOUT));
}

/**
 * Workflow creation on a bus per size, and root actors of the same machine beside them. Then each window's
 * workflows are deleted (terminated and evicted at once), oldest first, timed in interleaved batches too; its
 * root actors are stopped, untimed.
 */
async function timeWorkflows(buses: PooledBus[]): Promise<Pick<PoolsBenchResult, "workflowCreation" | "workflowDeletion" | "workflowRootActor">> {
  const prebuilt = createWorkflowMachine(STEPS);
  let rootSeq = 0;
  const roots: AnyActor[] = [];
  const targets: Array<() => void> = [
    ...buses.map((pooled) => () => void pooled.createWorkflow()),
    () => void roots.push(createActor(prebuilt, { input: workflowInput((rootSeq += 1)) }).start()),
    () => void roots.push(createActor(createWorkflowMachine(STEPS), { input: workflowInput((rootSeq += 1)) }).start()),
  ];
  const batches = targets.map((_, index) => new Batches(buses[index]?.runtime.pooledCount("workflow") ?? 0));
  const deletions = buses.map((pooled) => new Batches(pooled.runtime.pooledCount("workflow")));
  await settle();
  for (let cycle = 0; cycle < CYCLES; cycle += 1) {
    await interleave(targets.length, WINDOW / BATCH, async (index) => {
      const create = targets[index];
      if (create !== undefined) await batches[index]?.time(BATCH, create);
    });
    await interleave(buses.length, WINDOW / BATCH, async (index) => {
      const pooled = buses[index];
      if (pooled !== undefined) await deletions[index]?.time(BATCH, () => pooled.deleteOne());
    });
    for (const root of roots.splice(0)) root.stop();
  }
  for (const [index, pooled] of buses.entries()) {
    const live = pooled.runtime.pooledCount("workflow");
    if (live !== SIZES[index]) throw new Error(`pools bench: ${formatCount(live)} workflows left, expected ${formatCount(SIZES[index] ?? 0)}`);
  }
  const costs = await costsOf(batches);
  const [prebuiltMachine, machinePerWorkflow] = costs.slice(buses.length);
  if (prebuiltMachine === undefined || machinePerWorkflow === undefined) throw new Error("pools bench: a root actor baseline is missing");
  return {
    workflowCreation: compareToFirst(costs.slice(0, buses.length)),
    workflowDeletion: compareToFirst(await costsOf(deletions)),
    workflowRootActor: { prebuiltMachine, machinePerWorkflow },
  };
}

/** Delivery creation on a bus per size. Each window's messages time out (the clock moves past them), untimed. */
async function timeDeliveryCreation(buses: PooledBus[]): Promise<ComparedCost[]> {
  const batches = buses.map((pooled) => new Batches(queuedDeliveries(pooled)));
  await settle();
  for (let cycle = 0; cycle < CYCLES; cycle += 1) {
    await interleave(buses.length, WINDOW / BATCH, async (index) => {
      const pooled = buses[index];
      if (pooled !== undefined) await batches[index]?.time(BATCH, () => pooled.bus.send(message(WINDOW_TIMEOUT)));
    });
    for (const pooled of buses) pooled.clock.increment(WINDOW_TIMEOUT_MS);
  }
  for (const [index, pooled] of buses.entries()) {
    const live = queuedDeliveries(pooled);
    if (live !== SIZES[index]) throw new Error(`pools bench: ${formatCount(live)} deliveries left, expected ${formatCount(SIZES[index] ?? 0)}`);
  }
  return compareToFirst(await costsOf(batches));
}

/** Creates, completes and evicts `HEAP_WORKFLOWS` workflows, `HEAP_ROUNDS` times, on one bus. */
async function measureWorkflowHeap(): Promise<WorkflowHeapRound[]> {
  const pooled = await PooledBus.start();
  const { sessionManager } = pooled.bus;
  const runRound = (count: number): string[] => {
    const sessionIds = Array.from({ length: count }, () => pooled.createWorkflow());
    pooled.keepCreated();
    return sessionIds;
  };
  const endAndEvict = (sessionIds: string[]): void => {
    for (const sessionId of sessionIds) sessionManager.completeSession(sessionId, { summary: "ok" });
    pooled.clock.increment(RETENTION_MS);
  };
  endAndEvict(runRound(WARMUP));
  const rounds: WorkflowHeapRound[] = [];
  for (let round = 0; round < HEAP_ROUNDS; round += 1) {
    const heapBefore = heapUsedAfterGc();
    const sessionIds = runRound(HEAP_WORKFLOWS);
    const heapLive = heapUsedAfterGc();
    endAndEvict(sessionIds.splice(0));
    const heapAfter = heapUsedAfterGc();
    if (pooled.runtime.pooledCount("workflow") !== 0) throw new Error("pools bench: workflows were not evicted");
    rounds.push({
      workflows: HEAP_WORKFLOWS,
      bytesPerLiveWorkflow: (heapLive - heapBefore) / HEAP_WORKFLOWS,
      bytesPerEvictedWorkflow: (heapAfter - heapBefore) / HEAP_WORKFLOWS,
    });
    const last = rounds.at(-1);
    progress(
      `pools: ${formatCount(HEAP_WORKFLOWS)} workflows, ${((last?.bytesPerLiveWorkflow ?? 0) / 1024).toFixed(2)} KiB each while live, ${(last?.bytesPerEvictedWorkflow ?? 0).toFixed(0)} B each once evicted`,
    );
  }
  await pooled.stop();
  return rounds;
}

/** Runs every path once on throwaway buses, so that no size pays for the JIT. */
async function warmUp(): Promise<void> {
  const pooled = await PooledBus.start();
  for (let index = 0; index < WARMUP; index += 1) pooled.createWorkflow();
  pooled.deleteCreated();
  for (let index = 0; index < WARMUP; index += 1) await pooled.bus.send(message(WINDOW_TIMEOUT));
  pooled.clock.increment(WINDOW_TIMEOUT_MS);
  for (let index = 0; index < WARMUP; index += 1)
    createActor(createWorkflowMachine(STEPS), { input: workflowInput(index) })
      .start()
      .stop();
  await pooled.stop();
}

/** Runs the pools bench. */
export async function runPoolsBench(): Promise<PoolsBenchResult> {
  progress("pools: warming up on a throwaway bus");
  await warmUp();
  const workflowBuses: PooledBus[] = [];
  for (const size of SIZES) {
    const pooled = await PooledBus.start();
    fillWorkflows(pooled, size);
    workflowBuses.push(pooled);
  }
  progress(
    `pools: ${CYCLES} windows of ${WINDOW} workflow creations, then deletions, at each of ${SIZES.map(formatCount).join(", ")} live, beside root actors`,
  );
  const workflows = await timeWorkflows(workflowBuses);
  for (const pooled of workflowBuses) await pooled.stop();

  const deliveryBuses: PooledBus[] = [];
  for (const size of SIZES) {
    const pooled = await PooledBus.start();
    await fillDeliveries(pooled, size);
    deliveryBuses.push(pooled);
  }
  progress(`pools: ${CYCLES} windows of ${WINDOW} message deliveries at each of ${SIZES.map(formatCount).join(", ")} live`);
  const deliveryCreation = await timeDeliveryCreation(deliveryBuses);
  for (const pooled of deliveryBuses) await pooled.stop();

  progress(`pools: heap of ${formatCount(HEAP_WORKFLOWS)} workflows while live and once ended and evicted`);
  const workflowHeap = await measureWorkflowHeap();
  return { ...workflows, deliveryCreation, workflowHeap };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runPoolsBench();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  process.exit(0);
}
