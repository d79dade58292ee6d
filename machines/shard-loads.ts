/**
 * The bookkeeping of a parent that spreads its children over shards (the supervisor's sessions, each pool's
 * children): which shard takes the next child, how full each is, and when a full one is empty. Pure functions
 * over `{ current, sealed }`, so that placing a child costs O(1) whatever the number of children.
 */

/** How full one shard is. A shard is sealed once `spawned` reaches the shard size. */
export interface ShardLoad {
  shardId: string;
  spawned: number;
  live: number;
}

/** The shards of one parent: the one new children go to, and the full ones that still hold children, oldest first. */
export interface ShardLoads {
  current: ShardLoad | null;
  sealed: ShardLoad[];
}

/** Every live shard, oldest first (the current one last). */
export function liveShards(loads: ShardLoads): ShardLoad[] {
  return loads.current === null ? loads.sealed : [...loads.sealed, loads.current];
}

/** The load of a live shard. */
export function shardLoadOf(loads: ShardLoads, shardId: string): ShardLoad | undefined {
  return loads.current?.shardId === shardId ? loads.current : loads.sealed.find((shard) => shard.shardId === shardId);
}

/** Whether the next child needs a new shard: there is none, or the current one is full. */
export function needsNewShard(loads: ShardLoads, shardSize: number): boolean {
  return loads.current === null || loads.current.spawned >= shardSize;
}

/** Whether releasing one child of `shardId` leaves that full shard empty (it is then reaped). */
export function drainsFullShard(loads: ShardLoads, shardId: string, shardSize: number): boolean {
  const shard = shardLoadOf(loads, shardId);
  return shard !== undefined && shard.live === 1 && shard.spawned >= shardSize;
}

/**
 * A new current shard named `<prefix>-N` with the lowest free N (ids stay small and depend only on the live
 * shards); the full current one, which still holds children (it would have been reaped otherwise), is sealed.
 */
export function openShard(loads: ShardLoads, prefix: string): ShardLoads {
  const used = new Set(liveShards(loads).map((shard) => shard.shardId));
  let index = 0;
  while (used.has(`${prefix}-${index}`)) index += 1;
  const sealed = loads.current === null ? loads.sealed : [...loads.sealed, loads.current];
  return { sealed, current: { shardId: `${prefix}-${index}`, spawned: 0, live: 0 } };
}

/** The loads with one child placed in the current shard (open one first when `needsNewShard`). */
export function placeChild(loads: ShardLoads): ShardLoads {
  const shard = loads.current as ShardLoad;
  return { sealed: loads.sealed, current: { ...shard, spawned: shard.spawned + 1, live: shard.live + 1 } };
}

/** The loads with one child of `shardId` released. */
export function releaseChild(loads: ShardLoads, shardId: string): Partial<ShardLoads> {
  const shard = shardLoadOf(loads, shardId);
  return shard === undefined ? {} : withShard(loads, shardId, { ...shard, live: shard.live - 1 });
}

/** The loads without `shardId` (it was reaped). */
export function withoutShard(loads: ShardLoads, shardId: string): Partial<ShardLoads> {
  return withShard(loads, shardId, null);
}

function withShard(loads: ShardLoads, shardId: string, load: ShardLoad | null): Partial<ShardLoads> {
  if (loads.current?.shardId === shardId) return { current: load };
  const sealed = load === null ? loads.sealed.filter((shard) => shard.shardId !== shardId) : loads.sealed.map((shard) => (shard.shardId === shardId ? load : shard));
  return { sealed };
}
