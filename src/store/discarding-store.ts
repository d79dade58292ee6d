/**
 * The store of a runtime that keeps nothing across restarts: the in-memory store it makes for itself when given
 * none dies with it, so writing to it would only cost (a serialized copy of every message) and restore nothing.
 * The bus writes its messages and registrations here then; writes are dropped and every flush is at once.
 */
import type { Store, StoreRecord } from "./store.js";

const done = Promise.resolve();

/** A store that holds nothing: `put`, `delete` and `move` drop their write, `flush` resolves at once, reads find nothing. */
export const DISCARDING_STORE: Store = {
  put: () => {},
  delete: () => {},
  move: () => {},
  flush: () => done,
  get: () => Promise.resolve(undefined),
  list: (): Promise<StoreRecord[]> => Promise.resolve([]),
  close: () => done,
};
