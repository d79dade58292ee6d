/**
 * The PostgreSQL store: the records of every collection in one table of a schema of its own (default
 * `troupe`), each batch of writes one transaction on the store's one writing connection, reads on a small pool.
 * `pg` is loaded when the first store opens, so importing troupe does not load it.
 */
import { lazyImport } from "../lazy-modules.js";
import type pg from "pg";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { resolveEncryption, type ValueCipher } from "./encryption.js";
import { batchTokens, splitByFence } from "./fences.js";
import { migratePostgres, NODE_COLUMN_VERSION, quoteIdentifier } from "./postgres-migrations.js";
import { isUnavailable, postgresError, postgresOpenError } from "./postgres-errors.js";
import { decodeRecord, decodeValue, encodeValue, ENCRYPTION_META_KEY, RECORD_ROW_COLUMNS, type RecordRow } from "./record-codec.js";
import type { ListOptions, Store, StoreCollection, StoreRecord } from "./store.js";
import { BatchedStore, nodeOf, WriteBatcher, type WriteOp } from "./write-batch.js";

/** The schema a store keeps its tables in unless told otherwise. */
export const DEFAULT_POSTGRES_SCHEMA = "troupe";

/** Where and how to open a PostgreSQL store. */
export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database` (or `postgresql://`), with `pg`'s query parameters (`sslmode`, …). */
  url: string;
  /**
   * The schema of the store's tables (default `troupe`), created when missing: letters, digits and `_`, 63 at
   * most. Two stores in one database need two schemas.
   */
  schema?: string;
  /**
   * Encrypts every record value (AES-256-GCM), as the SQLite store does: 64 hex characters (a raw 32-byte key)
   * or a passphrase of 16+ characters. A store created with a key needs the same key at every open (CONFIG otherwise).
   */
  encryptionKey?: string;
  /**
   * One troupe process at a time writes to the store (default true): the store holds a PostgreSQL advisory lock
   * on its writing connection for as long as it is open, a second store on the same schema is CONFIG at open,
   * and no write is made on a connection that does not hold the lock. false lets several processes share it (a
   * cluster's nodes): they hold the same lock together, so an exclusive store cannot open a schema they share, nor
   * they one an exclusive store holds (CONFIG at open, after `lockWaitMs`).
   */
  exclusive?: boolean;
  /**
   * How long a store waits at open for the lock of a previous owner (default 10 s): one killed a moment
   * ago holds it until PostgreSQL notices its connection's end (at once for a process killed on a running host,
   * about 25 s for a host that vanished). CONFIG "in use by another process" after it.
   */
  lockWaitMs?: number;
  /** Connections of the read pool (default 4); writes have one connection of their own. */
  maxReadConnections?: number;
  /** How long a connection may take to open (default 10 s). */
  connectTimeoutMs?: number;
  /** How long a query (a read, a batch's commit) may take before it fails TRANSPORT and its connection is dropped (default 30 s). */
  queryTimeoutMs?: number;
  /** The clock of each record's `updated_at`. */
  clock?: Pick<Clock, "now">;
}

/** Advisory lock classes (the first key of PostgreSQL's two-key advisory locks): "trup" and "trus" in ASCII. */
const MIGRATION_LOCK_CLASS = 0x74727570;
const WRITER_LOCK_CLASS = 0x74727573;
/** Rows per statement of a commit: a batch of 20,000 writes is a few statements in one transaction. */
const ROWS_PER_STATEMENT = 5_000;
const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const DEFAULTS = {
  schema: DEFAULT_POSTGRES_SCHEMA,
  exclusive: true,
  lockWaitMs: 10_000,
  maxReadConnections: 4,
  connectTimeoutMs: 10_000,
  queryTimeoutMs: 30_000,
};
/** PostgreSQL's SQLSTATE for a lock not obtained within lock_timeout. */
const LOCK_NOT_AVAILABLE = "55P03";

type Pg = typeof pg;

/** The options of a store, checked, with their defaults. */
interface ResolvedOptions {
  url: string;
  schemaName: string;
  exclusive: boolean;
  lockWaitMs: number;
  maxReadConnections: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
  /** Where the store is, for messages: its URL without the password, and its schema. */
  where: string;
}

/**
 * Opens the PostgreSQL store at `url` (creating its schema and tables when missing, migrating an older schema).
 * CONFIG for bad options, a database that is not UTF-8, a schema holding other tables, a newer schema version, a
 * store held by another process (`exclusive`), a server that refuses the user or the database, and a missing or
 * wrong encryption key; TRANSPORT when the server cannot be reached.
 */
export async function openPostgresStore(options: PostgresStoreOptions): Promise<Store> {
  const resolved = resolveOptions(options);
  const driver: Pg = (await pgModule()).default;
  const writer = await connectWriter(driver, resolved);
  try {
    const cipher = await prepareSchema(writer, resolved, options.encryptionKey);
    const pool = new driver.Pool({ ...connectionConfig(resolved), max: resolved.maxReadConnections });
    // An idle pooled connection that breaks is dropped by the pool; the next read opens another.
    pool.on("error", () => undefined);
    return new PostgresStore(driver, resolved, writer, pool, cipher, options.clock ?? systemClock);
  } catch (error) {
    await writer.end().catch(() => undefined);
    throw postgresOpenError(error, resolved.where);
  }
}

function resolveOptions(options: PostgresStoreOptions): ResolvedOptions {
  const { url } = options;
  if (typeof url !== "string" || url.length === 0)
    throw new BridgeError("CONFIG", "A PostgreSQL store needs a url (postgres://user:password@host:port/database)", { field: "url" });
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new BridgeError("CONFIG", "The PostgreSQL store's url is not a URL (postgres://user:password@host:port/database)", { field: "url" });
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new BridgeError("CONFIG", `The PostgreSQL store's url must start with postgres:// or postgresql://, not ${parsed.protocol}//`, { field: "url" });
  }
  const schemaName = options.schema ?? DEFAULTS.schema;
  if (!SCHEMA_NAME.test(schemaName)) {
    throw new BridgeError(
      "CONFIG",
      `The PostgreSQL store's schema ${JSON.stringify(schemaName)} is not a name of letters, digits and _ (63 at most, not starting with a digit)`,
      { field: "schema" },
    );
  }
  const counts = {
    lockWaitMs: options.lockWaitMs,
    maxReadConnections: options.maxReadConnections,
    connectTimeoutMs: options.connectTimeoutMs,
    queryTimeoutMs: options.queryTimeoutMs,
  };
  for (const [field, value] of Object.entries(counts)) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1))
      throw new BridgeError("CONFIG", `The PostgreSQL store's ${field} must be a positive integer`, { field });
  }
  return {
    url,
    schemaName,
    exclusive: options.exclusive ?? DEFAULTS.exclusive,
    lockWaitMs: options.lockWaitMs ?? DEFAULTS.lockWaitMs,
    maxReadConnections: options.maxReadConnections ?? DEFAULTS.maxReadConnections,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    queryTimeoutMs: options.queryTimeoutMs ?? DEFAULTS.queryTimeoutMs,
    where: `the PostgreSQL store at ${redactedPostgresUrl(parsed)} (schema ${schemaName})`,
  };
}

/**
 * A PostgreSQL URL as troupe shows it in messages and logs: scheme, user, host and database, never the password
 * nor the query (which may hold one too). A string that is not a URL is shown as `(not a URL)`.
 */
export function redactedPostgresUrl(url: string | URL): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(not a URL)";
  }
  return `${parsed.protocol}//${parsed.username === "" ? "" : `${parsed.username}@`}${parsed.host}${parsed.pathname}`;
}

const pgModule = lazyImport("pg", "The PostgreSQL store", () => import("pg"));

function connectionConfig(options: ResolvedOptions): pg.ClientConfig {
  return {
    connectionString: options.url,
    connectionTimeoutMillis: options.connectTimeoutMs,
    query_timeout: options.queryTimeoutMs,
    // A server that vanishes without closing the connection (a partition) is noticed by TCP, not only by the query timeout.
    keepAlive: true,
    application_name: "troupe",
  };
}

/**
 * Opens the store's writing connection and takes its advisory lock (alone for an exclusive store, with the
 * others for a shared one): CONFIG when another process holds it the other way. The lock lives as long as the connection (PostgreSQL releases it when the
 * connection ends, or the process holding it dies).
 */
async function connectWriter(driver: Pg, options: ResolvedOptions): Promise<pg.Client> {
  const client = new driver.Client(connectionConfig(options));
  // A connection that breaks while idle emits `error`; the next commit notices it (not queryable) and reconnects.
  client.on("error", () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ server_encoding: string }>("SHOW server_encoding");
    // Ids and values are Unicode: a database of another encoding would refuse some, or mangle them.
    if (rows[0]?.server_encoding !== "UTF8") {
      throw new BridgeError(
        "CONFIG",
        `${options.where} is in a database of encoding ${rows[0]?.server_encoding}: troupe needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')`,
      );
    }
    // PostgreSQL notices a client that vanished without closing its connection by these keepalives (about
    // 25 s), and only then releases the store's lock; its default is the system's (often two hours).
    await client.query(
      "SELECT set_config('tcp_keepalives_idle', '10', false), set_config('tcp_keepalives_interval', '5', false), set_config('tcp_keepalives_count', '3', false)",
    );
    await takeWriterLock(client, options);
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw postgresOpenError(error, options.where);
  }
}

/**
 * Takes the store's lock, waiting up to `lockWaitMs` for a holder to go; CONFIG if it does not. An exclusive store
 * holds it alone; shared stores (a cluster's nodes) hold it together, so that neither kind opens a schema the other
 * holds: a troupe that owns a store alone would restore, and rewrite, the records a cluster's nodes own.
 */
async function takeWriterLock(client: pg.Client, options: ResolvedOptions): Promise<void> {
  await client.query("SELECT set_config('lock_timeout', $1, false)", [`${options.lockWaitMs}ms`]);
  try {
    await client.query(options.exclusive ? "SELECT pg_advisory_lock($1, hashtext($2))" : "SELECT pg_advisory_lock_shared($1, hashtext($2))", [
      WRITER_LOCK_CLASS,
      options.schemaName,
    ]);
  } catch (error) {
    if (!(error instanceof Error && "code" in error && error.code === LOCK_NOT_AVAILABLE)) throw error;
    throw new BridgeError(
      "CONFIG",
      options.exclusive
        ? `${options.where} is in use by another process: one process at a time owns an exclusive store, and a cluster's nodes share theirs only with each other (another troupe serve, or a cluster's node? give each its own schema or database)`
        : `${options.where} is in use by another process that owns it alone (a troupe serve without --cluster?): a cluster's nodes share a store only with each other`,
    );
  }
  await client.query("SELECT set_config('lock_timeout', '0', false)");
}

/**
 * In one transaction, under a lock that serializes the stores opening the same schema: migrates the schema
 * (CONFIG before anything is written for a schema troupe cannot use), then sets up encryption.
 */
async function prepareSchema(client: pg.Client, options: ResolvedOptions, key: string | undefined): Promise<ValueCipher | undefined> {
  const schema = quoteIdentifier(options.schemaName);
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock($1, hashtext($2))", [MIGRATION_LOCK_CLASS, options.schemaName]);
    const from = await migratePostgres(client, { schemaName: options.schemaName, where: options.where });
    const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${schema}.store_meta WHERE key = $1`, [ENCRYPTION_META_KEY]);
    const countRecords = async (): Promise<number> =>
      Number((await client.query<{ count: string }>(`SELECT count(*) AS count FROM ${schema}.records`)).rows[0]!.count);
    const { cipher, newHeader } = await resolveEncryption({ key, header: rows[0]?.value, countRecords, where: options.where });
    if (newHeader !== undefined)
      await client.query(`INSERT INTO ${schema}.store_meta (key, value) VALUES ($1, $2)`, [ENCRYPTION_META_KEY, JSON.stringify(newHeader)]);
    if (from > 0 && from < NODE_COLUMN_VERSION) await fillNodes(client, schema, cipher);
    await client.query("COMMIT");
    return cipher;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
}

/** Rows read per query while `fillNodes` goes through a store. */
const FILL_PAGE_ROWS = 500;

/**
 * Gives each record of a store migrated from before `node` existed its value's `node` (`nodeOf`, as every write
 * does), page by page: the migration could not read an encrypted store's values. Part of the transaction that
 * opens the store.
 */
async function fillNodes(client: pg.Client, schema: string, cipher: ValueCipher | undefined): Promise<void> {
  let after: { collection: string; id: string } | undefined;
  for (;;) {
    const { rows } = await client.query<RecordRow & { collection: StoreCollection }>(
      `SELECT collection, ${RECORD_ROW_COLUMNS} FROM ${schema}.records
       WHERE $1::text IS NULL OR (collection, id) > ($1::text, $2::text COLLATE "C") ORDER BY collection, id LIMIT ${FILL_PAGE_ROWS}`,
      [after?.collection ?? null, after?.id ?? null],
    );
    const named = rows.flatMap((row) => {
      const node = nodeOf(decodeValue(cipher, row.collection, row.id, row));
      return node === undefined ? [] : [{ collection: row.collection, id: row.id, node }];
    });
    if (named.length > 0) {
      await client.query(
        `UPDATE ${schema}.records AS r SET node = u.node FROM unnest($1::text[], $2::text[], $3::text[]) AS u(collection, id, node)
         WHERE r.collection = u.collection AND r.id = u.id COLLATE "C"`,
        [named.map((row) => row.collection), named.map((row) => row.id), named.map((row) => row.node)],
      );
    }
    const last = rows[rows.length - 1];
    if (rows.length < FILL_PAGE_ROWS || last === undefined) return;
    after = { collection: last.collection, id: last.id };
  }
}

class PostgresStore extends BatchedStore {
  readonly #driver: Pg;
  readonly #options: ResolvedOptions;
  readonly #pool: pg.Pool;
  readonly #cipher: ValueCipher | undefined;
  readonly #clock: Pick<Clock, "now">;
  readonly #records: string;
  readonly #fences: string;
  /** The writing connection; `undefined` after a commit failed on it, until the next commit opens another. */
  #writer: pg.Client | undefined;
  protected readonly batcher: WriteBatcher;
  readonly sharedAcrossProcesses: boolean;

  constructor(driver: Pg, options: ResolvedOptions, writer: pg.Client, pool: pg.Pool, cipher: ValueCipher | undefined, clock: Pick<Clock, "now">) {
    super();
    this.#driver = driver;
    this.#options = options;
    this.#writer = writer;
    this.#pool = pool;
    this.#cipher = cipher;
    this.#clock = clock;
    this.sharedAcrossProcesses = !options.exclusive;
    this.#records = `${quoteIdentifier(options.schemaName)}.records`;
    this.#fences = `${quoteIdentifier(options.schemaName)}.fences`;
    this.batcher = new WriteBatcher((ops) => this.#commit(ops));
  }

  protected async read(collection: StoreCollection, id: string): Promise<unknown> {
    const rows = await this.#query<RecordRow>(`SELECT ${RECORD_ROW_COLUMNS} FROM ${this.#records} WHERE collection = $1 AND id = $2`, [collection, id]);
    const row = rows[0];
    return row === undefined ? undefined : decodeRecord(this.#cipher, collection, row);
  }

  protected async readAll(collection: StoreCollection, { prefix, node, after, limit, maxBytes }: ListOptions): Promise<StoreRecord[]> {
    const values: unknown[] = [collection];
    const conditions = ["collection = $1"];
    const condition = (sql: (parameter: string) => string, value: unknown): void => {
      values.push(value);
      conditions.push(sql(`$${values.length}`));
    };
    if (prefix !== undefined && prefix !== "") condition((parameter) => `id LIKE ${parameter}`, likePrefix(prefix));
    if (after !== undefined) condition((parameter) => `id > ${parameter}`, after);
    if (node !== undefined) condition((parameter) => `node = ${parameter}`, node);
    let sql = `SELECT ${RECORD_ROW_COLUMNS} FROM ${this.#records} WHERE ${conditions.join(" AND ")} ORDER BY id`;
    if (limit !== undefined) {
      values.push(limit);
      sql += ` LIMIT $${values.length}`;
    }
    if (maxBytes !== undefined) {
      // The rows up to the one that takes the running size of their values past maxBytes, the first whatever its
      // size: octet_length reads a stored value's size without reading the value, so the others are never sent.
      values.push(maxBytes);
      const size = "coalesce(octet_length(value), octet_length(ciphertext), 0)";
      sql = `SELECT ${RECORD_ROW_COLUMNS} FROM (
          SELECT ${RECORD_ROW_COLUMNS}, row_number() OVER byId AS n, sum(${size}) OVER byId AS upto FROM (${sql}) AS selected WINDOW byId AS (ORDER BY id)
        ) AS sized WHERE n = 1 OR upto <= $${values.length} ORDER BY id`;
    }
    const rows = await this.#query<RecordRow>(sql, values);
    return rows.map((row) => ({ id: row.id, value: decodeRecord(this.#cipher, collection, row) }));
  }

  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      const writer = this.#writer;
      this.#writer = undefined;
      // Ending the writing connection releases the store's lock.
      await Promise.allSettled([writer?.end(), this.#pool.end()]);
    }
  }

  async #query<Row extends pg.QueryResultRow>(text: string, values: unknown[]): Promise<Row[]> {
    try {
      // A pooled connection whose query fails is destroyed, not reused.
      return (await this.#pool.query<Row>(text, values)).rows;
    } catch (error) {
      throw postgresError(error, this.#options.where, "a read");
    }
  }

  /**
   * Commits one batch in one transaction on the writing connection; a failure drops that connection. A
   * connection that broke while idle (found at BEGIN, before anything of the batch was sent) is replaced at
   * once, so that a server restart or a cut connection costs no failed flush.
   */
  async #commit(ops: readonly WriteOp[]): Promise<readonly WriteOp[]> {
    const idle = this.#writer;
    if (idle !== undefined) {
      try {
        await idle.query("BEGIN");
      } catch (error) {
        this.#dropWriter(idle);
        if (!isUnavailable(error)) throw postgresError(error, this.#options.where, "a commit");
        return this.#commitOn(await this.#reconnect(), ops);
      }
      return this.#commitOn(idle, ops, { begun: true });
    }
    return this.#commitOn(await this.#reconnect(), ops);
  }

  async #commitOn(writer: pg.Client, ops: readonly WriteOp[], { begun = false } = {}): Promise<readonly WriteOp[]> {
    this.#writer = writer;
    try {
      if (!begun) await writer.query("BEGIN");
      const { admitted, refused } = await this.#admit(writer, ops);
      await this.#writeAll(writer, admitted);
      await writer.query("COMMIT");
      return refused;
    } catch (error) {
      // The connection may be broken, or busy with a query that timed out: a new one serves the next commit.
      // A COMMIT whose answer was lost may have landed; the batch is written again, to the same effect.
      this.#dropWriter(writer);
      throw postgresError(error, this.#options.where, "a commit");
    }
  }

  #dropWriter(writer: pg.Client): void {
    if (this.#writer === writer) this.#writer = undefined;
    // Ending a connection releases its lock; it is not awaited, as a broken one may never answer.
    writer.end().catch(() => undefined);
  }

  async #reconnect(): Promise<pg.Client> {
    try {
      return await connectWriter(this.#driver, this.#options);
    } catch (error) {
      const cause = toBridgeError(error);
      // Another process took the store while this one was disconnected: its writes must not land.
      throw new BridgeError("TRANSPORT", cause.message, cause.details);
    }
  }

  /**
   * The fenced writes of the batch that their fences admit: each resource's greatest token in the batch is
   * recorded as its newest unless a greater one is there already. The fence rows stay locked until the commit, so
   * two processes' batches for one resource are admitted one after the other.
   */
  async #admit(writer: pg.Client, ops: readonly WriteOp[]): Promise<{ admitted: WriteOp[]; refused: WriteOp[] }> {
    const tokens = batchTokens(ops);
    if (tokens.size === 0) return { admitted: [...ops], refused: [] };
    const { rows } = await writer.query<{ resource: string }>(
      `INSERT INTO ${this.#fences} (resource, token) SELECT * FROM unnest($1::text[], $2::bigint[])
       ON CONFLICT (resource) DO UPDATE SET token = excluded.token WHERE ${this.#fences}.token <= excluded.token
       RETURNING resource`,
      [[...tokens.keys()], [...tokens.values()]],
    );
    return splitByFence(ops, tokens, new Set(rows.map((row) => row.resource)));
  }

  async #writeAll(writer: pg.Client, ops: readonly WriteOp[]): Promise<void> {
    const updatedAt = this.#clock.now();
    const moves = ops.filter((op) => op.moved === true);
    const deletes = ops.filter((op) => op.json === undefined && op.moved !== true);
    const puts = ops.filter((op): op is WriteOp & { json: string } => op.json !== undefined);
    for (let start = 0; start < deletes.length; start += ROWS_PER_STATEMENT) {
      const chunk = deletes.slice(start, start + ROWS_PER_STATEMENT);
      await writer.query(
        `DELETE FROM ${this.#records} AS r USING unnest($1::text[], $2::text[]) AS d(collection, id)
         WHERE r.collection = d.collection AND r.id = d.id COLLATE "C"`,
        [chunk.map((op) => op.collection), chunk.map((op) => op.id)],
      );
    }
    for (let start = 0; start < puts.length; start += ROWS_PER_STATEMENT) {
      const chunk = puts.slice(start, start + ROWS_PER_STATEMENT);
      const rows = chunk.map((op) => encodeValue(this.#cipher, op.collection, op.id, op.json));
      await writer.query(
        `INSERT INTO ${this.#records} (collection, id, value, ciphertext, iv, auth_tag, node, updated_at)
         SELECT collection, id, value, ciphertext, iv, auth_tag, node, $8
           FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::bytea[], $7::text[])
           AS u(collection, id, value, ciphertext, iv, auth_tag, node)
         ON CONFLICT (collection, id) DO UPDATE SET value = excluded.value, ciphertext = excluded.ciphertext, iv = excluded.iv,
           auth_tag = excluded.auth_tag, node = excluded.node, updated_at = excluded.updated_at`,
        [
          chunk.map((op) => op.collection),
          chunk.map((op) => op.id),
          rows.map((row) => row.value),
          rows.map((row) => row.ciphertext),
          rows.map((row) => row.iv),
          rows.map((row) => row.auth_tag),
          chunk.map((op) => op.node ?? null),
          updatedAt,
        ],
      );
    }
    // After the puts and deletes (a move of a record put in the same batch moves what was put). A move changes the
    // node column alone: a value of a few MiB is not written again (nor its TOAST).
    for (let start = 0; start < moves.length; start += ROWS_PER_STATEMENT) {
      const chunk = moves.slice(start, start + ROWS_PER_STATEMENT);
      await writer.query(
        `UPDATE ${this.#records} AS r SET node = m.node, updated_at = $4 FROM unnest($1::text[], $2::text[], $3::text[]) AS m(collection, id, node)
         WHERE r.collection = m.collection AND r.id = m.id COLLATE "C"`,
        [chunk.map((op) => op.collection), chunk.map((op) => op.id), chunk.map((op) => op.node ?? null), updatedAt],
      );
    }
  }
}

/** A LIKE pattern matching the ids that start with `prefix` (its `\`, `%` and `_` taken literally). */
function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, "\\$&")}%`;
}
