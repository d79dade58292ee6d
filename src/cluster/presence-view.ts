/**
 * The presence bucket kept in memory on each node (docs/cluster.md, "Presence: where each agent is"), so that
 * `GET /agents` reads no entry of it: a watch of the bucket's changes, begun first, and one read of what the bucket
 * held then, joined by revision (a change the watch heard wins over the read's older value, a removal included).
 *
 * The view is current while NATS is connected, the watch runs and that first read is done. When NATS goes away it
 * is dropped (changes made meanwhile may include removals it would never hear of, once their markers are purged),
 * and rebuilt, watch and read, once NATS is back; a watch that fails or ends is begun again a second later. Until
 * then callers read the bucket instead. It holds one entry per agent connected somewhere, no more: a removal (a
 * delete marker) takes the agent's entry out.
 */
import type { KV, KvEntry, KvWatchEntry } from "@nats-io/kv";
import type { QueuedIterator } from "@nats-io/transport-node";
import { toBridgeError } from "../errors.js";
import type { ClusterConnection } from "./nats-connection.js";

/** Where an agent is connected, as the bucket says. */
export interface AgentPresence {
  /** The node its socket is on. */
  node: string;
  /** When it connected there (epoch ms, that node's clock). */
  since: number;
}

/** An agent's entry as the view holds it: where, and the bucket revision that said so. */
interface ViewedPresence {
  presence: AgentPresence;
  revision: number;
}

/** How long a view whose watch failed waits before it begins again. */
const RETRY_MS = 1_000;

/** The bucket's entries of agents connected somewhere, as the node's watch heard them. */
export class PresenceView {
  readonly #kv: KV;
  readonly #connection: ClusterConnection;
  readonly #where: string;
  /** Agent id → its entry: one per agent connected somewhere (bounded by the nodes' sockets). */
  readonly #entries = new Map<string, ViewedPresence>();
  /**
   * While the first read runs: the revisions of the removals the watch heard, so that the read's older value of
   * the same key does not bring the agent back (bounded by the changes made during one read). `undefined` after.
   */
  #removedWhileReading: Map<string, number> | undefined;
  #watch: QueuedIterator<KvWatchEntry> | undefined;
  #current = false;
  /** Each beginning of the view has its number: what an older one still delivers is dropped. */
  #generation = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  /** A beginning failed and said so: the next failures of the same streak are not reported again. */
  #failing = false;
  #closed = false;
  readonly #stopFollowingState: () => void;

  constructor(kv: KV, connection: ClusterConnection, where: string) {
    this.#kv = kv;
    this.#connection = connection;
    this.#where = where;
    this.#stopFollowingState = connection.onStateChange((state) => {
      if (state === "connected") void this.begin();
      else this.#drop();
    });
  }

  /**
   * (Re)begins the view: its watch, then its first read. Resolves once it is current, or once that failed (it is
   * begun again a second later); never rejects.
   */
  async begin(): Promise<void> {
    this.#drop();
    const generation = this.#generation;
    try {
      const watch = await this.#kv.watch({ include: "updates" });
      if (generation !== this.#generation) {
        watch.stop();
        return;
      }
      this.#watch = watch;
      this.#removedWhileReading = new Map();
      void this.#hear(watch, generation);
      for await (const entry of await this.#kv.history()) {
        if (generation !== this.#generation) return;
        this.#apply(entry);
      }
      if (generation !== this.#generation) return;
      this.#removedWhileReading = undefined;
      this.#current = true;
      this.#failing = false;
    } catch (error) {
      if (generation !== this.#generation) return;
      if (!this.#failing) {
        process.emitWarning(`troupe: ${this.#where}: watching the presence bucket failed (${toBridgeError(error).message}); GET /agents reads it meanwhile`, {
          code: "TROUPE_CLUSTER",
        });
      }
      this.#failing = true;
      this.#drop();
      this.#retryLater();
    }
  }

  /** Whether the view says what the bucket says now (within a NATS round trip): NATS connected, the watch running, the first read done. */
  isCurrent(): boolean {
    return this.#current && this.#connection.state() === "connected";
  }

  /** The entry of `agentId`, if it is connected somewhere (meaningful while `isCurrent()`). */
  get(agentId: string): ViewedPresence | undefined {
    return this.#entries.get(agentId);
  }

  /** Stops watching and following the connection (the node is closing). */
  close(): void {
    this.#closed = true;
    this.#stopFollowingState();
    this.#drop();
  }

  /** Applies the watch's changes, in order, until it ends; a watch that ends by itself (its consumer gone) is begun again. */
  async #hear(watch: QueuedIterator<KvWatchEntry>, generation: number): Promise<void> {
    try {
      for await (const entry of watch) {
        if (generation !== this.#generation) return;
        this.#apply(entry);
      }
    } catch {
      // Ended with an error: begun again below, as when it ends without one.
    }
    if (generation !== this.#generation) return;
    this.#drop();
    this.#retryLater();
  }

  /** One entry of the bucket, from the watch or the first read: applied unless the view has a later one of its key. */
  #apply(entry: KvEntry): void {
    const agentId = agentIdOfKey(entry.key);
    if (agentId === undefined) return;
    const known = Math.max(this.#entries.get(agentId)?.revision ?? 0, this.#removedWhileReading?.get(agentId) ?? 0);
    if (entry.revision <= known) return;
    const presence = entry.operation === "PUT" ? parsePresence(entry.string()) : undefined;
    if (presence !== undefined) {
      this.#entries.set(agentId, { presence, revision: entry.revision });
      return;
    }
    this.#entries.delete(agentId);
    this.#removedWhileReading?.set(agentId, entry.revision);
  }

  /** Forgets the view and stops its watch: it is not current until begun again. */
  #drop(): void {
    this.#generation += 1;
    this.#current = false;
    this.#watch?.stop();
    this.#watch = undefined;
    this.#removedWhileReading = undefined;
    this.#entries.clear();
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #retryLater(): void {
    if (this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // Cut from NATS: begun again once it is back (the connection says so).
      if (this.#connection.state() === "connected") void this.begin();
    }, RETRY_MS);
    this.#retryTimer.unref();
  }
}

/** A stored value, if it is one of troupe's. */
export function parsePresence(text: string): AgentPresence | undefined {
  try {
    const value = JSON.parse(text) as Partial<AgentPresence> | null;
    return typeof value?.node === "string" && typeof value.since === "number" ? { node: value.node, since: value.since } : undefined;
  } catch {
    return undefined;
  }
}

/** The agent id a bucket key names (its UTF-8 in base64url); undefined for a key troupe did not write. */
export function agentIdOfKey(key: string): string | undefined {
  if (!/^[A-Za-z0-9_-]+$/.test(key)) return undefined;
  return Buffer.from(key, "base64url").toString("utf8");
}
