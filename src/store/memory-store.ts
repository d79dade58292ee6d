/**
 * The in-memory store: the library's default. Nothing survives the process, but it keeps the semantics of
 * every other store (batches per event-loop turn, JSON copies in and out), so code written against it behaves
 * the same on a durable one.
 */
import { STORE_COLLECTIONS, type ListOptions, type Store, type StoreCollection, type StoreRecord } from "./store.js";
import { LocalFences } from "./fences.js";
import { compareCodePoints } from "./keys.js";
import { withRecordNode } from "./record-codec.js";
import { BatchedStore, WriteBatcher, type WriteOp } from "./write-batch.js";

/** Creates an empty in-memory store. */
export function createMemoryStore(): Store {
  return new MemoryStore();
}

interface Held {
  json: string;
  node: string | undefined;
}

class MemoryStore extends BatchedStore {
  /** Each collection's records as JSON text (so that no caller holds a stored object), with their values' `node`. */
  readonly #records = new Map<StoreCollection, Map<string, Held>>(STORE_COLLECTIONS.map((collection) => [collection, new Map()]));
  readonly #fences = new LocalFences();
  protected readonly batcher = new WriteBatcher((ops) => Promise.resolve(this.#fences.commit(ops, (admitted) => this.#apply(admitted))));

  protected read(collection: StoreCollection, id: string): unknown {
    const held = this.#collection(collection).get(id);
    return held === undefined ? undefined : withRecordNode(JSON.parse(held.json), held.node);
  }

  protected readAll(collection: StoreCollection, { prefix, node, after, limit, maxBytes }: ListOptions): StoreRecord[] {
    const selected: Array<[string, Held]> = [];
    for (const entry of this.#collection(collection)) {
      const [id, held] = entry;
      if (prefix !== undefined && !id.startsWith(prefix)) continue;
      if (node !== undefined && held.node !== node) continue;
      if (after !== undefined && compareCodePoints(id, after) <= 0) continue;
      selected.push(entry);
    }
    selected.sort(([left], [right]) => compareCodePoints(left, right));
    const records: StoreRecord[] = [];
    let bytes = 0;
    for (const [id, held] of selected.slice(0, limit)) {
      bytes += Buffer.byteLength(held.json);
      if (maxBytes !== undefined && records.length > 0 && bytes > maxBytes) break;
      records.push({ id, value: withRecordNode(JSON.parse(held.json), held.node) });
    }
    return records;
  }

  #collection(collection: StoreCollection): Map<string, Held> {
    return this.#records.get(collection)!;
  }

  #apply(ops: readonly WriteOp[]): void {
    for (const { collection, id, json, node, moved } of ops) {
      const records = this.#collection(collection);
      if (moved === true) {
        const held = records.get(id);
        if (held !== undefined) records.set(id, { json: held.json, node });
      } else if (json === undefined) records.delete(id);
      else records.set(id, { json, node });
    }
  }
}
