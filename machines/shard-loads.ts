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

/**
 * The shards of one parent: the one new children go to, and the full ones that still hold children, each at
 * the index of its number (`sealed[3]` is `shard-3`; `null` where no sealed shard has that number). Found by
 * number, a release costs the copy of an array of pointers, not a search through hundreds of shards (at 782
 * shards, 100,000 sessions, three searches per release cost more than the rest of a close).
 */
export interface ShardLoads {
  current: ShardLoad | null;
  sealed: Array<ShardLoad | null>;
}

/** Every live shard: the sealed ones by number, then the current one. */
export function liveShards(loads: ShardLoads): ShardLoad[] {
  const live = loads.sealed.filter((shard): shard is ShardLoad => shard !== null);
  if (loads.current !== null) live.push(loads.current);
  return live;
}

/**
 * A shard's id among its parent's children: the number of its shard id (`3` for `shard-3`). A bare index: V8
 * keeps integer keys as elements, so XState's copy of the parent's `children` on each shard spawned or reaped
 * stays cheap. With the shard ids as keys, every copy added them one by one to a new object and its hidden
 * class: at 782 shards (100,000 sessions) each took over a millisecond. The shard is spawned with its shard id
 * as input (`ShardInput`), which it names itself by, and the event stream names it by (`actorIdOf`).
 */
export function shardLocalId(shardId: string): string {
  return shardId.slice(shardId.lastIndexOf("-") + 1);
}

/** What a shard is spawned with: the shard id that its parent's loads, its own events and the event stream name it by. */
export interface ShardInput {
  shardId: string;
}

/** The spawn options of a new shard: its number as its local id, its shard id as its input. */
export function shardSpawnOptions(shardId: string): { id: string; input: ShardInput } {
  return { id: shardLocalId(shardId), input: { shardId } };
}

/** The number of a shard: `3` for `shard-3`. */
function shardNumberOf(shardId: string): number {
  return Number(shardLocalId(shardId));
}

/** The load of a live shard. */
export function shardLoadOf(loads: ShardLoads, shardId: string): ShardLoad | undefined {
  if (loads.current?.shardId === shardId) return loads.current;
  const sealed = loads.sealed[shardNumberOf(shardId)];
  return sealed?.shardId === shardId ? sealed : undefined;
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
  const sealed = loads.sealed.slice();
  if (loads.current !== null) sealed[shardNumberOf(loads.current.shardId)] = loads.current;
  let number = 0;
  while (number < sealed.length && sealed[number] != null) number += 1;
  // `slice` of a shorter array leaves holes: every index of the context holds a load or null.
  for (let index = 0; index < sealed.length; index += 1) sealed[index] ??= null;
  return { sealed, current: { shardId: `${prefix}-${number}`, spawned: 0, live: 0 } };
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
  if (shardLoadOf(loads, shardId) === undefined) return {};
  // A copy with one load changed or taken out (the context is never changed in place), without trailing nulls.
  const sealed = loads.sealed.slice();
  sealed[shardNumberOf(shardId)] = load;
  while (sealed.length > 0 && sealed[sealed.length - 1] === null) sealed.pop();
  return { sealed };
}
