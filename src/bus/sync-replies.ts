/**
 * Senders waiting for a reply: `delivery_mode: "sync"` answers the HTTP request with the envelope whose
 * `metadata.in_reply_to` names the request, or 504 once the request's timeout has passed.
 */
import type { Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { MessageEnvelope } from "../protocol/envelope.js";

interface Waiter {
  resolve(envelope: MessageEnvelope): void;
  reject(error: BridgeError): void;
  timer: unknown;
}

/** The sync senders of one bus, by the `message_id` they wait on. */
export class SyncReplies {
  private readonly waiters = new Map<string, Waiter>();

  constructor(private readonly clock: Clock) {}

  /** Waits for the reply to `messageId`; TIMEOUT after `timeoutMs`. */
  wait(messageId: string, timeoutMs: number): Promise<MessageEnvelope> {
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        this.waiters.delete(messageId);
        reject(new BridgeError("TIMEOUT", `No reply to ${messageId} within ${timeoutMs} ms`, { messageId, timeoutMs }));
      }, timeoutMs);
      this.waiters.set(messageId, { resolve, reject, timer });
    });
  }

  /** Whether someone waits for a reply to `messageId`. */
  isWaiting(messageId: string): boolean {
    return this.waiters.has(messageId);
  }

  /** Hands a reply to its waiter. */
  resolve(messageId: string, reply: MessageEnvelope): void {
    const waiter = this.take(messageId);
    waiter?.resolve(reply);
  }

  /** Fails one waiter (its message is dead). */
  reject(messageId: string, error: BridgeError): void {
    this.take(messageId)?.reject(error);
  }

  /** Fails every waiter (the bus is stopping). */
  rejectAll(error: BridgeError): void {
    for (const messageId of [...this.waiters.keys()]) this.reject(messageId, error);
  }

  private take(messageId: string): Waiter | undefined {
    const waiter = this.waiters.get(messageId);
    if (waiter === undefined) return undefined;
    this.waiters.delete(messageId);
    this.clock.clearTimeout(waiter.timer);
    return waiter;
  }
}
