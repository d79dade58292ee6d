/**
 * Where each agent is connected, cluster-wide (docs/cluster.md, "Presence"): a JetStream key-value bucket
 * (`troupe_presence`, one value per key) whose key is the agent's id and whose value is the node its socket is on,
 * and since when (`{ node, since }`, well under 256 bytes).
 *
 * A node writes an agent's entry when its socket connects there, and removes it when the socket leaves. A removal
 * is a delete marker written only if the key's last revision is the one this node wrote: an entry another node wrote
 * since (the agent moved there) stays. Every node's watch hears the marker (./presence-view.ts keeps the bucket in
 * memory, so that `GET /agents` reads nothing); a minute later, the node that wrote it purges it, so that the bucket
 * holds one message per agent connected somewhere and, for a minute, per agent that left. A node that dies cannot
 * remove its entries: the node that takes over its lease does (`clearNode`), as does the node itself when it starts
 * again under the same id, each purging the markers older than a minute that it finds. Writes that NATS did not
 * take (it was away, or its JetStream not ready yet) are tried again every second while they fail, and every entry
 * of this node is written again once NATS is back, since a node that took its lease over meanwhile may have
 * cleared them.
 */
import type { KV } from "@nats-io/kv";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { isWrongLastSequence, keepReplicas, natsError, natsToken, type ClusterConnection, type Replicas } from "./nats-connection.js";
import { agentIdOfKey, parsePresence, PresenceView, type AgentPresence } from "./presence-view.js";

/** The bucket presence lives in unless told otherwise. */
const DEFAULT_PRESENCE_BUCKET = "troupe_presence";
/** The largest value the bucket takes: a node id (64 characters at most) and a time fit many times over. */
const MAX_VALUE_BYTES = 256;
/** Reads one lookup sends at once. */
const LOOKUP_BATCH = 100;
/** How long a write NATS did not take waits before it is tried again. */
const RETRY_MS = 1_000;
/**
 * How long a delete marker stays before it is purged: every node's watch must have heard it by then. A watch that
 * stalls resumes where it was within about 10 s (two missed heartbeats of its consumer); one cut from NATS is begun
 * afresh, marker or not.
 */
const DEFAULT_MARKER_KEEP_MS = 60_000;
/** The most markers a node keeps track of to purge later: past it, the oldest is purged at once. */
const MAX_KEPT_MARKERS = 10_000;

/** How a presence table is opened. */
export interface PresenceTableOptions {
  /** This node's id: what its entries name. */
  nodeId: string;
  /** The key-value bucket (default `troupe_presence`), created when missing. */
  bucket?: string;
  /** The node's clock (its `now()` only): the `since` of its entries. */
  clock?: Pick<Clock, "now">;
  /** Copies JetStream keeps of the bucket (`cluster.replicas`); an existing bucket is brought to it when given. */
  replicas?: Replicas;
  /** How long a delete marker stays before this node purges it (default a minute): the other nodes' watches hear it meanwhile. */
  markerKeepMs?: number;
}

/** An agent connected to this node: when, and the revision of the entry this node wrote for it (once written). */
interface HereEntry {
  since: number;
  revision: number | undefined;
}

/** One node's side of the presence bucket. */
export class PresenceTable {
  readonly #kv: KV;
  readonly #connection: ClusterConnection;
  readonly #nodeId: string;
  readonly #clock: Pick<Clock, "now">;
  readonly #stream: string;
  readonly #subjectPrefix: string;
  readonly #where: string;
  /** Agents connected to this node (bounded by its connections). */
  readonly #here = new Map<string, HereEntry>();
  /** Entries of agents that left while NATS did not answer: removed once it does (bounded by agent ids). */
  readonly #leftBehind = new Map<string, HereEntry>();
  /** Agents connected here whose entry NATS did not take: written again (bounded by the agents connected here). */
  readonly #unwritten = new Set<string>();
  #retryTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** Each agent's writes, in order (bounded by the agents with one under way). */
  readonly #queues = new Map<string, Promise<void>>();
  /** A write failed and said so: the next failures of the same outage are not reported again. */
  #failing = false;
  readonly #stopFollowingState: () => void;
  /** The bucket as this node's watch keeps it: what `where` answers from, while it is current. */
  readonly #view: PresenceView;
  /**
   * Delete markers this node wrote and purges once every watch heard them: agent id → when (`performance.now()`).
   * In the order they were written; at most `MAX_KEPT_MARKERS`.
   */
  readonly #markers = new Map<string, number>();
  readonly #markerKeepMs: number;
  #markerTimer: NodeJS.Timeout | undefined;

  private constructor(kv: KV, connection: ClusterConnection, options: PresenceTableOptions, bucket: string) {
    this.#kv = kv;
    this.#connection = connection;
    this.#nodeId = options.nodeId;
    this.#clock = options.clock ?? systemClock;
    this.#stream = `KV_${bucket}`;
    this.#subjectPrefix = `$KV.${bucket}.`;
    this.#where = `${connection.where}, bucket ${bucket}`;
    this.#markerKeepMs = options.markerKeepMs ?? DEFAULT_MARKER_KEEP_MS;
    this.#view = new PresenceView(kv, connection, this.#where);
    // The connection tells only changes: "connected" is NATS back after an outage.
    this.#stopFollowingState = connection.onStateChange((state) => {
      if (state === "connected") this.reannounce();
    });
  }

  /** Opens the presence bucket (creating it when missing) for node `nodeId`. CONFIG for bad options. */
  static async open(connection: ClusterConnection, options: PresenceTableOptions): Promise<PresenceTable> {
    if (typeof options.nodeId !== "string" || options.nodeId.length === 0)
      throw new BridgeError("CONFIG", "A presence table needs the node's id", { field: "nodeId" });
    const bucket = options.bucket ?? DEFAULT_PRESENCE_BUCKET;
    // One value per key, and a small one: where an agent is now is all there is to know.
    const kv = await connection.openBucket(bucket, { history: 1, maxValueSize: MAX_VALUE_BYTES, replicas: options.replicas ?? 1 });
    if (options.replicas !== undefined) await keepReplicas(connection, `KV_${bucket}`, options.replicas);
    const table = new PresenceTable(kv, connection, options, bucket);
    // Current from the start when it can be (else it is begun again, and `where` reads the bucket meanwhile).
    await table.#view.begin();
    return table;
  }

  /** The agents connected to this node, as this table knows them. */
  here(): ReadonlyMap<string, { since: number }> {
    return this.#here;
  }

  /** An agent's socket connected to this node: its entry names this node from now on. */
  arrived(agentId: string): void {
    const entry: HereEntry = { since: this.#clock.now(), revision: undefined };
    this.#here.set(agentId, entry);
    this.#unwritten.delete(agentId);
    // Written again below: whatever this node left behind for it is replaced.
    this.#leftBehind.delete(agentId);
    this.#enqueue(agentId, () => this.#write(agentId, entry));
  }

  /** An agent's last socket on this node left: its entry goes, unless another node wrote one since. */
  left(agentId: string): void {
    const entry = this.#here.get(agentId);
    if (entry === undefined) return;
    this.#here.delete(agentId);
    this.#unwritten.delete(agentId);
    this.#enqueue(agentId, () => this.#remove(agentId, entry));
  }

  /**
   * Where each of `agentIds` is connected (those connected nowhere are absent from the map): from the bucket as this
   * node's watch keeps it, without a read, while that view is current; else read from the bucket (`lookup`).
   * TRANSPORT when NATS cannot be reached or does not answer: the caller falls back to what it knows itself.
   */
  async where(agentIds: readonly string[]): Promise<Map<string, AgentPresence>> {
    if (!this.#view.isCurrent()) return this.lookup(agentIds);
    const found = new Map<string, AgentPresence>();
    for (const agentId of agentIds) {
      const viewed = this.#view.get(agentId);
      if (viewed !== undefined && this.#holds(agentId, viewed.presence, viewed.revision)) found.set(agentId, viewed.presence);
    }
    return found;
  }

  /** Whether this node's view of the bucket is current: `where` reads nothing while it is. */
  watching(): boolean {
    return this.#view.isCurrent();
  }

  /**
   * Where each of `agentIds` is connected, as the bucket says now: one read per agent, 100 at a time (those
   * connected nowhere are absent from the map). TRANSPORT when NATS cannot be reached or does not answer.
   */
  async lookup(agentIds: readonly string[]): Promise<Map<string, AgentPresence>> {
    const state = this.#connection.state();
    if (state !== "connected") throw new BridgeError("TRANSPORT", `${this.#where}: not connected (${state})`, { unavailable: true, retryable: true });
    const found = new Map<string, AgentPresence>();
    for (let start = 0; start < agentIds.length; start += LOOKUP_BATCH) {
      const batch = agentIds.slice(start, start + LOOKUP_BATCH);
      const entries = await Promise.all(batch.map((agentId) => this.#request(`reading the presence of ${agentId}`, () => this.#kv.get(this.#key(agentId)))));
      batch.forEach((agentId, index) => {
        const entry = entries[index];
        if (entry === null || entry === undefined || entry.operation !== "PUT") return;
        const presence = parsePresence(entry.string());
        if (presence !== undefined && this.#holds(agentId, presence, entry.revision)) found.set(agentId, presence);
      });
    }
    return found;
  }

  /**
   * Removes every entry naming node `nodeId`: a node that died (its lease was taken over), or this node's previous
   * incarnation (at start). Reads the whole bucket once (one message per agent connected somewhere); an entry
   * written again since it was read stays. Answers how many went. TRANSPORT when NATS does not answer.
   */
  async clearNode(nodeId: string): Promise<number> {
    const stale: Array<{ agentId: string; revision: number }> = [];
    const oldMarkers: Array<{ agentId: string; revision: number }> = [];
    // The markers' times are NATS's (its wall clock), so is this one.
    const markedBefore = Date.now() - this.#markerKeepMs;
    await this.#request(`reading the presence entries of node ${nodeId}`, async () => {
      for await (const entry of await this.#kv.history()) {
        const agentId = agentIdOfKey(entry.key);
        if (agentId === undefined) continue;
        // A marker its node did not purge (it died first): every watch heard it long ago.
        if (entry.operation !== "PUT" && entry.created.getTime() < markedBefore) oldMarkers.push({ agentId, revision: entry.revision });
        if (entry.operation !== "PUT" || parsePresence(entry.string())?.node !== nodeId) continue;
        if (!(nodeId === this.#nodeId && this.#here.has(agentId))) stale.push({ agentId, revision: entry.revision });
      }
    });
    for (let start = 0; start < stale.length; start += LOOKUP_BATCH) {
      await Promise.all(stale.slice(start, start + LOOKUP_BATCH).map(({ agentId, revision }) => this.#delete(agentId, revision)));
    }
    for (let start = 0; start < oldMarkers.length; start += LOOKUP_BATCH) {
      await Promise.all(oldMarkers.slice(start, start + LOOKUP_BATCH).map(({ agentId, revision }) => this.#purge(agentId, revision)));
    }
    return stale.length;
  }

  /**
   * Writes again the entry of every agent connected here, and removes those it still owes: after NATS came back,
   * or after this node took its lease back (a node that took it over meanwhile cleared its entries).
   */
  reannounce(): void {
    this.#unwritten.clear();
    for (const [agentId, entry] of this.#here) this.#enqueue(agentId, () => this.#write(agentId, entry));
    this.#removeLeftBehind();
  }

  /** Resolves once every write asked for so far has been made (or has failed). */
  async settle(): Promise<void> {
    while (this.#queues.size > 0) await Promise.all([...this.#queues.values()]);
  }

  /** Stops following the connection and trying again, and stops watching (the node is closing). */
  close(): void {
    this.#closed = true;
    this.#stopFollowingState();
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#markerTimer);
    this.#view.close();
  }

  /**
   * Whether an entry says where its agent is. One that names this node for an agent not connected here (and with
   * no write of its own under way) is left over from an outage or a crash: it goes, and the agent is nowhere.
   */
  #holds(agentId: string, presence: AgentPresence, revision: number): boolean {
    if (presence.node !== this.#nodeId || this.#here.has(agentId) || this.#queues.has(agentId)) return true;
    this.#enqueue(agentId, () => this.#delete(agentId, revision));
    return false;
  }

  #removeLeftBehind(): void {
    for (const [agentId, entry] of this.#leftBehind) {
      this.#leftBehind.delete(agentId);
      this.#enqueue(agentId, () => this.#remove(agentId, entry));
    }
  }

  /** What NATS did not take is tried again in a while (once: the failures of that try arm it again). */
  #retryLater(): void {
    if (this.#closed || this.#retryTimer !== undefined) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // Cut from NATS: all is written again once it is back (`reannounce`); until then, only look again later.
      if (this.#connection.state() !== "connected") {
        this.#retryLater();
        return;
      }
      for (const agentId of this.#unwritten) {
        this.#unwritten.delete(agentId);
        const entry = this.#here.get(agentId);
        if (entry !== undefined) this.#enqueue(agentId, () => this.#write(agentId, entry));
      }
      this.#removeLeftBehind();
    }, RETRY_MS);
    this.#retryTimer.unref();
  }

  #enqueue(agentId: string, write: () => Promise<void>): void {
    const previous = this.#queues.get(agentId) ?? Promise.resolve();
    const next = previous.then(write).then(
      () => {
        this.#failing = false;
      },
      (error: unknown) => {
        if (!this.#failing) process.emitWarning(`troupe: presence of ${agentId} not written: ${toBridgeError(error).message}`, { code: "TROUPE_CLUSTER" });
        this.#failing = true;
      },
    );
    this.#queues.set(agentId, next);
    void next.then(() => {
      if (this.#queues.get(agentId) === next) this.#queues.delete(agentId);
    });
  }

  async #write(agentId: string, entry: HereEntry): Promise<void> {
    // It left (or connected again) before its turn came: that later change has its own write.
    if (this.#here.get(agentId) !== entry) return;
    const value = JSON.stringify({ node: this.#nodeId, since: entry.since } satisfies AgentPresence);
    try {
      entry.revision = await this.#request(`writing the presence of ${agentId}`, () => this.#kv.put(this.#key(agentId), value));
    } catch (error) {
      this.#unwritten.add(agentId);
      this.#retryLater();
      throw error;
    }
  }

  async #remove(agentId: string, entry: HereEntry): Promise<void> {
    try {
      let revision = entry.revision;
      if (revision === undefined) {
        // Its write got no answer: it may have been made all the same. Removed if it is this one.
        const stored = await this.#request(`reading the presence of ${agentId}`, () => this.#kv.get(this.#key(agentId)));
        const presence = stored?.operation === "PUT" ? parsePresence(stored.string()) : undefined;
        if (stored === null || presence?.node !== this.#nodeId || presence.since !== entry.since) return;
        revision = stored.revision;
      }
      await this.#delete(agentId, revision);
    } catch (error) {
      // Removed once NATS answers again, unless the agent connects here again first.
      if (!this.#here.has(agentId)) {
        this.#leftBehind.set(agentId, entry);
        this.#retryLater();
      }
      throw error;
    }
  }

  /**
   * Removes the agent's entry of `revision` with a delete marker, which every node's watch hears, unless the key
   * has a later revision (another node's entry, or a marker already): that stays. The marker is purged later.
   */
  async #delete(agentId: string, revision: number): Promise<void> {
    try {
      await this.#kv.delete(this.#key(agentId), { previousSeq: revision });
    } catch (error) {
      if (isWrongLastSequence(error)) return;
      throw natsError(error, this.#where, `removing the presence of ${agentId}`);
    }
    // Moved to the end: the markers are kept in the order they were written.
    this.#markers.delete(agentId);
    this.#markers.set(agentId, performance.now());
    this.#purgeMarkersLater();
  }

  /** Purges the markers written `markerKeepMs` ago or more, when a timer says so, and at once the oldest past `MAX_KEPT_MARKERS`. */
  #purgeMarkersLater(): void {
    if (this.#closed) return;
    for (const agentId of this.#markers.keys()) {
      if (this.#markers.size <= MAX_KEPT_MARKERS) break;
      this.#purgeMarker(agentId);
    }
    const [writtenAt] = this.#markers.values();
    if (this.#markerTimer !== undefined || writtenAt === undefined) return;
    this.#markerTimer = setTimeout(
      () => {
        this.#markerTimer = undefined;
        const due = performance.now() - this.#markerKeepMs;
        for (const [agentId, at] of this.#markers) {
          if (at > due) break;
          this.#purgeMarker(agentId);
        }
        this.#purgeMarkersLater();
      },
      Math.max(0, writtenAt + this.#markerKeepMs - performance.now()),
    );
    this.#markerTimer.unref();
  }

  /**
   * Purges the agent's delete marker, in its turn, if the key still ends with one (not when the agent connected
   * again since). NATS away: tried again a `markerKeepMs` later (a marker left behind goes at the next `clearNode`).
   */
  #purgeMarker(agentId: string): void {
    this.#markers.delete(agentId);
    this.#enqueue(agentId, async () => {
      try {
        const stored = await this.#request(`reading the presence of ${agentId}`, () => this.#kv.get(this.#key(agentId)));
        if (stored !== null && stored.operation !== "PUT") await this.#purge(agentId, stored.revision);
      } catch (error) {
        // Tried again later; past the bound, left to the next `clearNode`.
        if (this.#markers.size < MAX_KEPT_MARKERS) {
          this.#markers.set(agentId, performance.now());
          this.#purgeMarkersLater();
        }
        throw error;
      }
    });
  }

  /** Purges the agent's messages up to `revision`: a later one (another node's entry) stays. */
  async #purge(agentId: string, revision: number): Promise<void> {
    await this.#request(`removing the presence of ${agentId}`, () =>
      this.#connection.manager.streams.purge(this.#stream, { filter: this.#subjectPrefix + this.#key(agentId), seq: revision + 1 }),
    );
  }

  #key(agentId: string): string {
    return natsToken(agentId, "A presence entry needs an agent id");
  }

  async #request<Result>(doing: string, request: () => Promise<Result>): Promise<Result> {
    try {
      return await request();
    } catch (error) {
      throw natsError(error, this.#where, doing);
    }
  }
}
