/**
 * A pool: the supervisor's child that owns every actor of one kind besides sessions (workflow sessions,
 * message deliveries, agents, conversations), spread over pool shards so that spawning stays flat.
 *
 * It places each new child in its current shard, opens a new shard every `shardSize` children, counts the
 * children alive (ended-but-retained ones included), refuses a child past `capacity` (0: unbounded), reaps
 * shards that are full and empty, and forwards evictions to its shards. What became of a child reaches the
 * runtime as the emitted `child.released`, with the child's ending (its final output), which is all that is
 * kept of it.
 */
import { enqueueActions, setup, stopChild } from "xstate";
import {
  drainsFullShard,
  liveShards,
  needsNewShard,
  openShard,
  placeChild,
  releaseChild,
  shardLoadOf,
  shardLocalId,
  shardSpawnOptions,
  withoutShard,
  type ShardLoad,
  type ShardLoads,
} from "./shard-loads.js";
import { poolShardMachine, type ChildReleasedEvent, type PoolChildEnding, type PoolChildSource, type PoolShardEvent } from "./pool-shard.machine.js";

/** The kinds of pooled children. */
export type PoolKind = "workflow" | "delivery" | "agent" | "conversation";

/** The shards of a pool are named `<prefix>-N`. */
const SHARD_PREFIX: Record<PoolKind, string> = { workflow: "workflows", delivery: "deliveries", agent: "agents", conversation: "conversations" };

/** How full one pool shard is. */
export type PoolShardLoad = ShardLoad;

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
  /** Full shards that still hold children, each at the index of its number (see `ShardLoads`). */
  sealed: ShardLoads["sealed"];
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

/** Every live shard of a pool: the sealed ones by number, then the current one. */
export const livePoolShards: (context: PoolContext) => PoolShardLoad[] = liveShards;

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
    needsNewShard: ({ context }) => needsNewShard(context, context.shardSize),
    holdsShard: ({ context }, params: { shardId: string | undefined }) => params.shardId !== undefined && shardLoadOf(context, params.shardId) !== undefined,
    drainsFullShard: ({ context }, params: { shardId: string }) => drainsFullShard(context, params.shardId, context.shardSize),
  },
  actions: {
    openShard: enqueueActions(({ context, enqueue }) => {
      const opened = openShard(context, SHARD_PREFIX[context.kind]);
      const { shardId } = opened.current as ShardLoad;
      enqueue.spawnChild("poolShard", shardSpawnOptions(shardId));
      enqueue.assign(opened);
    }),
    place: enqueueActions(({ context, enqueue }, params: { childId: string; src: PoolChildSource; input: unknown }) => {
      const shard = context.current;
      if (shard === null) return;
      enqueue.sendTo(shardLocalId(shard.shardId), { type: "SHARD.SPAWN", ...params, slot: shard.spawned } satisfies PoolShardEvent);
      enqueue.assign({ live: context.live + 1, ...placeChild(context) });
    }),
    reject: enqueueActions(({ context, enqueue }, params: { childId: string }) => {
      enqueue.emit({ type: "child.rejected", kind: context.kind, childId: params.childId, capacity: context.capacity });
    }),
    countRelease: enqueueActions(({ context, enqueue }, params: { shardId: string; childId: string; ending: PoolChildEnding }) => {
      if (shardLoadOf(context, params.shardId) === undefined) return;
      enqueue.assign({ live: context.live - 1, ...releaseChild(context, params.shardId) });
      enqueue.emit({ type: "child.released", kind: context.kind, childId: params.childId, ending: params.ending });
    }),
    reapShard: enqueueActions(({ context, enqueue }, params: { shardId: string }) => {
      enqueue(stopChild(shardLocalId(params.shardId)));
      enqueue.assign(withoutShard(context, params.shardId));
    }),
    sendToShard: enqueueActions(({ enqueue }, params: { shardId: string; event: PoolShardEvent }) => {
      enqueue.sendTo(shardLocalId(params.shardId), params.event);
    }),
    /** When the pool is not told which shard holds a child, it asks every live shard. */
    broadcast: enqueueActions(({ context, enqueue }, params: { event: PoolShardEvent }) => {
      for (const shard of livePoolShards(context)) enqueue.sendTo(shardLocalId(shard.shardId), params.event);
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
            actions: {
              type: "sendToShard",
              params: ({ event }) => ({ shardId: event.shardId ?? "", event: { type: "SHARD.EVICT", childId: event.childId } as const }),
            },
          },
          { actions: { type: "broadcast", params: ({ event }) => ({ event: { type: "SHARD.EVICT", childId: event.childId } as const }) } },
        ],
        "POOL.CLEAR": { actions: { type: "broadcast", params: { event: { type: "SHARD.CLEAR" } } } },
      },
    },
  },
});
