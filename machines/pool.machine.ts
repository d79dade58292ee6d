/**
 * A pool: the supervisor's child that owns every actor of one kind besides sessions (workflow sessions,
 * message deliveries, agents), spread over pool shards so that spawning stays flat.
 *
 * It places each new child in its current shard, opens a new shard every `shardSize` children, counts the
 * children alive (ended-but-retained ones included), refuses a child past `capacity` (0: unbounded), reaps
 * shards that are full and empty, and forwards evictions to its shards. What became of a child reaches the
 * runtime as the emitted `child.released`, with the child's ending (its final output), which is all that is
 * kept of it.
 */
import { enqueueActions, setup, stopChild } from "xstate";
import { poolShardMachine, type ChildReleasedEvent, type PoolChildEnding, type PoolChildSource, type PoolShardEvent } from "./pool-shard.machine.js";

/** The kinds of pooled children. */
export type PoolKind = "workflow" | "delivery" | "agent";

/** The shards of a pool are named `<prefix>-N`. */
const SHARD_PREFIX: Record<PoolKind, string> = { workflow: "workflows", delivery: "deliveries", agent: "agents" };

/** How full one pool shard is. A shard is sealed once `spawned` reaches `shardSize`. */
export interface PoolShardLoad {
  shardId: string;
  spawned: number;
  live: number;
}

/** What the runtime gives a pool. */
export interface PoolInput {
  kind: PoolKind;
  /** Children per shard; bounds what one spawn costs. */
  shardSize: number;
  /** Children alive at once (ended-but-retained ones count); 0 is unbounded. */
  capacity: number;
}

/** The pool's state besides its state value. */
export interface PoolContext extends PoolInput {
  live: number;
  /** The shard new children go to. */
  current: PoolShardLoad | null;
  /** Full shards that still hold children, oldest first. */
  sealed: PoolShardLoad[];
}

/** Events a pool accepts. */
export type PoolEvent =
  | { type: "POOL.SPAWN"; childId: string; src: PoolChildSource; input: unknown }
  /**
   * Reaps a child now, ended or not (its shard reports `stopped` for a live one). `shardId`, the shard that
   * holds it, when the sender knows it: only that shard is asked, instead of every live one.
   */
  | { type: "POOL.EVICT"; childId: string; shardId?: string }
  /** Reaps every child (the owner of this kind of children stops). */
  | { type: "POOL.CLEAR" }
  | ChildReleasedEvent;

/** Events a pool emits. */
export type PoolEmitted =
  | { type: "child.rejected"; kind: PoolKind; childId: string; capacity: number }
  | { type: "child.released"; kind: PoolKind; childId: string; ending: PoolChildEnding };

/** The system id of a pool. */
export function poolSystemId(kind: PoolKind): string {
  return `pool:${kind}`;
}

/** Every live shard of a pool, oldest first (the current one last). */
export function livePoolShards(context: PoolContext): PoolShardLoad[] {
  return context.current === null ? context.sealed : [...context.sealed, context.current];
}

function withShard(context: PoolContext, shardId: string, load: PoolShardLoad | null): Partial<PoolContext> {
  if (context.current?.shardId === shardId) return { current: load };
  const sealed = load === null ? context.sealed.filter((shard) => shard.shardId !== shardId) : context.sealed.map((shard) => (shard.shardId === shardId ? load : shard));
  return { sealed };
}

function shardOf(context: PoolContext, shardId: string): PoolShardLoad | undefined {
  return context.current?.shardId === shardId ? context.current : context.sealed.find((shard) => shard.shardId === shardId);
}

/** The pool machine. */
export const poolMachine = setup({
  types: {
    context: {} as PoolContext,
    events: {} as PoolEvent,
    input: {} as PoolInput,
    emitted: {} as PoolEmitted,
  },
  actors: {
    poolShard: poolShardMachine,
  },
  guards: {
    atCapacity: ({ context }) => context.capacity > 0 && context.live >= context.capacity,
    needsNewShard: ({ context }) => context.current === null || context.current.spawned >= context.shardSize,
    holdsShard: ({ context }, params: { shardId: string | undefined }) => params.shardId !== undefined && shardOf(context, params.shardId) !== undefined,
    drainsFullShard: ({ context }, params: { shardId: string }) => {
      const shard = shardOf(context, params.shardId);
      return shard !== undefined && shard.live === 1 && shard.spawned >= context.shardSize;
    },
  },
  actions: {
    openShard: enqueueActions(({ context, enqueue }) => {
      // Ids stay small and depend only on the live shards: the lowest free number.
      const used = new Set(livePoolShards(context).map((shard) => shard.shardId));
      let index = 0;
      const prefix = SHARD_PREFIX[context.kind];
      while (used.has(`${prefix}-${index}`)) index += 1;
      const shardId = `${prefix}-${index}`;
      enqueue.spawnChild("poolShard", { id: shardId });
      const sealed = context.current === null ? context.sealed : [...context.sealed, context.current];
      enqueue.assign({ sealed, current: { shardId, spawned: 0, live: 0 } });
    }),
    place: enqueueActions(({ context, enqueue }, params: { childId: string; src: PoolChildSource; input: unknown }) => {
      const shard = context.current;
      if (shard === null) return;
      enqueue.sendTo(shard.shardId, { type: "SHARD.SPAWN", ...params, slot: shard.spawned } satisfies PoolShardEvent);
      enqueue.assign({ live: context.live + 1, current: { ...shard, spawned: shard.spawned + 1, live: shard.live + 1 } });
    }),
    reject: enqueueActions(({ context, enqueue }, params: { childId: string }) => {
      enqueue.emit({ type: "child.rejected", kind: context.kind, childId: params.childId, capacity: context.capacity });
    }),
    countRelease: enqueueActions(({ context, enqueue }, params: { shardId: string; childId: string; ending: PoolChildEnding }) => {
      const shard = shardOf(context, params.shardId);
      if (shard === undefined) return;
      enqueue.assign({ live: context.live - 1, ...withShard(context, shard.shardId, { ...shard, live: shard.live - 1 }) });
      enqueue.emit({ type: "child.released", kind: context.kind, childId: params.childId, ending: params.ending });
    }),
    reapShard: enqueueActions(({ context, enqueue }, params: { shardId: string }) => {
      enqueue(stopChild(params.shardId));
      enqueue.assign(withShard(context, params.shardId, null));
    }),
    sendToShard: enqueueActions(({ enqueue }, params: { shardId: string; event: PoolShardEvent }) => {
      enqueue.sendTo(params.shardId, params.event);
    }),
    /** When the pool is not told which shard holds a child, it asks every live shard. */
    broadcast: enqueueActions(({ context, enqueue }, params: { event: PoolShardEvent }) => {
      for (const shard of livePoolShards(context)) enqueue.sendTo(shard.shardId, params.event);
    }),
  },
}).createMachine({
  id: "pool",
  context: ({ input }) => ({ ...input, live: 0, current: null, sealed: [] }),
  initial: "serving",
  states: {
    serving: {
      description: "Places children in shards, counts them, and reaps shards that are full and empty.",
      on: {
        "POOL.SPAWN": [
          { guard: "atCapacity", actions: { type: "reject", params: ({ event }) => ({ childId: event.childId }) } },
          {
            guard: "needsNewShard",
            actions: ["openShard", { type: "place", params: ({ event }) => ({ childId: event.childId, src: event.src, input: event.input }) }],
          },
          { actions: { type: "place", params: ({ event }) => ({ childId: event.childId, src: event.src, input: event.input }) } },
        ],
        "CHILD.RELEASED": [
          {
            guard: { type: "drainsFullShard", params: ({ event }) => ({ shardId: event.shardId }) },
            actions: [
              { type: "countRelease", params: ({ event }) => ({ shardId: event.shardId, childId: event.childId, ending: event.ending }) },
              { type: "reapShard", params: ({ event }) => ({ shardId: event.shardId }) },
            ],
          },
          { actions: { type: "countRelease", params: ({ event }) => ({ shardId: event.shardId, childId: event.childId, ending: event.ending }) } },
        ],
        "POOL.EVICT": [
          {
            guard: { type: "holdsShard", params: ({ event }) => ({ shardId: event.shardId }) },
            actions: { type: "sendToShard", params: ({ event }) => ({ shardId: event.shardId ?? "", event: { type: "SHARD.EVICT", childId: event.childId } as const }) },
          },
          { actions: { type: "broadcast", params: ({ event }) => ({ event: { type: "SHARD.EVICT", childId: event.childId } as const }) } },
        ],
        "POOL.CLEAR": { actions: { type: "broadcast", params: { event: { type: "SHARD.CLEAR" } } } },
      },
    },
  },
});
