/**
 * The PostgreSQL store's schema and its history, apart from SQLite's (the two engines speak different DDL):
 * each migration moves a store's schema up one version, and `migratePostgres` applies the missing ones, inside
 * the transaction in which the store opens. A migration, once released, is never edited: a change is a new one.
 */
import type pg from "pg";
import { BridgeError } from "../errors.js";
import { SCHEMA_VERSION_KEY, schemaVersionOf } from "./migrations.js";

/** What a migration may use besides the connection. */
interface PostgresMigrationContext {
  /** The store's schema, quoted, ready to prefix a table name. */
  schema: string;
}

/** One step of the schema's history: from `version - 1` to `version`. */
interface PostgresMigration {
  version: number;
  description: string;
  up(client: pg.ClientBase, context: PostgresMigrationContext): Promise<void>;
}

/** Every migration, in order. */
const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    description:
      "the store's metadata; one table of records keyed by collection and id, plaintext JSON or sealed, with each record's updated_at; the newest fencing token of each resource",
    async up(client, { schema }) {
      // `id` collates as "C": UTF-8 bytes, which is code-point order (the order every store lists in), and
      // the primary key's index then serves `LIKE 'prefix%'`.
      await client.query(`
        CREATE TABLE ${schema}.store_meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE ${schema}.records (
          collection text NOT NULL,
          id text COLLATE "C" NOT NULL,
          value text,
          ciphertext bytea,
          iv bytea,
          auth_tag bytea,
          updated_at bigint NOT NULL,
          PRIMARY KEY (collection, id),
          CHECK ((value IS NULL) = (ciphertext IS NOT NULL)),
          CHECK ((ciphertext IS NULL) = (iv IS NULL) AND (iv IS NULL) = (auth_tag IS NULL))
        );
        CREATE TABLE ${schema}.fences (resource text PRIMARY KEY, token bigint NOT NULL);
      `);
    },
  },
  {
    version: 2,
    description: "each record's node (its value's top-level `node`), indexed, so that a node lists its own records without reading the others",
    async up(client, { schema }) {
      // The records get theirs from their values once the store's key is known (`fillNodes`, in the same
      // transaction): an encrypted store's values cannot be read here.
      await client.query(`
        ALTER TABLE ${schema}.records ADD COLUMN node text;
        CREATE INDEX records_by_node ON ${schema}.records (collection, node, id) WHERE node IS NOT NULL;
      `);
    },
  },
  {
    version: 3,
    description: "the node column is the record's node (`Store.move` changes it alone): a troupe before it, reading the value's, would lose moved records",
    up() {
      // Nothing to change: the version alone keeps an older troupe from opening a store whose records may have moved.
      return Promise.resolve();
    },
  },
];

/** The version whose migration added `node`: a store migrated from before it fills its records' nodes. */
export const NODE_COLUMN_VERSION = 2;

/** The schema version this version of troupe writes in PostgreSQL. */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]!.version;

/**
 * The schema version of the store in `schemaName` (0 when the schema is missing or empty), read without
 * changing anything: CONFIG for a schema holding tables troupe did not make, or one of a newer version.
 */
async function readPostgresSchemaVersion(client: pg.ClientBase, schemaName: string, where: string): Promise<number> {
  const { rows: tables } = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname`,
    [schemaName],
  );
  if (tables.length === 0) return 0;
  const names = tables.map((table) => table.name);
  if (!names.includes("store_meta")) throw new BridgeError("CONFIG", `${where} is not a troupe store: its schema holds other tables (${names.join(", ")})`);
  const { rows } = await client.query<{ value: string }>(`SELECT value FROM ${quoteIdentifier(schemaName)}.store_meta WHERE key = $1`, [SCHEMA_VERSION_KEY]);
  return schemaVersionOf(rows[0]?.value, where, POSTGRES_SCHEMA_VERSION);
}

/**
 * Brings the store in `schemaName` to `target` (default: `POSTGRES_SCHEMA_VERSION`), creating the schema when
 * missing, and returns the version it had. Runs inside the caller's transaction, so that a failure leaves the
 * store as it was; CONFIG (see `readPostgresSchemaVersion`) is raised before anything is written.
 */
export async function migratePostgres(
  client: pg.ClientBase,
  { schemaName, where, target = POSTGRES_SCHEMA_VERSION }: { schemaName: string; where: string; target?: number },
): Promise<number> {
  const from = await readPostgresSchemaVersion(client, schemaName, where);
  const schema = quoteIdentifier(schemaName);
  // A schema made beforehand for a role without CREATE on the database is used as it is (even IF NOT EXISTS needs that privilege).
  if (from < target && (await client.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [schemaName])).rowCount === 0) {
    await client.query(`CREATE SCHEMA ${schema}`);
  }
  for (const migration of POSTGRES_MIGRATIONS) {
    if (migration.version <= from || migration.version > target) continue;
    await migration.up(client, { schema });
    await client.query(`INSERT INTO ${schema}.store_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, [
      SCHEMA_VERSION_KEY,
      String(migration.version),
    ]);
  }
  return from;
}

/** A schema name as SQL: the names `checkSchemaName` accepts need no escaping, and are quoted to keep their case. */
export function quoteIdentifier(name: string): string {
  return `"${name}"`;
}
