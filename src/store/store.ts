/**
 * The store: what troupe keeps across restarts, as collections of JSON records keyed by id. One interface for
 * every backend (memory, SQLite, and later PostgreSQL), so that the bus and the runtime never name an engine.
 */

/**
 * The collections a store holds. Each is a set of JSON records keyed by a string id:
 * - `agents`: registrations, with the hash of each agent's token;
 * - `messages`: the envelope and delivery state of every message not yet finished;
 * - `message_status`: the small status record of a finished message;
 * - `workflows`: XState persisted snapshots of workflow sessions;
 * - `bridge_sessions`: bridge sessions (status, metadata, history, usage, timestamps);
 * - `memory`: the conversation memory of agent.yaml agents (ids share prefixes: list them with `prefix`);
 * - `meta`: anything else the server keeps about itself;
 * - `a2a_tasks`, `a2a_contexts`: in a cluster, the A2A tasks a node serves and the bridge session behind each A2A
 *   context, so that every node finds them (src/a2a/a2a-records.ts).
 */
export const STORE_COLLECTIONS = [
  "agents",
  "messages",
  "message_status",
  "workflows",
  "bridge_sessions",
  "memory",
  "meta",
  "a2a_tasks",
  "a2a_contexts",
] as const;

/** One collection of a store. */
export type StoreCollection = (typeof STORE_COLLECTIONS)[number];

/** One record, as `list` returns it. */
export interface StoreRecord {
  id: string;
  /** The value as it was put: a fresh copy, parsed from its JSON. */
  value: unknown;
}

/**
 * Which records `list` returns: all of a collection, or a page of them. Each option narrows the others; the order is
 * always by id (code-point order), so that a page's last id is where the next page starts (`after`).
 */
export interface ListOptions {
  /** Only the records whose id starts with this string. */
  prefix?: string;
  /**
   * Only the records whose value is an object whose `node` is this string: the records a node of a cluster owns
   * (workflows, bridge sessions, A2A tasks name theirs). Every store indexes a value's top-level `node` when it
   * is written (and the node a record is moved to: `move`), so that a node reads its own records without reading
   * the others'.
   */
  node?: string;
  /** Only the records whose id comes after this one (not it): the last id of the previous page. */
  after?: string;
  /** At most this many records (a positive integer): a page. */
  limit?: number;
  /**
   * At most about this many bytes of values (a positive integer): the records end before the one whose stored
   * value (its JSON in UTF-8, or its ciphertext) would take theirs past it; the first is returned whatever its size.
   * What a page of records that may each be a few MiB holds at once, whatever their number.
   */
  maxBytes?: number;
}

/**
 * The fencing token of a write: the writer's claim to `resource` (a lease it holds, e.g. on a workflow), with
 * the token of its tenure (`token` grows with each new holder: src/cluster/leases.ts uses the lease's revision).
 * A store commits a fenced write only if no write with a greater token for the same resource came before it;
 * otherwise the write is dropped, never committed, and `onRefused` is called: its writer has lost the resource
 * to a newer holder and must stop acting for it.
 */
export interface Fence {
  resource: string;
  token: number;
  /** Called (once per refused write, after the commit of its batch) when the write was refused. */
  onRefused?: () => void;
}

/** How a write is made. */
export interface WriteOptions {
  /** Commits the write only while its writer's claim is the newest (see `Fence`). */
  fence?: Fence;
}

/**
 * A durable home for troupe's state.
 *
 * Writes are enqueued synchronously (`put`, `delete`), so callers keep their order without awaiting between
 * writes; every write enqueued in one event-loop turn is committed in one transaction at the end of that turn.
 * `flush()` resolves once every write enqueued before it is durable, and rejects with a `BridgeError` when
 * their commit failed: the writes of a failed commit are kept and go first in the next one, never dropped.
 * Values are JSON: a value is serialized when it is put, so the caller may change its object afterwards, and
 * every read returns a fresh copy. Reads see every write enqueued before them (they wait for its commit).
 */
export interface Store {
  /** True for a store several processes share (PostgreSQL with `exclusive: false`): what a cluster's nodes need. */
  readonly sharedAcrossProcesses?: boolean;
  /** Sets a record (enqueued; durable at the next `flush()`). Throws INTERNAL for a value that is not JSON, or a malformed fence. */
  put(collection: StoreCollection, id: string, value: unknown, options?: WriteOptions): void;
  /** Removes a record, if there is one (enqueued; durable at the next `flush()`). */
  delete(collection: StoreCollection, id: string, options?: WriteOptions): void;
  /**
   * Gives a record to node `node`, if there is one (enqueued; durable at the next `flush()`): `list`'s `node`
   * selects it by that node from then on, and its value (an object) is read with that top-level `node`; the rest
   * of its value stays as stored, not written again. What a cluster node taking a dead one's records over writes:
   * a record of a few MiB is moved for the cost of a small one.
   */
  move(collection: StoreCollection, id: string, node: string, options?: WriteOptions): void;
  /** Resolves once every write enqueued so far is durable; rejects with a `BridgeError` if it could not be. */
  flush(): Promise<void>;
  /** One record's value, or `undefined` when there is none. */
  get(collection: StoreCollection, id: string): Promise<unknown>;
  /**
   * The records of a collection that `options` select (every one by default), ordered by id in code-point order.
   * Give a `limit` to read a collection that may be large: `listPages` (src/store/pages.ts) reads it page by page.
   */
  list(collection: StoreCollection, options?: ListOptions): Promise<StoreRecord[]>;
  /** Flushes, then releases the store; it rejects if the last writes could not be made durable. Idempotent. */
  close(): Promise<void>;
}
