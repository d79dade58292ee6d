/**
 * The write path every store shares: writes are checked and serialized when they are enqueued, gathered for
 * the rest of the event-loop turn, and committed by the backend in one transaction per batch.
 */
import { BridgeError, toBridgeError } from "../errors.js";
import { checkFence } from "./fences.js";
import { checkCollection, checkListOptions, checkRecordKey, isUnstorableId } from "./keys.js";
import type { Fence, ListOptions, Store, StoreCollection, StoreRecord, WriteOptions } from "./store.js";

/**
 * One write of a batch: `json` is the serialized value, `undefined` for a delete or a move; `node` the record's
 * node (the index of `list`'s `node` option): its value's top-level `node` when it is a string, or the node a
 * `move` gives it; `moved` for a move (only the record's node changes, its value stays as stored); `fence` its
 * writer's claim, if any.
 */
export interface WriteOp {
  collection: StoreCollection;
  id: string;
  json: string | undefined;
  node?: string;
  moved?: true;
  fence?: Fence;
}

/** Where `ops` keeps a record's put or delete, and where its move after them (see `addOp`). */
function keysOf({ collection, id }: WriteOp): { write: string; move: string } {
  const write = `${collection}\u0000${id}`;
  return { write, move: `${write}\u0000move` };
}

function sameFence(left: Fence | undefined, right: Fence | undefined): boolean {
  return left === right || (left !== undefined && right !== undefined && left.resource === right.resource && left.token === right.token);
}

/**
 * Adds `op` to a batch's writes, which hold at most one put or delete per record (the last), and at most one
 * move after it: a put or a delete replaces both; a move under the same fence as the put before it makes that
 * put's node its own (after a delete, nothing); any other move is kept apart, after the put or delete, so that
 * each write is admitted or refused by its own fence. Re-inserting keeps the batch in the order of each record's
 * last write.
 */
function addOp(ops: Map<string, WriteOp>, op: WriteOp): void {
  const keys = keysOf(op);
  if (op.moved !== true) {
    ops.delete(keys.move);
    ops.delete(keys.write);
    ops.set(keys.write, op);
    return;
  }
  const earlier = ops.get(keys.write);
  if (earlier !== undefined && sameFence(earlier.fence, op.fence)) {
    if (earlier.json === undefined) return;
    ops.delete(keys.write);
    ops.set(keys.write, { ...earlier, ...(op.node === undefined ? {} : { node: op.node }) });
    return;
  }
  ops.delete(keys.move);
  ops.set(keys.move, op);
}

/**
 * Commits one batch atomically (all of it, or nothing), and answers the fenced writes it refused (src/store/fences.ts),
 * if any. A batch holds at most one put or delete per record, the last one enqueued, and at most one move of it after
 * that (`addOp`): a backend applies the moves after the puts and deletes.
 */
export type CommitBatch = (ops: readonly WriteOp[]) => Promise<readonly WriteOp[] | void>;

interface Waiter {
  promise: Promise<void>;
  resolve(): void;
  reject(error: BridgeError): void;
}

interface Batch {
  /** The last write to each record, keyed by `collection \0 id` (no collection name holds a NUL), and a move kept apart after it (`addOp`). */
  ops: Map<string, WriteOp>;
  /** Made by the first `flush()` that waits for this batch, so that a failure nobody waits for is not an unhandled rejection. */
  waiter: Waiter | undefined;
}

function waiter(): Waiter {
  let resolve!: () => void;
  let reject!: (error: BridgeError) => void;
  const promise = new Promise<void>((resolvePromise, rejectPromise) => {
    resolve = resolvePromise;
    reject = rejectPromise;
  });
  return { promise, resolve, reject };
}

function emptyBatch(): Batch {
  return { ops: new Map(), waiter: undefined };
}

/** The JSON of a value to store; INTERNAL for one that has none (undefined, a function, a BigInt, a cycle). */
export function serializeValue(collection: StoreCollection, id: string, value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new BridgeError("INTERNAL", `Store value ${collection}/${id} is not JSON: ${toBridgeError(error).message}`, { collection, id });
  }
  if (json === undefined) throw new BridgeError("INTERNAL", `Store value ${collection}/${id} is not JSON: ${typeof value}`, { collection, id });
  return json;
}

/**
 * A value's top-level `node`, when it is an object with a string there that a store can index (no NUL, no lone
 * surrogate, as for ids): what `list`'s `node` option selects by.
 */
export function nodeOf(value: unknown): string | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const { node } = value as { node?: unknown };
  return typeof node === "string" && !isUnstorableId(node) ? node : undefined;
}

/**
 * Gathers the writes of each event-loop turn into one batch and hands it to `commit`, one batch at a time.
 *
 * The first write of a turn schedules the commit with `setImmediate`, so every write made in the same turn
 * (and in the microtasks that follow it) joins the same transaction. While a commit is in flight, new writes
 * gather into the next batch. A failed commit rejects the `flush()` promises waiting for it and keeps its
 * writes in front of the next batch (later writes to the same record replace them); they are tried again at
 * the next write or `flush()`, not in a loop of their own.
 */
export class WriteBatcher {
  readonly #commit: CommitBatch;
  #open: Batch = emptyBatch();
  #inFlight: Batch | undefined;
  /** A commit of `#open` was asked for (a write, or a flush): writes carried over from a failure alone do not ask. */
  #wanted = false;
  #scheduled = false;
  #closing: Promise<void> | undefined;

  constructor(commit: CommitBatch) {
    this.#commit = commit;
  }

  /** Enqueues the write of `value` to a record (serialized now). */
  put(collection: StoreCollection, id: string, value: unknown, { fence }: WriteOptions = {}): void {
    this.#checkOpen();
    checkRecordKey(collection, id);
    checkFence(collection, fence);
    const node = nodeOf(value);
    this.#enqueue({
      collection,
      id,
      json: serializeValue(collection, id, value),
      ...(node === undefined ? {} : { node }),
      ...(fence === undefined ? {} : { fence }),
    });
  }

  /** Enqueues the removal of a record. */
  delete(collection: StoreCollection, id: string, { fence }: WriteOptions = {}): void {
    this.#checkOpen();
    checkRecordKey(collection, id);
    checkFence(collection, fence);
    this.#enqueue({ collection, id, json: undefined, ...(fence === undefined ? {} : { fence }) });
  }

  /** Enqueues the move of a record to `node` (see `Store.move`). INTERNAL for a node no store can index. */
  move(collection: StoreCollection, id: string, node: string, { fence }: WriteOptions = {}): void {
    this.#checkOpen();
    checkRecordKey(collection, id);
    checkFence(collection, fence);
    if (nodeOf({ node }) === undefined)
      throw new BridgeError("INTERNAL", `Store move of ${collection}/${id}: ${JSON.stringify(node)} is no node a store can index`);
    this.#enqueue({ collection, id, json: undefined, node, moved: true, ...(fence === undefined ? {} : { fence }) });
  }

  /** Resolves once every write enqueued so far is committed; rejects with the commit's error otherwise. */
  flush(): Promise<void> {
    if (this.#open.ops.size > 0) {
      this.#wanted = true;
      this.#schedule();
      return this.#waitFor(this.#open);
    }
    if (this.#inFlight !== undefined) return this.#waitFor(this.#inFlight);
    return Promise.resolve();
  }

  /** Waits for the commit of every write enqueued so far, so that a read sees them; INTERNAL once closed. */
  async beforeRead(): Promise<void> {
    if (this.#closing !== undefined) throw new BridgeError("INTERNAL", "Store is closed");
    await this.flush();
  }

  /**
   * Takes no more writes, then commits what is enqueued. Rejects if that commit fails: those writes are lost,
   * and the error says how many.
   */
  close(): Promise<void> {
    this.#closing ??= this.flush().catch((error: unknown) => {
      const cause = toBridgeError(error);
      throw new BridgeError(
        cause.type,
        `Store closed with ${plural(this.#open.ops.size, "write", "writes")} that could not be made durable: ${cause.message}`,
        {
          ...cause.details,
          lostWrites: this.#open.ops.size,
        },
      );
    });
    return this.#closing;
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new BridgeError("INTERNAL", "Store is closed");
  }

  #enqueue(op: WriteOp): void {
    addOp(this.#open.ops, op);
    this.#wanted = true;
    this.#schedule();
  }

  #waitFor(batch: Batch): Promise<void> {
    batch.waiter ??= waiter();
    return batch.waiter.promise;
  }

  #schedule(): void {
    // A commit in flight schedules the next one when it ends.
    if (this.#scheduled || this.#inFlight !== undefined) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      void this.#commitOpen();
    });
  }

  async #commitOpen(): Promise<void> {
    const batch = this.#open;
    this.#open = emptyBatch();
    this.#wanted = false;
    this.#inFlight = batch;
    try {
      const refused = await this.#commit([...batch.ops.values()]);
      if (refused !== undefined) for (const op of refused) tellRefused(op);
      batch.waiter?.resolve();
    } catch (error) {
      this.#carryOver(batch);
      batch.waiter?.reject(commitError(error, batch.ops.size));
    } finally {
      this.#inFlight = undefined;
      if (this.#wanted) this.#schedule();
    }
  }

  /** Puts the writes of a failed batch in front of the open one, whose own writes to the same records win. */
  #carryOver(failed: Batch): void {
    const ops = new Map(failed.ops);
    for (const op of this.#open.ops.values()) addOp(ops, op);
    this.#open.ops = ops;
  }
}

/** Tells a refused write's writer; a listener that throws is a process warning, never the store's failure. */
function tellRefused({ collection, id, fence }: WriteOp): void {
  try {
    fence?.onRefused?.();
  } catch (error) {
    process.emitWarning(`A store fence's onRefused threw (write to ${collection}/${id}): ${toBridgeError(error).message}`);
  }
}

function commitError(error: unknown, writes: number): BridgeError {
  const cause = toBridgeError(error, "INTERNAL");
  const code = error instanceof Error && "code" in error && typeof error.code === "string" ? { code: error.code } : {};
  return new BridgeError(cause.type, `Store commit failed (its ${plural(writes, "write is", "writes are")} kept for the next commit): ${cause.message}`, {
    ...cause.details,
    ...code,
    retryable: true,
  });
}

function plural(count: number, one: string, many: string): string {
  return `${count} ${count === 1 ? one : many}`;
}

/**
 * What every store shares: writes go through its `WriteBatcher`, and reads check their arguments and wait for
 * the writes enqueued before them. A backend gives the batcher (its commit) and its two reads.
 */
export abstract class BatchedStore implements Store {
  protected abstract readonly batcher: WriteBatcher;

  /** One record's value as stored, or `undefined` (or a promise of it); every write enqueued before has been committed. */
  protected abstract read(collection: StoreCollection, id: string): unknown;
  /** The records of a collection that `options` select (checked), ordered by id in code-point order. */
  protected abstract readAll(collection: StoreCollection, options: ListOptions): StoreRecord[] | Promise<StoreRecord[]>;

  put(collection: StoreCollection, id: string, value: unknown, options?: WriteOptions): void {
    this.batcher.put(collection, id, value, options);
  }

  delete(collection: StoreCollection, id: string, options?: WriteOptions): void {
    this.batcher.delete(collection, id, options);
  }

  move(collection: StoreCollection, id: string, node: string, options?: WriteOptions): void {
    this.batcher.move(collection, id, node, options);
  }

  flush(): Promise<void> {
    return this.batcher.flush();
  }

  async get(collection: StoreCollection, id: string): Promise<unknown> {
    // An id a client chose that no store can hold (a NUL, a lone surrogate) has no record: not found, not a failure.
    if (isUnstorableId(id)) {
      checkCollection(collection);
      return undefined;
    }
    checkRecordKey(collection, id);
    await this.batcher.beforeRead();
    return await this.read(collection, id);
  }

  async list(collection: StoreCollection, options: ListOptions = {}): Promise<StoreRecord[]> {
    checkListOptions(collection, options);
    await this.batcher.beforeRead();
    return await this.readAll(collection, options);
  }

  close(): Promise<void> {
    return this.batcher.close();
  }
}
