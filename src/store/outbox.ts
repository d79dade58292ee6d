/**
 * Effects that must wait until the state they report is durable: a workflow's events and the tasks it sends go
 * out once its change is in the store (SPEC §3.5).
 */
import { toBridgeError } from "../errors.js";
import type { Store } from "./store.js";

/**
 * Runs effects after a flush of the store, in the order they were queued.
 *
 * The writer puts its records as the change happens, or at the latest in `beforeFlush` (a writer that
 * coalesces several changes of a record into one write), and queues the effects that report it. Queued effects
 * wait for the end of the current synchronous work (a microtask), then `beforeFlush` runs, then one `flush()`
 * of the store, and the effects run after it. A change and its events thus share the store's batch: one commit
 * per event-loop turn, however many changes and effects it holds.
 *
 * A flush that fails is reported (a process warning) and the effects still run: the store keeps the writes and
 * retries them at its next commit, and holding the events back for good would stall every workflow.
 */
export class Outbox {
  #queued: Array<() => void> = [];
  #scheduled = false;
  /** The effects of each flush run after those of the flush before. */
  #chain: Promise<void> = Promise.resolve();

  /** `beforeFlush` puts what its writer still holds back, just before each flush. */
  constructor(
    private readonly storeOf: () => Store,
    private readonly beforeFlush: () => void = () => undefined,
  ) {}

  /** Queues an effect to run once every write enqueued so far (and in this synchronous run) is durable. */
  run(effect: () => void): void {
    this.#queued.push(effect);
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => this.#flushQueued());
  }

  /** Resolves once every effect queued so far has run, and those they queued in turn. */
  async drained(): Promise<void> {
    let chain: Promise<void>;
    do {
      // A flush scheduled before this call takes its effects in a microtask queued before this one.
      if (this.#scheduled) await Promise.resolve();
      chain = this.#chain;
      await chain;
    } while (chain !== this.#chain || this.#scheduled);
  }

  #flushQueued(): void {
    this.#scheduled = false;
    const effects = this.#queued;
    this.#queued = [];
    this.beforeFlush();
    const durable = this.storeOf()
      .flush()
      .catch((error: unknown) => {
        process.emitWarning(`troupe: ${effects.length} event(s) go out before their change is durable: ${toBridgeError(error).message}`, {
          code: "TROUPE_STORE",
        });
      });
    this.#chain = this.#chain
      .then(() => durable)
      .then(() => {
        for (const effect of effects) {
          try {
            effect();
          } catch (error) {
            // An effect is an event to listeners or a message to send: one that throws must not keep the others back.
            process.emitWarning(`troupe: an effect after a store flush failed: ${toBridgeError(error).message}`, { code: "TROUPE_STORE" });
          }
        }
      });
  }
}
