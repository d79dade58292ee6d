/**
 * Answers awaited by key: a bridge call sends an event and waits for the answer the actors emit.
 */
import type { BridgeError } from "../errors.js";

interface Waiter {
  resolve(value: unknown): void;
  reject(error: BridgeError): void;
}

/** A table of pending answers keyed by command id. */
export class Replies {
  private readonly waiters = new Map<string, Waiter>();

  /** Waits for the answer to `key`. Register before sending: answers may arrive synchronously. */
  wait<T>(key: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiters.set(key, { resolve: resolve as (value: unknown) => void, reject });
    });
  }

  resolve(key: string, value: unknown): void {
    const waiter = this.waiters.get(key);
    if (waiter === undefined) return;
    this.waiters.delete(key);
    waiter.resolve(value);
  }

  reject(key: string, error: BridgeError): void {
    const waiter = this.waiters.get(key);
    if (waiter === undefined) return;
    this.waiters.delete(key);
    waiter.reject(error);
  }

  /** Rejects every pending answer; used when the runtime stops. */
  rejectAll(error: BridgeError): void {
    for (const key of [...this.waiters.keys()]) this.reject(key, error);
  }
}
