/**
 * The shard bookkeeping of the supervisor and the pools over many shards: loads found by number across
 * chunks, the lowest free number reused, and one value for one set of shards however it was reached.
 */
import { describe, expect, it } from "vitest";
import {
  drainsFullShard,
  liveShards,
  needsNewShard,
  openShard,
  placeChild,
  releaseChild,
  shardLoadOf,
  shardLocalId,
  withoutShard,
  type ShardLoads,
} from "../../machines/shard-loads.js";

const SHARD_SIZE = 2;

/** Places `count` children, opening shards as the supervisor does. */
function place(loads: ShardLoads, count: number): ShardLoads {
  let placed = loads;
  for (let index = 0; index < count; index += 1) {
    if (needsNewShard(placed, SHARD_SIZE)) placed = openShard(placed, "shard");
    placed = placeChild(placed);
  }
  return placed;
}

/** Releases every child of `shardId`, reaping it when it drains, as the supervisor does. */
function drain(loads: ShardLoads, shardId: string): ShardLoads {
  let drained = loads;
  while ((shardLoadOf(drained, shardId)?.live ?? 0) > 0) {
    const reaps = drainsFullShard(drained, shardId, SHARD_SIZE);
    drained = { ...drained, ...releaseChild(drained, shardId) };
    if (reaps) drained = { ...drained, ...withoutShard(drained, shardId) };
  }
  return drained;
}

const empty: ShardLoads = { current: null, sealed: [] };

describe("shard loads", () => {
  it("finds every shard's load by its number, across chunks of sealed shards", () => {
    const loads = place(empty, 2 * 100 + 1);
    expect(liveShards(loads).map((shard) => shard.shardId)).toEqual(Array.from({ length: 101 }, (_, index) => `shard-${index}`));
    for (let index = 0; index < 100; index += 1) expect(shardLoadOf(loads, `shard-${index}`)).toEqual({ shardId: `shard-${index}`, spawned: 2, live: 2 });
    expect(loads.current).toEqual({ shardId: "shard-100", spawned: 1, live: 1 });
    expect(shardLoadOf(loads, "shard-101")).toBeUndefined();
    expect(shardLoadOf(loads, "workflows-3")).toBeUndefined();
  });

  it("counts a release in its shard only, and reaps a full shard once it is empty", () => {
    const loads = place(empty, 2 * 70);
    const released = { ...loads, ...releaseChild(loads, "shard-40") };
    expect(shardLoadOf(released, "shard-40")?.live).toBe(1);
    expect(
      liveShards(released)
        .filter((shard) => shard.live === 1)
        .map((shard) => shard.shardId),
    ).toEqual(["shard-40"]);
    const reaped = drain(loads, "shard-40");
    expect(shardLoadOf(reaped, "shard-40")).toBeUndefined();
    expect(liveShards(reaped)).toHaveLength(69);
  });

  it("gives a new shard the lowest free number, in any chunk", () => {
    let loads = place(empty, 2 * 70);
    loads = drain(drain(loads, "shard-45"), "shard-3");
    loads = place(loads, 2);
    expect(loads.current?.shardId).toBe("shard-3");
    loads = place(loads, 2);
    expect(loads.current?.shardId).toBe("shard-45");
    loads = place(loads, 2);
    expect(loads.current?.shardId).toBe("shard-70");
  });

  it("holds the same value for the same shards, however they came and went", () => {
    const direct = place(empty, 2 * 40);
    let roundabout = place(empty, 2 * 40);
    for (const shardId of ["shard-35", "shard-39", "shard-2"]) roundabout = drain(roundabout, shardId);
    roundabout = place(roundabout, 2 * 3);
    expect(JSON.stringify(roundabout)).toBe(JSON.stringify(direct));
    const emptied = liveShards(direct).reduce((loads, shard) => drain(loads, shard.shardId), direct);
    expect(emptied.sealed).toEqual([]);
  });

  it("names a shard among its parent's children by its number", () => {
    expect(shardLocalId("shard-12")).toBe("12");
    expect(shardLocalId("workflows-0")).toBe("0");
  });
});
