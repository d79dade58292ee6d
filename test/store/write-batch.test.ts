/**
 * The write path every store shares: one commit per event-loop turn, one commit at a time, and a failed
 * commit that rejects its flushes and keeps its writes for the next one.
 */
import { describe, expect, it } from "vitest";
import { BridgeError } from "../../src/errors.js";
import { WriteBatcher, type WriteOp } from "../../src/store/write-batch.js";

/** A backend that records every batch it is given, and fails or waits when told to. */
function recordingBackend() {
  const batches: WriteOp[][] = [];
  const failures: Error[] = [];
  let gate: Promise<void> | undefined;
  const batcher = new WriteBatcher(async (ops) => {
    batches.push([...ops]);
    if (gate !== undefined) await gate;
    const failure = failures.shift();
    if (failure !== undefined) throw failure;
  });
  return {
    batcher,
    batches,
    failNext: (error: Error) => failures.push(error),
    /** Holds every commit until the returned function is called. */
    hold: () => {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return () => {
        gate = undefined;
        release();
      };
    },
  };
}

function summary(ops: WriteOp[]): string[] {
  return ops.map(({ id, json }) => `${id}=${json ?? "deleted"}`);
}

describe("the write batcher", () => {
  it("commits every write of one turn, microtasks included, in one batch", async () => {
    const { batcher, batches } = recordingBackend();
    for (let index = 0; index < 1_000; index++) batcher.put("messages", `m${index}`, index);
    await Promise.resolve();
    batcher.put("messages", "from-a-microtask", true);
    await batcher.flush();
    expect(batches).toHaveLength(1);
    expect(batches[0]).toHaveLength(1_001);
    batcher.put("messages", "next-turn", true);
    await batcher.flush();
    expect(batches.map((batch) => batch.length)).toEqual([1_001, 1]);
  });

  it("keeps the last write to each record of a batch, in the order of those last writes", async () => {
    const { batcher, batches } = recordingBackend();
    batcher.put("agents", "a", 1);
    batcher.put("agents", "b", 1);
    batcher.put("agents", "a", 2);
    batcher.delete("agents", "b");
    batcher.put("meta", "a", 3);
    await batcher.flush();
    expect(summary(batches[0]!)).toEqual(["a=2", "b=deleted", "a=3"]);
    expect(batches[0]!.map((op) => op.collection)).toEqual(["agents", "agents", "meta"]);
  });

  it("runs one commit at a time: writes made during a commit wait for the next", async () => {
    const { batcher, batches, hold } = recordingBackend();
    const release = hold();
    batcher.put("messages", "first", 1);
    const firstFlush = batcher.flush();
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toHaveLength(1);
    batcher.put("messages", "second", 2);
    const secondFlush = batcher.flush();
    await new Promise((resolve) => setImmediate(resolve));
    expect(batches).toHaveLength(1);
    release();
    await Promise.all([firstFlush, secondFlush]);
    expect(batches.map(summary)).toEqual([["first=1"], ["second=2"]]);
  });

  it("resolves a flush with nothing enqueued at once, and one made during a commit when that commit ends", async () => {
    const { batcher, hold } = recordingBackend();
    await batcher.flush();
    const release = hold();
    batcher.put("messages", "slow", 1);
    await new Promise((resolve) => setImmediate(resolve));
    let flushed = false;
    const flush = batcher.flush().then(() => (flushed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(flushed).toBe(false);
    release();
    await flush;
    expect(flushed).toBe(true);
  });

  it("rejects the flushes of a failed commit with a BridgeError, and commits its writes with the next batch", async () => {
    const { batcher, batches, failNext } = recordingBackend();
    failNext(Object.assign(new Error("disk I/O error"), { code: "SQLITE_IOERR" }));
    batcher.put("messages", "lost?", 1);
    batcher.put("messages", "overwritten", "old");
    const error = await batcher.flush().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).type).toBe("INTERNAL");
    expect((error as BridgeError).message).toBe("Store commit failed (its 2 writes are kept for the next commit): disk I/O error");
    expect((error as BridgeError).details).toMatchObject({ code: "SQLITE_IOERR", retryable: true });

    batcher.put("messages", "overwritten", "new");
    batcher.put("messages", "later", 2);
    await batcher.flush();
    expect(batches.map(summary)).toEqual([
      ["lost?=1", 'overwritten="old"'],
      ["lost?=1", 'overwritten="new"', "later=2"],
    ]);
  });

  it("joins a move to the put before it under the same fence, a failed commit's put too, and keeps it apart, after it, under another", async () => {
    const { batcher, batches, failNext } = recordingBackend();
    failNext(new Error("connection reset"));
    const fence = { resource: "node:node-a", token: 3 };
    batcher.put("workflows", "w1", { node: "node-a", n: 1 }, { fence });
    batcher.put("workflows", "w2", { node: "node-a", n: 2 });
    await batcher.flush().catch(() => undefined);
    batcher.move("workflows", "w1", "node-b", { fence: { ...fence } });
    batcher.move("workflows", "w2", "node-b", { fence });
    batcher.delete("workflows", "w3");
    batcher.move("workflows", "w3", "node-b");
    await batcher.flush();
    // In the order of each record's last write.
    expect(batches[1]).toEqual([
      { collection: "workflows", id: "w2", json: '{"node":"node-a","n":2}', node: "node-a" },
      { collection: "workflows", id: "w1", json: '{"node":"node-a","n":1}', node: "node-b", fence },
      { collection: "workflows", id: "w2", json: undefined, node: "node-b", moved: true, fence },
      { collection: "workflows", id: "w3", json: undefined },
    ]);
    // A put or a delete after a move replaces it.
    batcher.move("workflows", "w1", "node-c", { fence });
    batcher.put("workflows", "w1", { node: "node-a" });
    await batcher.flush();
    expect(batches[2]).toEqual([{ collection: "workflows", id: "w1", json: '{"node":"node-a"}', node: "node-a" }]);
  });

  it("keeps a backend's own BridgeError type (a network store's TRANSPORT)", async () => {
    const { batcher, failNext } = recordingBackend();
    failNext(new BridgeError("TRANSPORT", "connection reset"));
    batcher.put("agents", "a", 1);
    const error = (await batcher.flush().catch((caught: unknown) => caught)) as BridgeError;
    expect([error.type, error.message]).toEqual(["TRANSPORT", "Store commit failed (its 1 write is kept for the next commit): connection reset"]);
  });

  it("retries the writes of a failed commit that nobody waited for at the next flush, without an unhandled rejection", async () => {
    const { batcher, batches, failNext } = recordingBackend();
    failNext(new Error("database is locked"));
    batcher.put("agents", "a", 1);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    // Nothing retries on its own: a store that keeps failing does not spin.
    expect(batches).toHaveLength(1);
    await batcher.flush();
    expect(batches.map(summary)).toEqual([["a=1"], ["a=1"]]);
  });

  it("commits what is enqueued at close, then refuses writes; a failing last commit says how many writes it lost", async () => {
    const { batcher, batches } = recordingBackend();
    batcher.put("agents", "a", 1);
    await batcher.close();
    expect(batches.map(summary)).toEqual([["a=1"]]);
    expect(() => batcher.put("agents", "b", 1)).toThrow(/Store is closed/);
    await expect(batcher.beforeRead()).rejects.toThrow(/Store is closed/);

    const failing = recordingBackend();
    failing.failNext(new Error("disk full"));
    failing.batcher.put("agents", "a", 1);
    failing.batcher.put("agents", "b", 2);
    const error = (await failing.batcher.close().catch((caught: unknown) => caught)) as BridgeError;
    expect(error).toBeInstanceOf(BridgeError);
    expect(error.message).toMatch(/^Store closed with 2 writes that could not be made durable: .*disk full/);
    expect(error.details.lostWrites).toBe(2);
  });
});
