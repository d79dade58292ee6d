/**
 * The in-memory store: the library's default. Nothing survives the process, but it keeps the semantics of
 * every other store (batches per event-loop turn, JSON copies in and out), so code written against it behaves
 * the same on a durable one.
 */
import { STORE_COLLECTIONS, type ListOptions, type Store, type StoreCollection, type StoreRecord } from "./store.js";
import { checkPrefix, checkRecordKey, compareCodePoints } from "./keys.js";
import { WriteBatcher, type WriteOp } from "./write-batch.js";

/** Creates an empty in-memory store. */
export function createMemoryStore(): Store {
  return new MemoryStore();
}

class MemoryStore implements Store {
  /** Each collection's records as JSON text, so that no caller holds a stored object. */
  readonly #records = new Map<StoreCollection, Map<string, string>>(STORE_COLLECTIONS.map((collection) => [collection, new Map()]));
  readonly #batcher = new WriteBatcher(async (ops) => this.#apply(ops));

  put(collection: StoreCollection, id: string, value: unknown): void {
    this.#batcher.put(collection, id, value);
  }

  delete(collection: StoreCollection, id: string): void {
    this.#batcher.delete(collection, id);
  }

  flush(): Promise<void> {
    return this.#batcher.flush();
  }

  async get(collection: StoreCollection, id: string): Promise<unknown> {
    checkRecordKey(collection, id);
    await this.#batcher.beforeRead();
    const json = this.#collection(collection).get(id);
    return json === undefined ? undefined : JSON.parse(json);
  }

  async list(collection: StoreCollection, { prefix }: ListOptions = {}): Promise<StoreRecord[]> {
    checkPrefix(collection, prefix);
    await this.#batcher.beforeRead();
    const records: StoreRecord[] = [];
    for (const [id, json] of this.#collection(collection)) {
      if (prefix === undefined || id.startsWith(prefix)) records.push({ id, value: JSON.parse(json) });
    }
    return records.sort((left, right) => compareCodePoints(left.id, right.id));
  }

  close(): Promise<void> {
    return this.#batcher.close();
  }

  #collection(collection: StoreCollection): Map<string, string> {
    return this.#records.get(collection)!;
  }

  #apply(ops: readonly WriteOp[]): void {
    for (const { collection, id, json } of ops) {
      if (json === undefined) this.#collection(collection).delete(id);
      else this.#collection(collection).set(id, json);
    }
  }
}
