/**
 * Fair capacity (SPEC §3.8): what one client may take of the server. A client is its remote address (every
 * connection and request from it), or an agent (the frames of its socket). Each quota answers 429 CAPACITY
 * with `details.limit` and `details.retryAfterMs` (the `retry-after` header), so one client can use neither
 * every connection slot, nor every session, nor the whole event loop. Every table here is bounded: a client
 * that holds nothing is forgotten.
 */
import type { Clock } from "../clock.js";
import { BridgeError } from "../errors.js";

/** Clients tracked at once by a rate limiter; past it the least recently seen idle ones are forgotten. */
export const MAX_TRACKED_CLIENTS = 10_000;

/** The client a connection comes from: its remote address (`::ffff:` IPv4-mapped addresses as plain IPv4). */
export function clientOf(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return "unknown";
  return remoteAddress.startsWith("::ffff:") ? remoteAddress.slice("::ffff:".length) : remoteAddress;
}

/** The CAPACITY error of a quota: 429 with `retry-after`. */
export function quotaExceeded(message: string, limit: number, retryAfterMs: number): BridgeError {
  return new BridgeError("CAPACITY", message, { limit, retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)) });
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * A token bucket per client: `ratePerSecond` requests a second on average, `burst` at once. `take` answers 0
 * when the request may go, else how many milliseconds until it may. A rate of 0 lets everything through.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly clock: Pick<Clock, "now">,
    private readonly maxClients = MAX_TRACKED_CLIENTS,
  ) {}

  /** Clients tracked now (bounded by `maxClients`). */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes one request's token for `client`: 0 when it may go, else the milliseconds until one is there. */
  take(client: string): number {
    if (this.ratePerSecond === 0) return 0;
    const now = this.clock.now();
    let bucket = this.buckets.get(client);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxClients) this.forgetOldest();
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(client, bucket);
    } else {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) * this.ratePerSecond) / 1000);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return ((1 - bucket.tokens) * 1000) / this.ratePerSecond;
  }

  /** Makes room: the oldest entry goes (Map order is insertion order); it gets a full bucket if it comes back. */
  private forgetOldest(): void {
    const oldest = this.buckets.keys().next();
    if (oldest.done !== true) this.buckets.delete(oldest.value);
  }
}

/** Counts open connections per client; `open` refuses past `limit`. */
export class ConnectionCounts {
  private readonly counts = new Map<string, number>();

  constructor(readonly limit: number) {}

  /** Counts a new connection of `client`; false (and not counted) when it already has `limit`. */
  open(client: string): boolean {
    const count = this.counts.get(client) ?? 0;
    if (count >= this.limit) return false;
    this.counts.set(client, count + 1);
    return true;
  }

  /** A connection of `client` closed. */
  close(client: string): void {
    const count = (this.counts.get(client) ?? 0) - 1;
    if (count <= 0) this.counts.delete(client);
    else this.counts.set(client, count);
  }

  /** Connections of `client` now. */
  of(client: string): number {
    return this.counts.get(client) ?? 0;
  }
}

/**
 * The sessions each client opened, while they live: whether one still lives is asked of its actor
 * (`isAlive`), never kept here, so a session that ended by any path stops counting.
 */
export class OwnedSessions {
  private readonly byClient = new Map<string, Set<string>>();

  constructor(
    /** What is owned, for the error: "bridge sessions", "workflow sessions". */
    private readonly what: string,
    readonly limit: number,
    private readonly isAlive: (sessionId: string) => boolean,
  ) {}

  /** Throws CAPACITY when `client` already holds `limit` live sessions. */
  check(client: string): void {
    const owned = this.byClient.get(client);
    if (owned === undefined || owned.size < this.limit) return;
    for (const sessionId of owned) if (!this.isAlive(sessionId)) owned.delete(sessionId);
    if (owned.size < this.limit) return;
    throw quotaExceeded(`${client} holds ${this.limit} open ${this.what}, its quota: close one first`, this.limit, 1_000);
  }

  /** Records a session `client` opened. */
  add(client: string, sessionId: string): void {
    let owned = this.byClient.get(client);
    if (owned === undefined) {
      if (this.byClient.size >= MAX_TRACKED_CLIENTS) this.forgetIdleClients();
      owned = new Set();
      this.byClient.set(client, owned);
    }
    owned.add(sessionId);
    // Ended sessions are pruned lazily; keep the set from growing past twice the quota in between.
    if (owned.size > 2 * this.limit) for (const id of owned) if (!this.isAlive(id)) owned.delete(id);
  }

  /** Drops every client whose sessions all ended. */
  private forgetIdleClients(): void {
    for (const [client, owned] of this.byClient) {
      for (const id of owned) if (!this.isAlive(id)) owned.delete(id);
      if (owned.size === 0) this.byClient.delete(client);
    }
  }
}
