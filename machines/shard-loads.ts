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

/** Sealed loads by number, `SEALED_CHUNK` to a chunk: `null` where no sealed shard has that number. */
export type SealedChunk = Array<ShardLoad | null>;

/**
 * The shards of one parent: the one new children go to, and the full ones that still hold children, each by
 * its number: shard N's load is `sealed[N / 32][N % 32]` (a chunk or a load is `null` where there is none).
 * Found by number, a release neither searches hundreds of shards (at 782 shards, 100,000 sessions, the three
 * searches of a release cost more than the rest of a close) nor copies them all: it copies one chunk and the
 * list of chunks.
 */
export interface ShardLoads {
  current: ShardLoad | null;
  sealed: Array<SealedChunk | null>;
}

/** Loads per chunk of `ShardLoads.sealed`. */
const SEALED_CHUNK = 32;

/** Every live shard: the sealed ones by number, then the current one. */
export function liveShards(loads: ShardLoads): ShardLoad[] {
  const live: ShardLoad[] = [];
  for (const chunk of loads.sealed) for (const shard of chunk ?? []) if (shard !== null) live.push(shard);
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

/** The sealed load of shard `number`, if any. */
function sealedLoad(loads: ShardLoads, number: number): ShardLoad | null {
  return loads.sealed[Math.floor(number / SEALED_CHUNK)]?.[number % SEALED_CHUNK] ?? null;
}

/**
 * The sealed loads with shard `number`'s set to `load` (`null` takes it out), copying one chunk and the list of
 * chunks (the context is never changed in place). Trailing nulls are left out, and so are empty chunks, so that
 * the same shards always make the same value.
 */
function withSealed(sealed: ShardLoads["sealed"], number: number, load: ShardLoad | null): ShardLoads["sealed"] {
  const chunkIndex = Math.floor(number / SEALED_CHUNK);
  const chunk = (sealed[chunkIndex] ?? []).slice();
  while (chunk.length < number % SEALED_CHUNK) chunk.push(null);
  chunk[number % SEALED_CHUNK] = load;
  while (chunk.length > 0 && chunk[chunk.length - 1] === null) chunk.pop();
  const chunks = sealed.slice();
  while (chunks.length < chunkIndex) chunks.push(null);
  chunks[chunkIndex] = chunk.length === 0 ? null : chunk;
  while (chunks.length > 0 && chunks[chunks.length - 1] === null) chunks.pop();
  return chunks;
}

/** The load of a live shard. */
export function shardLoadOf(loads: ShardLoads, shardId: string): ShardLoad | undefined {
  if (loads.current?.shardId === shardId) return loads.current;
  const sealed = sealedLoad(loads, shardNumberOf(shardId));
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
  const sealed = loads.current === null ? loads.sealed : withSealed(loads.sealed, shardNumberOf(loads.current.shardId), loads.current);
  let number = 0;
  while (sealedLoad({ current: null, sealed }, number) !== null) number += 1;
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
  return { sealed: withSealed(loads.sealed, shardNumberOf(shardId), load) };
}
