/**
 * The SQLite store: one database file (`troupe.db`) in WAL mode, held exclusively by one process, each batch of
 * writes one transaction. better-sqlite3 is loaded when the first store opens, so importing troupe does not
 * load a native module.
 */
import { lazyImport } from "../lazy-modules.js";
import { mkdir, open, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { resolveEncryption, type ValueCipher } from "./encryption.js";
import { LocalFences } from "./fences.js";
import { checkSchemaVersion, migrate } from "./migrations.js";
import { decodeRecord, encodeValue, ENCRYPTION_META_KEY, RECORD_ROW_COLUMNS, type RecordRow } from "./record-codec.js";
import type { ListOptions, Store, StoreCollection, StoreRecord } from "./store.js";
import { BatchedStore, WriteBatcher, type WriteOp } from "./write-batch.js";

/** The name of the database file in a store's directory. */
export const SQLITE_STORE_FILE = "troupe.db";

/** Where and how to open a SQLite store. Give `dir` or `path`, not both. */
export interface SqliteStoreOptions {
  /** The directory of the store, created (mode 0700) when missing; the database is `<dir>/troupe.db`. */
  dir?: string;
  /** The database file itself; its directory is created when missing. */
  path?: string;
  /**
   * Encrypts every record value (AES-256-GCM): 64 hex characters (a raw 32-byte key) or a passphrase of 16+
   * characters. A database created with a key needs the same key at every open (CONFIG otherwise).
   */
  encryptionKey?: string;
  /**
   * `"normal"` (default): a commit survives a crash of the process (`kill -9`), and may be lost, never
   * corrupted, at a power loss or an OS crash. `"full"`: it survives those too, for an fsync per commit.
   */
  synchronous?: "normal" | "full";
  /** The clock of each record's `updated_at`. */
  clock?: Pick<Clock, "now">;
}

/**
 * Opens (creating it when missing) the SQLite store at `dir` or `path`, migrating an older database to the
 * current schema. CONFIG for bad options, a file that is not a troupe store, a database of a newer schema
 * version, one that another process holds, and a missing or wrong encryption key.
 */
export async function openSqliteStore(options: SqliteStoreOptions): Promise<Store> {
  const path = databasePath(options);
  const where = `the store at ${path}`;
  const Database: typeof BetterSqlite3 = (await sqliteModule()).default;
  await createPrivateFile(path, where);
  let db: BetterSqlite3.Database;
  try {
    // No busy timeout: the one other holder there could be is another process that owns the store.
    db = new Database(path, { timeout: 0 });
  } catch (error) {
    throw openError(error, where);
  }
  try {
    // Exclusive locking: the first read takes the lock and no other process can open the store until this
    // one closes it or dies (the OS releases it). It also keeps WAL's index in memory: no -shm file.
    db.pragma("locking_mode = EXCLUSIVE");
    // Before anything is written (WAL mode itself is written in the file): a file that is not ours stays as it was.
    checkSchemaVersion(db, where);
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${options.synchronous === "full" ? "FULL" : "NORMAL"}`);
    const clock = options.clock ?? systemClock;
    migrate(db, { where, nowMs: clock.now() });
    const cipher = await encryptionOf(db, options.encryptionKey, where);
    return new SqliteStore(db, cipher, clock);
  } catch (error) {
    db.close();
    throw openError(error, where);
  }
}

function databasePath({ dir, path }: SqliteStoreOptions): string {
  if ((dir === undefined) === (path === undefined)) throw new BridgeError("CONFIG", "A SQLite store needs either dir or path (exactly one)");
  const given = dir ?? path!;
  if (given.length === 0) throw new BridgeError("CONFIG", `The SQLite store's ${dir === undefined ? "path" : "dir"} is empty`);
  return resolve(dir === undefined ? given : join(given, SQLITE_STORE_FILE));
}

const sqliteModule = lazyImport("better-sqlite3", "The SQLite store", () => import("better-sqlite3"));

/** Creates the store's directory (0700) and file (0600) when missing: they hold tokens' hashes and payloads. */
async function createPrivateFile(path: string, where: string): Promise<void> {
  try {
    await createDirectories(dirname(path), 0o700);
    await (await open(path, "a", 0o600)).close();
  } catch (error) {
    throw new BridgeError("CONFIG", `Cannot create ${where}: ${toBridgeError(error).message}`, { field: "dir" });
  }
}

/**
 * `mkdir -p`, one directory at a time from the nearest one that exists: Node's `mkdir(…, { recursive: true })`
 * never returns under a directory that refuses new entries with ENOENT (`/proc/nope` spins a core for ever);
 * here that is the error of the first `mkdir`.
 */
async function createDirectories(dir: string, mode: number): Promise<void> {
  const missing: string[] = [];
  for (let at = dir; ; at = dirname(at)) {
    if (await exists(at)) break;
    missing.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const each of missing) {
    await mkdir(each, { mode }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== "EEXIST") throw error;
    });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

function openError(error: unknown, where: string): BridgeError {
  if (error instanceof BridgeError) return error;
  const code = error instanceof Error && "code" in error ? error.code : undefined;
  if (code === "SQLITE_BUSY")
    return new BridgeError(
      "CONFIG",
      `${where} is in use by another process: one process at a time owns a store (another troupe serve? give each its own --data DIR, or run with --in-memory)`,
      { code },
    );
  if (code === "SQLITE_NOTADB") return new BridgeError("CONFIG", `${where} is not a SQLite database`, { code });
  return new BridgeError("CONFIG", `Cannot open ${where}: ${toBridgeError(error).message}`, code === undefined ? {} : { code });
}

/** The cipher of the store, or `undefined` for a plaintext one; CONFIG when the key and the database disagree. */
async function encryptionOf(db: BetterSqlite3.Database, key: string | undefined, where: string): Promise<ValueCipher | undefined> {
  const header = db.prepare("SELECT value FROM store_meta WHERE key = ?").pluck().get(ENCRYPTION_META_KEY) as string | undefined;
  const countRecords = (): Promise<number> => Promise.resolve(db.prepare("SELECT count(*) FROM records").pluck().get() as number);
  const { cipher, newHeader } = await resolveEncryption({ key, header, countRecords, where });
  if (newHeader !== undefined) db.prepare("INSERT INTO store_meta (key, value) VALUES (?, ?)").run(ENCRYPTION_META_KEY, JSON.stringify(newHeader));
  return cipher;
}

class SqliteStore extends BatchedStore {
  readonly #db: BetterSqlite3.Database;
  readonly #cipher: ValueCipher | undefined;
  protected readonly batcher: WriteBatcher;
  readonly #selectOne: BetterSqlite3.Statement<[string, string], RecordRow>;
  /** The statements of `list`, one per combination of its options (at most 16). */
  readonly #selects = new Map<string, BetterSqlite3.Statement<unknown[], RecordRow>>();

  constructor(db: BetterSqlite3.Database, cipher: ValueCipher | undefined, clock: Pick<Clock, "now">) {
    super();
    this.#db = db;
    this.#cipher = cipher;
    this.#selectOne = db.prepare(`SELECT ${RECORD_ROW_COLUMNS} FROM records WHERE collection = ? AND id = ?`);
    const upsert = db.prepare<[string, string, string | null, Buffer | null, Buffer | null, Buffer | null, number, string | null]>(
      `INSERT INTO records (collection, id, value, ciphertext, iv, auth_tag, updated_at, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (collection, id) DO UPDATE SET value = excluded.value, ciphertext = excluded.ciphertext, iv = excluded.iv,
         auth_tag = excluded.auth_tag, updated_at = excluded.updated_at, node = excluded.node`,
    );
    const remove = db.prepare<[string, string]>("DELETE FROM records WHERE collection = ? AND id = ?");
    const move = db.prepare<[string | null, number, string, string]>("UPDATE records SET node = ?, updated_at = ? WHERE collection = ? AND id = ?");
    const fences = new LocalFences();
    const commit = db.transaction((ops: readonly WriteOp[]) => {
      const updatedAt = clock.now();
      for (const { collection, id, json, node, moved } of ops) {
        if (moved === true) move.run(node ?? null, updatedAt, collection, id);
        else if (json === undefined) remove.run(collection, id);
        else {
          const { value, ciphertext, iv, auth_tag } = encodeValue(cipher, collection, id, json);
          upsert.run(collection, id, value, ciphertext, iv, auth_tag, updatedAt, node ?? null);
        }
      }
    });
    this.batcher = new WriteBatcher((ops) => Promise.resolve(fences.commit(ops, (admitted) => commit.immediate(admitted))));
  }

  protected read(collection: StoreCollection, id: string): unknown {
    const row = this.#selectOne.get(collection, id);
    return row === undefined ? undefined : decodeRecord(this.#cipher, collection, row);
  }

  protected readAll(collection: StoreCollection, { prefix, node, after, limit, maxBytes }: ListOptions): StoreRecord[] {
    const conditions = ["collection = ?"];
    const values: unknown[] = [collection];
    // Ids order by their UTF-8 bytes, so the ids that start with a prefix follow it in one run.
    if (prefix !== undefined && prefix !== "") {
      conditions.push("id >= ?");
      values.push(prefix);
    }
    if (after !== undefined) {
      conditions.push("id > ?");
      values.push(after);
    }
    if (node !== undefined) {
      conditions.push("node = ?");
      values.push(node);
    }
    const sql = `SELECT ${RECORD_ROW_COLUMNS} FROM records WHERE ${conditions.join(" AND ")} ORDER BY id${limit === undefined ? "" : " LIMIT ?"}`;
    if (limit !== undefined) values.push(limit);
    let select = this.#selects.get(sql);
    if (select === undefined) {
      select = this.#db.prepare<unknown[], RecordRow>(sql);
      this.#selects.set(sql, select);
    }
    const records: StoreRecord[] = [];
    let bytes = 0;
    for (const row of select.iterate(...values)) {
      if (prefix !== undefined && !row.id.startsWith(prefix)) break;
      bytes += row.value === null ? (row.ciphertext?.length ?? 0) : Buffer.byteLength(row.value);
      if (maxBytes !== undefined && records.length > 0 && bytes > maxBytes) break;
      records.push({ id: row.id, value: decodeRecord(this.#cipher, collection, row) });
    }
    return records;
  }

  override async close(): Promise<void> {
    try {
      await super.close();
    } finally {
      if (this.#db.open) this.#db.close();
    }
  }
}
