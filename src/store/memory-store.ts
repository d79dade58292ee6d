/**
 * The in-memory store: the library's default. Nothing survives the process, but it keeps the semantics of
 * every other store (batches per event-loop turn, JSON copies in and out), so code written against it behaves
 * the same on a durable one.
 */
import { STORE_COLLECTIONS, type Store, type StoreCollection, type StoreRecord } from "./store.js";
import { LocalFences } from "./fences.js";
import { compareCodePoints } from "./keys.js";
import { BatchedStore, WriteBatcher, type WriteOp } from "./write-batch.js";

/** Creates an empty in-memory store. */
export function createMemoryStore(): Store {
  return new MemoryStore();
}

class MemoryStore extends BatchedStore {
  /** Each collection's records as JSON text, so that no caller holds a stored object. */
  readonly #records = new Map<StoreCollection, Map<string, string>>(STORE_COLLECTIONS.map((collection) => [collection, new Map()]));
  readonly #fences = new LocalFences();
  protected readonly batcher = new WriteBatcher((ops) => Promise.resolve(this.#fences.commit(ops, (admitted) => this.#apply(admitted))));

  protected read(collection: StoreCollection, id: string): unknown {
    const json = this.#collection(collection).get(id);
    return json === undefined ? undefined : JSON.parse(json);
  }

  protected readAll(collection: StoreCollection, prefix: string | undefined): StoreRecord[] {
    const records: StoreRecord[] = [];
    for (const [id, json] of this.#collection(collection)) {
      if (prefix === undefined || id.startsWith(prefix)) records.push({ id, value: JSON.parse(json) });
    }
    return records.sort((left, right) => compareCodePoints(left.id, right.id));
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
