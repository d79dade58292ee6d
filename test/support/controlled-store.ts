/**
 * A store for durability tests, wrapping a real one: `crash()` freezes it as a process killed at that moment
 * would leave it (after its last commit), and `holdCommits()` keeps `flush()` from resolving until
 * `releaseCommits()`, so that a test can see what the bus does before its writes are durable.
 */
import type { ListOptions, Store, StoreCollection, StoreRecord } from "../../src/index.js";
import type { WriteOptions } from "../../src/store/store.js";

/** A store that a test can crash, or whose commits it can hold back. */
export class ControlledStore implements Store {
  private crashed = false;
  private held: Promise<void> | undefined;
  private release: (() => void) | undefined;

  constructor(readonly inner: Store) {}

  put(collection: StoreCollection, id: string, value: unknown, options?: WriteOptions): void {
    if (!this.crashed) this.inner.put(collection, id, value, options);
  }

  delete(collection: StoreCollection, id: string, options?: WriteOptions): void {
    if (!this.crashed) this.inner.delete(collection, id, options);
  }

  move(collection: StoreCollection, id: string, node: string, options?: WriteOptions): void {
    if (!this.crashed) this.inner.move(collection, id, node, options);
  }

  async flush(): Promise<void> {
    if (this.crashed) return;
    const held = this.held;
    await this.inner.flush();
    await held;
  }

  get(collection: StoreCollection, id: string): Promise<unknown> {
    return this.inner.get(collection, id);
  }

  list(collection: StoreCollection, options?: ListOptions): Promise<StoreRecord[]> {
    return this.inner.list(collection, options);
  }

  /** Flushes only: the inner store belongs to the test, which closes it (or hands it to the next bus). */
  close(): Promise<void> {
    return this.flush();
  }

  /**
   * From now on nothing is written: the inner store keeps what was committed (call it after the writes of
   * interest are flushed, e.g. after `bus.persisted()`), as a process killed now would leave it.
   */
  crash(): void {
    this.crashed = true;
    this.releaseCommits();
  }

  /** `flush()` resolves only after `releaseCommits()` (the writes themselves are committed as usual). */
  holdCommits(): void {
    this.held ??= new Promise<void>((resolve) => {
      this.release = resolve;
    });
  }

  releaseCommits(): void {
    this.release?.();
    this.held = undefined;
    this.release = undefined;
  }
}
