/**
 * Answers awaited by key: a bridge call sends an event and waits for the answer the actors emit.
 */
import type { BridgeError } from "../errors.js";

interface Waiter {
  resolve(value: unknown): void;
  reject(error: BridgeError): void;
  group: string | undefined;
}

/** A table of pending answers keyed by command id, optionally grouped (by session). */
export class Replies {
  private readonly waiters = new Map<string, Waiter>();
  private readonly groups = new Map<string, Set<string>>();

  /**
   * Waits for the answer to `key`. Register before sending: answers may arrive synchronously. A `group` lets
   * every answer still pending for it be rejected at once (`rejectGroup`).
   */
  wait<T>(key: string, group?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(key, { resolve: resolve as (value: unknown) => void, reject, group });
      if (group === undefined) return;
      let keys = this.groups.get(group);
      if (keys === undefined) {
        keys = new Set();
        this.groups.set(group, keys);
      }
      keys.add(key);
    });
  }

  resolve(key: string, value: unknown): void {
    this.take(key)?.resolve(value);
  }

  reject(key: string, error: BridgeError): void {
    this.take(key)?.reject(error);
  }

  /** Rejects every answer still pending in `group` (commands a deleted session never processed). */
  rejectGroup(group: string, error: BridgeError): void {
    for (const key of [...(this.groups.get(group) ?? [])]) this.reject(key, error);
  }

  /** Rejects every pending answer; used when the runtime stops. */
  rejectAll(error: BridgeError): void {
    for (const key of [...this.waiters.keys()]) this.reject(key, error);
  }

  private take(key: string): Waiter | undefined {
    const waiter = this.waiters.get(key);
    if (waiter === undefined) return undefined;
    this.waiters.delete(key);
    if (waiter.group !== undefined) {
      const keys = this.groups.get(waiter.group);
      keys?.delete(key);
      if (keys?.size === 0) this.groups.delete(waiter.group);
    }
    return waiter;
  }
}
