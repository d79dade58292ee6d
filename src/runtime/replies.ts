/**
 * Answers awaited by key: the one table of pending replies. A bridge call sends an event and waits for the
 * answer the actors emit; a sync sender on the bus waits for the envelope that answers its message; an
 * agent's `ask` waits for the recipient's answer.
 */
import type { Clock } from "../clock.js";
import type { BridgeError } from "../errors.js";

/** How one answer is waited for. */
export interface WaitOptions<M> {
  /** Lets every answer still pending in the group be rejected at once (`rejectGroup`). */
  group?: string;
  /** Fails the wait with `onTimeout()`'s error after this long (needs the table's clock). */
  timeoutMs?: number;
  onTimeout?: () => BridgeError;
  /** What the waiter wants known while it waits (e.g. who may answer). */
  meta?: M;
}

interface Waiter<M> {
  resolve(value: unknown): void;
  reject(error: BridgeError): void;
  group: string | undefined;
  timer: unknown;
  meta: M | undefined;
}

/** A table of pending answers keyed by command id (or message id), optionally grouped and timed. */
export class Replies<M = undefined> {
  private readonly waiters = new Map<string, Waiter<M>>();
  private readonly groups = new Map<string, Set<string>>();

  /** `clock` runs the timeouts of `wait`; a table without one takes no `timeoutMs`. */
  constructor(private readonly clock?: Clock) {}

  /**
   * Waits for the answer to `key`. Register before sending: answers may arrive synchronously. A `group` (the
   * string form is just the group) lets every answer still pending for it be rejected at once.
   */
  wait<T>(key: string, options: WaitOptions<M> | string = {}): Promise<T> {
    const { group, timeoutMs, onTimeout, meta } = typeof options === "string" ? { group: options } : options;
    return new Promise<T>((resolve, reject) => {
      let timer: unknown;
      if (timeoutMs !== undefined && this.clock !== undefined && onTimeout !== undefined) {
        timer = this.clock.setTimeout(() => this.reject(key, onTimeout()), timeoutMs);
      }
      this.waiters.set(key, { resolve: resolve, reject, group, timer, meta });
      if (group === undefined) return;
      let keys = this.groups.get(group);
      if (keys === undefined) {
        keys = new Set();
        this.groups.set(group, keys);
      }
      keys.add(key);
    });
  }

  /** Whether someone waits for `key`. */
  has(key: string): boolean {
    return this.waiters.has(key);
  }

  /** The `meta` of a pending wait. */
  metaOf(key: string): M | undefined {
    return this.waiters.get(key)?.meta;
  }

  resolve(key: string, value: unknown): void {
    this.take(key)?.resolve(value);
  }

  reject(key: string, error: BridgeError): void {
    this.take(key)?.reject(error);
  }

  /**
   * Rejects every answer still pending in `group` (commands a deleted session never processed). `error` may be
   * a function, called only when some answer is pending: an error's stack trace is not free, and most groups
   * are empty by then.
   */
  rejectGroup(group: string, error: BridgeError | (() => BridgeError)): void {
    const keys = this.groups.get(group);
    if (keys === undefined) return;
    const reason = typeof error === "function" ? error() : error;
    for (const key of [...keys]) this.reject(key, reason);
  }

  /** Rejects every pending answer; used when the runtime or the bus stops. */
  rejectAll(error: BridgeError): void {
    for (const key of [...this.waiters.keys()]) this.reject(key, error);
  }

  private take(key: string): Waiter<M> | undefined {
    const waiter = this.waiters.get(key);
    if (waiter === undefined) return undefined;
    this.waiters.delete(key);
    if (waiter.timer !== undefined) this.clock?.clearTimeout(waiter.timer);
    if (waiter.group !== undefined) {
      const keys = this.groups.get(waiter.group);
      keys?.delete(key);
      if (keys?.size === 0) this.groups.delete(waiter.group);
    }
    return waiter;
  }
}
