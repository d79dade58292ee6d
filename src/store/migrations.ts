/**
 * The SQLite store's schema and its history. Each migration moves a database up one version; `migrate`
 * applies the missing ones in order, in one transaction, when a store opens. A migration, once released, is
 * never edited: a later change is a new migration (test/fixtures/store-v1.db holds a database of version 1).
 */
import type BetterSqlite3 from "better-sqlite3";
import { BridgeError } from "../errors.js";

/** What a migration may use besides the database. */
export interface MigrationContext {
  /** The time of the migration, ms since the epoch. */
  nowMs: number;
}

/** One step of the schema's history: from `version - 1` to `version`. */
export interface Migration {
  version: number;
  description: string;
  up(db: BetterSqlite3.Database, context: MigrationContext): void;
}

/** Every migration, in order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "one table of JSON records keyed by collection and id, and the store's own metadata",
    up(db) {
      db.exec(`
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE records (
          collection TEXT NOT NULL,
          id TEXT NOT NULL,
          value TEXT NOT NULL,
          PRIMARY KEY (collection, id)
        );
      `);
    },
  },
  {
    version: 2,
    description: "encryption at rest (ciphertext, iv, auth_tag beside a nullable value) and each record's updated_at",
    up(db, { nowMs }) {
      // SQLite cannot drop a NOT NULL or add a CHECK in place: the table is rebuilt. Records of version 1 were
      // written before updated_at existed; they get the time of the migration.
      db.exec(`
        CREATE TABLE records_v2 (
          collection TEXT NOT NULL,
          id TEXT NOT NULL,
          value TEXT,
          ciphertext BLOB,
          iv BLOB,
          auth_tag BLOB,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (collection, id),
          CHECK ((value IS NULL) = (ciphertext IS NOT NULL)),
          CHECK ((ciphertext IS NULL) = (iv IS NULL) AND (iv IS NULL) = (auth_tag IS NULL))
        );
      `);
      db.prepare("INSERT INTO records_v2 (collection, id, value, updated_at) SELECT collection, id, value, ? FROM records").run(nowMs);
      db.exec("DROP TABLE records; ALTER TABLE records_v2 RENAME TO records;");
    },
  },
  {
    version: 3,
    description: "each record's node (its value's top-level `node`), indexed, so that a list selects a node's records without reading the others",
    up(db) {
      // Plaintext records get theirs from their value; an encrypted store's records had none to get (only a
      // cluster's nodes name one, and they share PostgreSQL, never SQLite).
      db.exec(`
        ALTER TABLE records ADD COLUMN node TEXT;
        UPDATE records SET node = json_extract(value, '$.node')
          WHERE value IS NOT NULL AND json_valid(value) AND json_type(value) = 'object' AND json_type(value, '$.node') = 'text';
        CREATE INDEX records_by_node ON records (collection, node, id) WHERE node IS NOT NULL;
      `);
    },
  },
  {
    version: 4,
    description: "the node column is the record's node (`Store.move` changes it alone): a troupe before it, reading the value's, would lose moved records",
    up() {
      // Nothing to change: the version alone keeps an older troupe from opening a store whose records may have moved.
    },
  },
];

/** The schema version this version of troupe writes. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The key of `store_meta` that holds the schema version, in every database store. */
export const SCHEMA_VERSION_KEY = "schema_version";

/**
 * The schema version of a database (0 for an empty one), read without changing anything: CONFIG for a
 * database troupe did not make, or one of a newer version than this troupe knows.
 */
export function checkSchemaVersion(db: BetterSqlite3.Database, where: string): number {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
  if (tables.length === 0) return 0;
  if (!tables.includes("store_meta")) throw new BridgeError("CONFIG", `${where} is not a troupe store: it holds other tables (${tables.join(", ")})`);
  return schemaVersionOf(db.prepare("SELECT value FROM store_meta WHERE key = ?").pluck().get(SCHEMA_VERSION_KEY), where, SCHEMA_VERSION);
}

/**
 * The schema version a store's `store_meta` holds (`stored` as read, `undefined` when there is none), in every
 * database store: CONFIG when it is not a version, or one newer than `supported`, the newest this troupe writes.
 */
export function schemaVersionOf(stored: unknown, where: string, supported: number): number {
  const version = Number(stored);
  if (typeof stored !== "string" || !Number.isSafeInteger(version) || version < 1) {
    throw new BridgeError("CONFIG", `${where} is not a troupe store: it has no schema version`);
  }
  if (version > supported) throw newerSchemaError(where, version, supported);
  return version;
}

/** The CONFIG error of every store for a database made by a newer troupe: it names both versions. */
function newerSchemaError(where: string, version: number, supported: number): BridgeError {
  return new BridgeError(
    "CONFIG",
    `${where} has schema version ${version}, newer than this version of troupe supports (${supported}): upgrade troupe, or use another data directory`,
    { schemaVersion: version, supportedSchemaVersion: supported },
  );
}

/**
 * Brings a database to `target` (default: `SCHEMA_VERSION`) in one transaction, and returns the version it
 * had. CONFIG (see `checkSchemaVersion`) leaves the database as it was.
 */
export function migrate(db: BetterSqlite3.Database, { where, nowMs, target = SCHEMA_VERSION }: MigrationContext & { where: string; target?: number }): number {
  return db
    .transaction(() => {
      const from = checkSchemaVersion(db, where);
      for (const migration of MIGRATIONS) {
        if (migration.version <= from || migration.version > target) continue;
        migration.up(db, { nowMs });
        db.prepare("INSERT INTO store_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(
          SCHEMA_VERSION_KEY,
          String(migration.version),
        );
      }
      return from;
    })
    .immediate();
}
