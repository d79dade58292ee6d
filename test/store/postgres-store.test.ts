/**
 * The PostgreSQL store keeps the store contract, plain and encrypted, on a real PostgreSQL server started for
 * this file; and what is its own: its schema, its lock, its encoding and its errors.
 */
import { setImmediate as setImmediatePromise } from "node:timers/promises";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BridgeError, openPostgresStore, type PostgresStoreOptions, type Store } from "../../src/index.js";
import { POSTGRES_SCHEMA_VERSION } from "../../src/store/postgres-migrations.js";
import { freePort } from "../support/engine-process.js";
import { startPostgres, type PostgresServer } from "../support/postgres-server.js";
import { describeStoreContract, type StoreHarness } from "./store-contract.js";
import { runModuleScript } from "../support/module-script.js";

const RAW_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff";

let server: PostgresServer;
let schemas = 0;

beforeAll(async () => {
  server = await startPostgres();
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

/** A store in a schema of its own, so that every test starts on fresh state in the file's one server. */
function postgresHarness(extra: Omit<PostgresStoreOptions, "url" | "schema"> = {}): StoreHarness {
  const options: PostgresStoreOptions = { url: server.url(), schema: `contract_${++schemas}`, ...extra };
  return {
    open: () => openPostgresStore(options),
    crashWriter: { kind: "postgres", options },
    cleanup: async () => {
      await server.query(`DROP SCHEMA IF EXISTS ${options.schema} CASCADE`);
    },
  };
}

describeStoreContract("the PostgreSQL store", { durable: true, createHarness: () => Promise.resolve(postgresHarness()) });
describeStoreContract("the encrypted PostgreSQL store", { durable: true, createHarness: () => Promise.resolve(postgresHarness({ encryptionKey: RAW_KEY })) });

const OTHER_RAW_KEY = "f".repeat(64);
const openStores: Store[] = [];

afterEach(async () => {
  await Promise.allSettled(openStores.splice(0).map((store) => store.close()));
});

/** A schema name no other test uses. */
function freshSchema(): string {
  return `own_${++schemas}`;
}

/** Stores that find another holder give up quickly here: every test that meets one expects it. */
const SHORT_LOCK_WAIT_MS = 200;

async function open(options: Omit<PostgresStoreOptions, "url"> & { url?: string }): Promise<Store> {
  const store = await openPostgresStore({ url: server.url(), lockWaitMs: SHORT_LOCK_WAIT_MS, ...options });
  openStores.push(store);
  return store;
}

async function openError(options: Omit<PostgresStoreOptions, "url"> & { url?: string }): Promise<BridgeError> {
  try {
    openStores.push(await openPostgresStore({ url: server.url(), lockWaitMs: SHORT_LOCK_WAIT_MS, ...options }));
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return error as BridgeError;
  }
  throw new Error("expected the store not to open");
}

async function rejection(promise: Promise<unknown>): Promise<BridgeError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BridgeError);
  return error as BridgeError;
}

/** Every row of a schema's tables, as text: what "left untouched" compares. */
async function schemaDump(schema: string): Promise<string> {
  const tables = await server.query<{ name: string }>("SELECT tablename AS name FROM pg_tables WHERE schemaname = $1 ORDER BY tablename", [schema]);
  const dumps = await Promise.all(
    tables.map(async ({ name }) => `${name}: ${JSON.stringify(await server.query(`SELECT * FROM "${schema}"."${name}" ORDER BY 1, 2`))}`),
  );
  return dumps.join("\n");
}

describe("the PostgreSQL store's schema", () => {
  it("creates its schema and tables at the first open, at the current schema version", async () => {
    const schema = freshSchema();
    const store = await open({ schema });
    store.put("agents", "a", { n: 1 });
    await store.flush();
    expect(await server.query("SELECT key, value FROM " + `"${schema}"` + ".store_meta ORDER BY key")).toEqual([
      { key: "schema_version", value: String(POSTGRES_SCHEMA_VERSION) },
    ]);
    const [row] = await server.query(`SELECT collection, id, value, ciphertext, updated_at FROM "${schema}".records`);
    expect(row).toEqual({ collection: "agents", id: "a", value: '{"n":1}', ciphertext: null, updated_at: expect.stringMatching(/^\d+$/) });
  });

  it("migrates a store of version 1, plaintext or encrypted: each record gets its value's node, and lists by node find them", async () => {
    for (const encryptionKey of [undefined, RAW_KEY]) {
      const schema = freshSchema();
      const store = await open({ schema, encryptionKey });
      // More than one page of the encrypted store's fill (500 rows), across two collections.
      for (let index = 0; index < 700; index++) store.put("workflows", `w-${String(index).padStart(3, "0")}`, { node: index % 2 === 0 ? "node-a" : "node-b" });
      store.put("bridge_sessions", "s1", { node: "node-a" });
      store.put("bridge_sessions", "s2", { history: [] });
      store.put("agents", "quoted", { node: "x\"y\\z'" });
      // A node no index can hold (a NUL) is no node.
      store.put("agents", "nul", { node: "x\u0000" });
      await store.close();
      // What version 1 was: no node column, no index.
      await server.query(`ALTER TABLE "${schema}".records DROP COLUMN node`);
      await server.query(`UPDATE "${schema}".store_meta SET value = '1' WHERE key = 'schema_version'`);

      const migrated = await open({ schema, encryptionKey });
      expect(await server.query(`SELECT value FROM "${schema}".store_meta WHERE key = 'schema_version'`)).toEqual([{ value: String(POSTGRES_SCHEMA_VERSION) }]);
      const ofNode = async (collection: "workflows" | "bridge_sessions" | "agents", node: string): Promise<number> =>
        (await migrated.list(collection, { node })).length;
      expect([await ofNode("workflows", "node-a"), await ofNode("workflows", "node-b")]).toEqual([350, 350]);
      expect(await ofNode("bridge_sessions", "node-a")).toBe(1);
      expect(await ofNode("agents", "x\"y\\z'")).toBe(1);
      expect(await server.query(`SELECT count(*)::int AS n FROM "${schema}".records WHERE node IS NULL`)).toEqual([{ n: 2 }]);
    }
  });

  it("keeps two stores in two schemas of one database apart", async () => {
    const first = await open({ schema: freshSchema() });
    const second = await open({ schema: freshSchema() });
    first.put("meta", "who", "first");
    second.put("meta", "who", "second");
    expect([await first.get("meta", "who"), await second.get("meta", "who")]).toEqual(["first", "second"]);
  });

  it("refuses a schema holding tables troupe did not make with CONFIG, and leaves it untouched", async () => {
    const schema = freshSchema();
    await server.query(`CREATE SCHEMA "${schema}"; CREATE TABLE "${schema}".users (name text, id int); INSERT INTO "${schema}".users VALUES ('ada', 1)`);
    const before = await schemaDump(schema);
    const error = await openError({ schema });
    expect([error.type, error.message]).toEqual(["CONFIG", expect.stringMatching(/not a troupe store.*users/)]);
    expect(await schemaDump(schema)).toBe(before);
  });

  it("refuses a store of a newer schema version with CONFIG naming both versions, and leaves it untouched", async () => {
    const schema = freshSchema();
    const store = await open({ schema });
    store.put("agents", "a", 1);
    await store.close();
    await server.query(`UPDATE "${schema}".store_meta SET value = $1 WHERE key = 'schema_version'`, [String(POSTGRES_SCHEMA_VERSION + 1)]);
    const before = await schemaDump(schema);
    const error = await openError({ schema });
    expect(error.type).toBe("CONFIG");
    expect(error.message).toContain(`schema version ${POSTGRES_SCHEMA_VERSION + 1}, newer than this version of troupe supports (${POSTGRES_SCHEMA_VERSION})`);
    expect(await schemaDump(schema)).toBe(before);
  });

  it("lets only one of many stores opening a new schema at once create it", async () => {
    const schema = freshSchema();
    const stores = await Promise.all(Array.from({ length: 4 }, () => open({ schema, exclusive: false })));
    stores.forEach((store, index) => store.put("meta", `from-${index}`, index));
    await Promise.all(stores.map((store) => store.flush()));
    expect((await stores[0]!.list("meta")).map((record) => record.value)).toEqual([0, 1, 2, 3]);
  });

  it("uses a schema made beforehand for a role that may not create schemas, and is CONFIG naming the permission otherwise", async () => {
    await server.createDatabase("restricted_db");
    await server.query("CREATE ROLE restricted_app LOGIN");
    await server.query("REVOKE CREATE ON DATABASE restricted_db FROM PUBLIC", [], "restricted_db");
    await server.query("CREATE SCHEMA granted AUTHORIZATION restricted_app", [], "restricted_db");
    const url = `postgres://restricted_app@127.0.0.1:${server.port}/restricted_db`;
    const store = await open({ url, schema: "granted" });
    store.put("meta", "written", true);
    expect(await store.get("meta", "written")).toBe(true);
    const error = await openError({ url, schema: "not_granted" });
    expect([error.type, error.message]).toEqual(["CONFIG", expect.stringMatching(/permission denied for database restricted_db/)]);
  });

  it("is CONFIG in a database that is not UTF-8", async () => {
    const url = await server.createDatabase("latin1_db", { encoding: "LATIN1" });
    const error = await openError({ url });
    expect([error.type, error.message]).toEqual(["CONFIG", expect.stringMatching(/encoding LATIN1: troupe needs UTF8/)]);
  });
});

describe("the PostgreSQL store's options and connections", () => {
  it("is CONFIG for a missing url, another scheme, a bad schema name or a non-positive bound", async () => {
    expect((await openError({ url: "" })).type).toBe("CONFIG");
    expect((await openError({ url: "not a url" })).message).toMatch(/not a URL/);
    expect((await openError({ url: "mysql://localhost/db" })).message).toMatch(/postgres:\/\/ or postgresql:\/\//);
    expect((await openError({ schema: "drop table; --" })).message).toMatch(/schema/);
    expect((await openError({ schema: "1st" })).type).toBe("CONFIG");
    expect((await openError({ maxReadConnections: 0 })).message).toMatch(/maxReadConnections/);
  });

  it("is TRANSPORT when nothing listens at the url, and never says the password", async () => {
    const port = await freePort();
    const error = await openError({ url: `postgres://troupe:s3cret-pw@127.0.0.1:${port}/postgres`, connectTimeoutMs: 2_000 });
    expect([error.type, error.details.retryable]).toEqual(["TRANSPORT", true]);
    expect(error.message).toContain(`127.0.0.1:${port}`);
    expect(error.message).not.toContain("s3cret-pw");
  });

  it("is CONFIG for a database or a user the server does not have", async () => {
    const database = await openError({ url: server.url("no_such_database") });
    expect([database.type, database.message]).toEqual(["CONFIG", expect.stringMatching(/no_such_database/)]);
    const user = await openError({ url: `postgres://nobody@127.0.0.1:${server.port}/postgres` });
    expect([user.type, user.message]).toEqual(["CONFIG", expect.stringMatching(/nobody/)]);
  });

  it("is held by one exclusive store at a time: a second open is CONFIG until the first closes; exclusive: false shares it", async () => {
    const schema = freshSchema();
    const first = await open({ schema });
    const error = await openError({ schema });
    expect([error.type, error.message]).toEqual(["CONFIG", expect.stringMatching(/in use by another process/)]);
    await first.close();
    await (await open({ schema })).close();
    const shared = await Promise.all([open({ schema, exclusive: false }), open({ schema, exclusive: false })]);
    shared[0].put("meta", "seen", true);
    await shared[0].flush();
    expect(await shared[1].get("meta", "seen")).toBe(true);
    // A troupe that would own it alone cannot open what a cluster's nodes share (it would rewrite their records) ...
    const alone = await openError({ schema });
    expect([alone.type, alone.message]).toEqual(["CONFIG", expect.stringMatching(/in use by another process/)]);
    await Promise.all(shared.map((store) => store.close()));
    // ... nor a cluster's node one that an exclusive store holds.
    const owner = await open({ schema });
    const node = await openError({ schema, exclusive: false });
    expect([node.type, node.message]).toEqual(["CONFIG", expect.stringMatching(/owns it alone \(a troupe serve without --cluster\?\)/)]);
    await owner.close();
  });

  it("waits at open for the lock of a previous owner that is going away", async () => {
    const schema = freshSchema();
    const first = await open({ schema });
    first.put("meta", "owner", "first");
    const second = openPostgresStore({ url: server.url(), schema, lockWaitMs: 10_000 });
    await first.close();
    const store = await second;
    openStores.push(store);
    expect(await store.get("meta", "owner")).toBe("first");
  });

  it("is loaded only when a store opens: importing troupe does not load pg", async () => {
    const script = [
      'import { createRequire } from "node:module";',
      "const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((file) => /node_modules[\\\\/]pg[\\\\/]/.test(file));",
      'const troupe = await import("./src/index.ts");',
      "const before = loaded();",
      `await (await troupe.openPostgresStore({ url: ${JSON.stringify(server.url())}, schema: ${JSON.stringify(freshSchema())} })).close();`,
      "console.log(JSON.stringify({ before, after: loaded() }));",
    ].join("\n");
    const output = await runModuleScript(script);
    expect(JSON.parse(output)).toEqual({ before: false, after: true });
  });
});

/** Terminates the connections holding advisory locks (the stores' writing connections), and waits until they are gone. */
async function cutLockHolders(): Promise<void> {
  const holders = await server.query<{ pid: number }>("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()");
  const pids = holders.map((holder) => holder.pid);
  expect(pids.length).toBeGreaterThan(0);
  await server.query("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", [pids]);
  // Termination is a signal: the backends leave (and release their locks) a moment later.
  while ((await server.query("SELECT 1 FROM pg_stat_activity WHERE pid = ANY($1::int[])", [pids])).length > 0) await setImmediatePromise();
}

describe("the PostgreSQL store when the server fails", () => {
  it("rejects flushes and reads with TRANSPORT while the server is down, keeps the writes, and commits them once it is back", async () => {
    const own = await startPostgres();
    try {
      const store = await openPostgresStore({ url: own.url(), connectTimeoutMs: 1_000 });
      try {
        store.put("messages", "before", { n: 1 });
        await store.flush();
        await own.halt("immediate");
        store.put("messages", "while-down", { n: 2 });
        store.delete("messages", "before");
        const flushError = await rejection(store.flush());
        // Unavailable for now: a 503 to a client, to be asked again.
        expect([flushError.type, flushError.details.retryable, flushError.details.unavailable]).toEqual(["TRANSPORT", true, true]);
        expect(flushError.message).toMatch(/kept for the next commit/);
        expect((await rejection(store.get("messages", "while-down"))).details).toMatchObject({ unavailable: true, retryable: true });
        await own.start();
        await store.flush();
        expect(await store.list("messages")).toEqual([{ id: "while-down", value: { n: 2 } }]);
      } finally {
        await store.close();
      }
    } finally {
      await own.stop();
    }
  }, 30_000);

  it("reconnects, without a failed flush, after its writing connection is cut, and takes its lock again", async () => {
    const schema = freshSchema();
    const store = await open({ schema });
    store.put("meta", "first", 1);
    await store.flush();
    await cutLockHolders();
    store.put("meta", "after-cut", 2);
    await store.flush();
    expect((await store.list("meta")).map((record) => record.id)).toEqual(["after-cut", "first"]);
    expect((await openError({ schema })).message).toMatch(/in use by another process/);
  });

  it("writes nothing once another process took the store while its connection was cut", async () => {
    const schema = freshSchema();
    const first = await open({ schema });
    first.put("meta", "first-before", 1);
    await first.flush();
    await cutLockHolders();
    const second = await open({ schema });
    first.put("meta", "first-after", 2);
    const flushError = await rejection(first.flush());
    expect([flushError.type, flushError.message]).toEqual(["TRANSPORT", expect.stringMatching(/in use by another process/)]);
    expect((await second.list("meta")).map((record) => record.id)).toEqual(["first-before"]);
    await second.close();
    await first.flush();
    expect((await first.list("meta")).map((record) => record.id)).toEqual(["first-after", "first-before"]);
  });

  it("fails a commit that outlasts queryTimeoutMs with TRANSPORT, and commits it once the database lets it", async () => {
    const schema = freshSchema();
    const store = await open({ schema, queryTimeoutMs: 300 });
    store.put("meta", "ready", true);
    await store.flush();
    const blocker = new pg.Client({ connectionString: server.url() });
    await blocker.connect();
    try {
      await blocker.query(`BEGIN; LOCK TABLE "${schema}".records IN ACCESS EXCLUSIVE MODE`);
      store.put("meta", "blocked", true);
      const error = await rejection(store.flush());
      expect([error.type, error.message]).toEqual(["TRANSPORT", expect.stringMatching(/timeout/i)]);
      await blocker.query("COMMIT");
    } finally {
      await blocker.end();
    }
    await store.flush();
    expect(await store.get("meta", "blocked")).toBe(true);
  });
});

describe("the PostgreSQL store's fences", () => {
  it("refuses, across processes sharing the store and across reopens, the writes of a tenure older than one already written", async () => {
    const schema = freshSchema();
    const [nodeA, nodeB] = await Promise.all([open({ schema, exclusive: false }), open({ schema, exclusive: false })]);
    const refused: string[] = [];
    nodeA.put("workflows", "sess_1", { by: "A" }, { fence: { resource: "workflow:sess_1", token: 5 } });
    await nodeA.flush();
    nodeB.put("workflows", "sess_1", { by: "B" }, { fence: { resource: "workflow:sess_1", token: 9 } });
    await nodeB.flush();
    nodeA.put("workflows", "sess_1", { by: "A, after losing it" }, { fence: { resource: "workflow:sess_1", token: 5, onRefused: () => refused.push("A") } });
    await nodeA.flush();
    expect(refused).toEqual(["A"]);
    expect(await nodeA.get("workflows", "sess_1")).toEqual({ by: "B" });
    await nodeB.close();
    const reopened = await open({ schema, exclusive: false });
    reopened.put("workflows", "sess_1", { by: "stale" }, { fence: { resource: "workflow:sess_1", token: 8, onRefused: () => refused.push("reopened") } });
    await reopened.flush();
    expect(refused).toEqual(["A", "reopened"]);
    expect(await server.query(`SELECT resource, token FROM "${schema}".fences`)).toEqual([{ resource: "workflow:sess_1", token: "9" }]);
  });

  it("admits two processes' racing writes for one resource one after the other, the newer tenure last", async () => {
    const schema = freshSchema();
    const nodes = await Promise.all(Array.from({ length: 4 }, () => open({ schema, exclusive: false })));
    const stored: unknown[] = [];
    for (let round = 0; round < 20; round++) {
      // The four commits race; whichever order they take, the newest tenure's write is the one that stays.
      nodes.forEach((node, index) => {
        const token = round * nodes.length + index;
        node.put("workflows", "contested", { token }, { fence: { resource: "contested", token } });
      });
      await Promise.all(nodes.map((node) => node.flush()));
      stored.push(await nodes[0]!.get("workflows", "contested"));
    }
    expect(stored).toEqual(Array.from({ length: 20 }, (_, round) => ({ token: round * nodes.length + nodes.length - 1 })));
  });
});

describe("the PostgreSQL store's encryption at rest", () => {
  const secret = "the launch code is swordfish-4417";

  it("writes no payload plaintext to the database, where a plaintext store does", async () => {
    const encrypted = freshSchema();
    const plain = freshSchema();
    for (const [schema, encryptionKey] of [
      [encrypted, RAW_KEY],
      [plain, undefined],
    ] as const) {
      const store = await open({ schema, encryptionKey });
      store.put("messages", "m1", { payload: { text: secret } });
      await store.flush();
    }
    expect(await schemaDump(encrypted)).not.toContain(secret);
    expect(await schemaDump(plain)).toContain(secret);
    expect(await openStores[0]!.get("messages", "m1")).toEqual({ payload: { text: secret } });
  });

  it("is CONFIG at open for a wrong key, a missing key, or a key for a store holding plaintext records", async () => {
    const encrypted = freshSchema();
    const store = await open({ schema: encrypted, encryptionKey: RAW_KEY });
    store.put("agents", "a", 1);
    await store.close();
    expect((await openError({ schema: encrypted, encryptionKey: OTHER_RAW_KEY })).message).toMatch(/Wrong encryption key/);
    expect((await openError({ schema: encrypted })).message).toMatch(/is encrypted: give its encryption key/);
    const plain = freshSchema();
    const plainStore = await open({ schema: plain });
    plainStore.put("agents", "a", 1);
    await plainStore.close();
    expect((await openError({ schema: plain, encryptionKey: RAW_KEY })).message).toMatch(/holds 1 unencrypted records/);
  });

  it("fails a read, with INTERNAL, of a value moved onto another record", async () => {
    const schema = freshSchema();
    const store = await open({ schema, encryptionKey: RAW_KEY });
    store.put("agents", "alice", { role: "user" });
    store.put("agents", "mallory", { role: "admin" });
    await store.flush();
    await server.query(
      `UPDATE "${schema}".records SET (ciphertext, iv, auth_tag) = (SELECT ciphertext, iv, auth_tag FROM "${schema}".records WHERE id = 'mallory') WHERE id = 'alice'`,
    );
    expect(await store.get("agents", "mallory")).toEqual({ role: "admin" });
    const error = await rejection(store.get("agents", "alice"));
    expect([error.type, error.message]).toEqual(["INTERNAL", expect.stringMatching(/agents\/alice.*authentication/)]);
  });
});
