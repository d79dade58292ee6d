/**
 * A SQLite store in a temporary directory that a test can crash in process: `crash()` freezes what the file
 * holds at that moment, as `kill -9` would. Writes of the batch not yet committed are lost; nothing the
 * process does afterwards (its graceful stop included) reaches the file; and the file is released, so that a
 * new runtime can open the same directory. Directories are removed after each test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { BridgeError, openSqliteStore, type ListOptions, type Store, type StoreCollection, type StoreRecord } from "../../src/index.js";
import { WriteBatcher } from "../../src/store/write-batch.js";

const directories: string[] = [];
const stores: CrashableStore[] = [];

afterEach(async () => {
  await Promise.allSettled(stores.splice(0).map((store) => store.crash()));
  await Promise.all(directories.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A new temporary data directory, removed after the test. */
export async function temporaryDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "troupe-restart-"));
  directories.push(dir);
  return dir;
}

/**
 * Wraps a SQLite store with a batcher of its own: a batch reaches the SQLite store only when it commits, so a
 * crash between two commits loses exactly the writes of the open batch, as a process killed then would.
 */
export class CrashableStore implements Store {
  private crashed = false;
  private readonly batcher: WriteBatcher;

  private constructor(private readonly inner: Store) {
    this.batcher = new WriteBatcher(async (ops) => {
      if (this.crashed) throw new BridgeError("INTERNAL", "The process crashed");
      for (const { collection, id, json, node, moved } of ops) {
        if (moved === true && node !== undefined) inner.move(collection, id, node);
        else if (json === undefined) inner.delete(collection, id);
        else {
          inner.put(collection, id, JSON.parse(json));
          // A put a move joined: its node is the move's, not its value's.
          if (node !== undefined) inner.move(collection, id, node);
        }
      }
      await inner.flush();
    });
  }

  /** Opens the SQLite store of `dir`. */
  static async open(dir: string): Promise<CrashableStore> {
    const store = new CrashableStore(await openSqliteStore({ dir }));
    stores.push(store);
    return store;
  }

  put(collection: StoreCollection, id: string, value: unknown): void {
    if (!this.crashed) this.batcher.put(collection, id, value);
  }

  delete(collection: StoreCollection, id: string): void {
    if (!this.crashed) this.batcher.delete(collection, id);
  }

  move(collection: StoreCollection, id: string, node: string): void {
    if (!this.crashed) this.batcher.move(collection, id, node);
  }

  /** After the crash, nothing is made durable any more; the dead process waits for nothing. */
  flush(): Promise<void> {
    return this.crashed ? Promise.resolve() : this.batcher.flush();
  }

  async get(collection: StoreCollection, id: string): Promise<unknown> {
    await this.batcher.beforeRead();
    return this.inner.get(collection, id);
  }

  async list(collection: StoreCollection, options?: ListOptions): Promise<StoreRecord[]> {
    await this.batcher.beforeRead();
    return this.inner.list(collection, options);
  }

  /** A graceful close: commits what is enqueued, then releases the file. */
  async close(): Promise<void> {
    if (this.crashed) return;
    await this.batcher.close();
    this.crashed = true;
    await this.inner.close();
  }

  /**
   * The process dies now: the open batch is lost, and the file keeps what was committed. (A commit already
   * under way finishes, as the last transaction before a `kill -9` may.)
   */
  async crash(): Promise<void> {
    if (this.crashed) return;
    this.crashed = true;
    await this.inner.close();
  }
}
