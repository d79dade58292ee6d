/**
 * Leases on a JetStream key-value bucket: which node holds a resource (a workflow, say) for now. A node takes a
 * free resource, renews its lease well within the lease time, and releases it when done; a node that stops
 * renewing (killed, cut from NATS) loses it to another once the lease time has passed.
 *
 * Every change is a compare-and-set on the bucket's revision, so two nodes never both take a lease. Expiry needs
 * no shared clock: a node that finds a lease held watches its revision, and takes it only once it has seen that
 * revision unchanged for a whole lease time on its own clock; the holder stops acting for it once a lease time
 * has passed since it sent its last renewal. Each tenure has a token, the bucket revision that began it: greater
 * for every new holder, it fences the holder's writes in the store (`Fence`, src/store/store.ts), so that a node
 * that lost its lease while it was not looking cannot write after the new holder.
 */
import type { KV } from "@nats-io/kv";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { Fence } from "../store/store.js";
import { isWrongLastSequence, keepReplicas, natsError, natsToken, type ClusterConnection, type Replicas } from "./nats-connection.js";

/** The bucket leases live in unless told otherwise. */
const DEFAULT_LEASE_BUCKET = "troupe_leases";

/** A lease a node holds. It is the fence of the holder's writes to the store (resource and token). */
export interface Lease extends Fence {
  /** The node holding it. */
  holder: string;
  /** The bucket revision of its last write (taking or renewal): what the next renewal or release must find. */
  revision: number;
  /** On the holder's clock, until when it may act for the resource unless it renews: a lease time after it sent its last write. */
  validUntil: number;
}

/** Who holds a resource, as the bucket says. */
export interface LeaseHolder {
  holder: string;
  token: number;
}

/** How a lease table is opened. */
export interface LeaseTableOptions {
  /** This node's id: what the bucket says holds its leases. */
  nodeId: string;
  /** How long a lease lasts without renewal. Renew well within it (a third of it, say). */
  leaseMs: number;
  /** The key-value bucket (default `troupe_leases`), created when missing. */
  bucket?: string;
  /** Copies of the bucket a NATS cluster keeps, an existing bucket brought to it; not given: 1 for a new bucket, an existing one as it is. */
  replicas?: Replicas;
  /** The node's clock (its `now()` only). */
  clock?: Pick<Clock, "now">;
}

/** What the bucket holds for a lease: its holder, and the token of its tenure once renewed (the revision that began it). */
interface LeaseValue {
  holder: string;
  token?: number;
}

/** One node's view of the leases of a bucket. */
export class LeaseTable {
  readonly #kv: KV;
  readonly #nodeId: string;
  readonly #leaseMs: number;
  readonly #clock: Pick<Clock, "now">;
  readonly #where: string;
  /** Leases held by others: the revision this node saw, and since when (its clock) it has seen it unchanged. */
  readonly #watched = new Map<string, { revision: number; since: number }>();

  private constructor(kv: KV, options: LeaseTableOptions, where: string) {
    this.#kv = kv;
    this.#nodeId = options.nodeId;
    this.#leaseMs = options.leaseMs;
    this.#clock = options.clock ?? systemClock;
    this.#where = where;
  }

  /** Opens the bucket of leases (creating it when missing) for node `nodeId`. CONFIG for bad options. */
  static async open(connection: ClusterConnection, options: LeaseTableOptions): Promise<LeaseTable> {
    if (typeof options.nodeId !== "string" || options.nodeId.length === 0)
      throw new BridgeError("CONFIG", "A lease table needs the node's id", { field: "nodeId" });
    if (!Number.isSafeInteger(options.leaseMs) || options.leaseMs < 1)
      throw new BridgeError("CONFIG", "leaseMs must be a positive integer", { field: "leaseMs" });
    const bucket = options.bucket ?? DEFAULT_LEASE_BUCKET;
    // One value per key: a lease's history is of no use, and its revision is the whole of its state.
    const kv = await connection.openBucket(bucket, { history: 1, replicas: options.replicas ?? 1 });
    if (options.replicas !== undefined) await keepReplicas(connection, `KV_${bucket}`, options.replicas);
    return new LeaseTable(kv, options, `${connection.where}, bucket ${bucket}`);
  }

  /**
   * Takes the lease of `resource` if it is free, or if its holder has not renewed it for a lease time as this node
   * has watched it; answers `undefined` otherwise (ask again later: each ask while it is held goes on watching).
   * Exactly one of several nodes asking at once gets it. TRANSPORT when NATS does not answer.
   */
  async acquire(resource: string): Promise<Lease | undefined> {
    const key = leaseKey(resource);
    const entry = await this.#request(`reading the lease of ${resource}`, () => this.#kv.get(key));
    const value = JSON.stringify({ holder: this.#nodeId } satisfies LeaseValue);
    if (entry === null || entry.operation !== "PUT") {
      const sentAt = this.#clock.now();
      const revision = await this.#compareAndSet(`taking the lease of ${resource}`, () => this.#kv.create(key, value));
      return revision === undefined ? undefined : this.#lease(resource, revision, revision, sentAt);
    }
    const now = this.#clock.now();
    const watched = this.#watched.get(key);
    if (watched === undefined || watched.revision !== entry.revision) {
      this.#watched.set(key, { revision: entry.revision, since: now });
      return undefined;
    }
    if (now - watched.since < this.#leaseMs) return undefined;
    const revision = await this.#compareAndSet(`taking over the lease of ${resource}`, () => this.#kv.update(key, value, entry.revision));
    this.#watched.delete(key);
    return revision === undefined ? undefined : this.#lease(resource, revision, revision, now);
  }

  /**
   * Renews a lease this node holds: the same tenure (token) for another lease time. Answers `undefined` when the
   * lease was lost (another node took it over, or it was released): stop acting for the resource at once.
   * TRANSPORT when NATS does not answer: the lease is then still good until its `validUntil`, not after.
   */
  async renew(lease: Lease): Promise<Lease | undefined> {
    const sentAt = this.#clock.now();
    const value = JSON.stringify({ holder: this.#nodeId, token: lease.token } satisfies LeaseValue);
    const revision = await this.#compareAndSet(`renewing the lease of ${lease.resource}`, () =>
      this.#kv.update(leaseKey(lease.resource), value, lease.revision),
    );
    return revision === undefined ? undefined : this.#lease(lease.resource, lease.token, revision, sentAt);
  }

  /** Gives a lease up, so that another node may take it at once. A lease already lost is left to its new holder. */
  async release(lease: Lease): Promise<void> {
    await this.#compareAndSet(`releasing the lease of ${lease.resource}`, async () => {
      await this.#kv.delete(leaseKey(lease.resource), { previousSeq: lease.revision });
      return lease.revision;
    });
  }

  /** Who holds `resource` now, as the bucket says (a lease past its time still shows until another node takes it). */
  async holderOf(resource: string): Promise<LeaseHolder | undefined> {
    const entry = await this.#request(`reading the lease of ${resource}`, () => this.#kv.get(leaseKey(resource)));
    if (entry === null || entry.operation !== "PUT") return undefined;
    const value = entry.json<LeaseValue>();
    return { holder: value.holder, token: value.token ?? entry.revision };
  }

  #lease(resource: string, token: number, revision: number, sentAt: number): Lease {
    return { resource, token, holder: this.#nodeId, revision, validUntil: sentAt + this.#leaseMs };
  }

  /** Runs a write that expects a revision: its new revision, or `undefined` when another write came first. */
  async #compareAndSet(doing: string, write: () => Promise<number>): Promise<number | undefined> {
    try {
      return await write();
    } catch (error) {
      if (isWrongLastSequence(error)) return undefined;
      throw natsError(error, this.#where, doing);
    }
  }

  async #request<Result>(doing: string, request: () => Promise<Result>): Promise<Result> {
    try {
      return await request();
    } catch (error) {
      throw natsError(error, this.#where, doing);
    }
  }
}

/** The bucket key of a resource (keys allow only letters, digits and `-/_=.`; resource names are free text). */
function leaseKey(resource: string): string {
  return natsToken(resource, "A lease needs a resource name");
}
