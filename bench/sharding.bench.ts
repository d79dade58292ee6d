/**
 * Why sessions are sharded: the same session machine spawned directly under one parent, against the
 * supervisor that spreads sessions over shards of `shardSize`.
 *
 * XState copies a parent's `children` record on every spawn and every stop, so one parent with n children
 * pays O(n) per spawn; the supervisor's shards bound that n. Both are driven with plain `send`, no bridge, so
 * the difference is the topology alone. The direct parent stops at 5k children (its fill is quadratic); its
 * cost at 10k is extrapolated from the line through 1k and 5k, and reported as such.
 */
import { createActor, enqueueActions, setup, type AnyActor } from "xstate";
import type { SessionSpawnInput } from "../machines/session-shard.machine.js";
import { sessionMachine, type SessionInput } from "../machines/session.machine.js";
import { supervisorMachine } from "../machines/supervisor.machine.js";
import { systemClock, unrefClock, type Clock } from "../src/clock.js";
import { useDelayQueue } from "../src/runtime/delay-queue.js";
import { resolveLimits } from "../src/runtime/options.js";
import { Batches, compareToFirst, costsOf, formatCount, fullOrQuick, progress, settle, type ComparedCost, type Cost } from "./measure.js";

/** Children of the direct parent at which a spawn is timed; the first is the baseline. */
const DIRECT_SIZES = fullOrQuick([1_000, 5_000], [100, 200]);
/** Live sessions of the supervisor at which a spawn is timed; the first is the baseline. */
const SHARDED_SIZES = fullOrQuick([1_000, 10_000, 100_000], [100, 200, 400]);
/** The size the direct parent's cost is extrapolated to, to set it beside the supervisor's. */
const EXTRAPOLATED_SIZE = fullOrQuick(10_000, 400);
/** Spawns timed per size, and per batch. */
const DIRECT_WINDOW = fullOrQuick(200, 20);
const DIRECT_BATCH = fullOrQuick(20, 10);
const SHARDED_WINDOW = fullOrQuick(2_000, 20);
const SHARDED_BATCH = fullOrQuick(50, 10);

/** Everything the sharding bench measures. */
export interface ShardingBenchResult {
  direct: ComparedCost[];
  /** The direct parent's cost at `EXTRAPOLATED_SIZE`, on the line through its two measured sizes. */
  directExtrapolated: { live: number; medianMicros: number };
  sharded: ComparedCost[];
  shardSize: number;
}

const limits = resolveLimits({});
let sessionSeq = 0;

/** A session input as the runtime makes it with the default limits (both expiry timers on). */
function sessionSpawnInput(): SessionSpawnInput {
  sessionSeq += 1;
  return {
    sessionId: `bench-session-${sessionSeq}`,
    agentId: "echo",
    metadata: {},
    createdAt: Date.now(),
    ttlMs: limits.sessionTtlMs,
    idleMs: limits.sessionIdleMs,
    maxQueuedPrompts: limits.maxQueuedPrompts,
    historyWindow: limits.historyWindow,
  };
}

/** One parent holding every session as its direct child: what the supervisor avoids. */
const directParentMachine = setup({
  types: {
    events: {} as { type: "SPAWN"; session: SessionInput },
  },
  actors: { session: sessionMachine },
}).createMachine({
  id: "directParent",
  on: {
    SPAWN: {
      actions: enqueueActions(({ enqueue, event }) => {
        const { sessionId } = event.session;
        enqueue.spawnChild("session", { id: sessionId, systemId: sessionId, input: event.session });
      }),
    },
  },
});

/**
 * The system clock with unref'd timers, which can cancel every timer it set: once its timers are gone,
 * nothing outside the bench holds an actor system, and dropping the actor frees it. (Stopping the root
 * would stop its children one by one, each stop copying the remaining `children`: quadratic for the direct
 * parent, seconds at 5k, and not what this bench measures.)
 */
class CancellableClock implements Clock {
  private readonly clock = unrefClock(systemClock);
  private readonly handles = new Set<unknown>();

  now(): number {
    return this.clock.now();
  }

  setTimeout(callback: () => void, delayMs: number): unknown {
    const handle = this.clock.setTimeout(() => {
      this.handles.delete(handle);
      callback();
    }, delayMs);
    this.handles.add(handle);
    return handle;
  }

  clearTimeout(handle: unknown): void {
    this.handles.delete(handle);
    this.clock.clearTimeout(handle);
  }

  clearAll(): void {
    for (const handle of this.handles) this.clock.clearTimeout(handle);
    this.handles.clear();
  }
}

/** An actor under test, and how to add one session to it. */
interface SpawningActor {
  clock: CancellableClock;
  spawned: number;
  spawn(): void;
}

/** Starts an actor with the runtime's scheduler of delays, as the runtime does. */
function startActor<TActor extends AnyActor>(actor: TActor, clock: Clock): TActor {
  useDelayQueue(actor.system, clock, { shareTimer: true });
  return actor.start();
}

function directParent(): SpawningActor {
  const clock = new CancellableClock();
  const actor = startActor(createActor(directParentMachine, { clock }), clock);
  const target: SpawningActor = {
    clock,
    spawned: 0,
    spawn() {
      actor.send({ type: "SPAWN", session: { ...sessionSpawnInput(), shardId: "direct" } });
      target.spawned += 1;
    },
  };
  return target;
}

function shardedSupervisor(): SpawningActor {
  const clock = new CancellableClock();
  const actor = startActor(createActor(supervisorMachine, { clock, input: { maxSessions: 200_000, shardSize: limits.shardSize, maxWorkflows: 0 } }), clock);
  const target: SpawningActor = {
    clock,
    spawned: 0,
    spawn() {
      actor.send({ type: "SESSION.CREATE", session: sessionSpawnInput() });
      target.spawned += 1;
    },
  };
  return target;
}

/**
 * Fills one actor per size, then times a window of `window` spawns on each, in batches of `batch` taken from
 * each actor in turn (in reverse order every other round). Nothing is removed: a removal would copy the
 * parent's `children` too, and leave it in V8's slower dictionary mode for the spawns after it.
 */
async function spawnCosts(label: string, make: () => SpawningActor, sizes: number[], window: number, batch: number): Promise<Cost[]> {
  const targets: SpawningActor[] = [];
  for (const size of sizes) {
    const target = make();
    const startedAt = performance.now();
    while (target.spawned < size) target.spawn();
    progress(`sharding: ${label} filled to ${formatCount(size)} in ${((performance.now() - startedAt) / 1000).toFixed(1)} s`);
    targets.push(target);
  }
  const batchesByTarget = targets.map((target) => new Batches(target.spawned));
  await settle();
  for (let round = 0; round < window / batch; round += 1) {
    const order = [...targets.entries()];
    if (round % 2 === 1) order.reverse();
    for (const [index, target] of order) await batchesByTarget[index]?.time(batch, () => target.spawn());
  }
  for (const target of targets) target.clock.clearAll();
  return costsOf(batchesByTarget);
}

/** Runs the sharding bench. */
export async function runShardingBench(): Promise<ShardingBenchResult> {
  const direct = compareToFirst(await spawnCosts("direct parent", directParent, DIRECT_SIZES, DIRECT_WINDOW, DIRECT_BATCH));
  const sharded = compareToFirst(await spawnCosts("supervisor", shardedSupervisor, SHARDED_SIZES, SHARDED_WINDOW, SHARDED_BATCH));
  const [first, last] = [direct[0], direct.at(-1)];
  const slope = first && last && last.live !== first.live ? (last.medianMicros - first.medianMicros) / (last.live - first.live) : Number.NaN;
  const directExtrapolated = {
    live: EXTRAPOLATED_SIZE,
    medianMicros: (first?.medianMicros ?? Number.NaN) + slope * (EXTRAPOLATED_SIZE - (first?.live ?? 0)),
  };
  return { direct, directExtrapolated, sharded, shardSize: limits.shardSize };
}
