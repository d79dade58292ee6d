/**
 * Schema versions: a database made by the first schema migrates when a store opens it; one from a newer
 * version of troupe is refused and left as it was.
 */
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { BridgeError, openSqliteStore, SQLITE_STORE_FILE, type Store } from "../../src/index.js";
import { migrate, SCHEMA_VERSION } from "../../src/store/migrations.js";
import { STORE_V1_FIXTURE, V1_RECORDS } from "../fixtures/make-store-v1.js";

const temporaryDirs: string[] = [];
const openStores: Store[] = [];

afterEach(async () => {
  await Promise.allSettled(openStores.splice(0).map((store) => store.close()));
  await Promise.all(temporaryDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** A directory holding a copy of the version-1 fixture as its store. */
async function dirWithV1Store(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "troupe-migrate-"));
  temporaryDirs.push(dir);
  await copyFile(STORE_V1_FIXTURE, join(dir, SQLITE_STORE_FILE));
  return dir;
}

function readMeta(path: string): { version: string; columns: string[] } {
  const db = new Database(path, { readonly: true });
  try {
    const version = db.prepare("SELECT value FROM store_meta WHERE key = 'schema_version'").pluck().get() as string;
    const columns = (db.prepare("PRAGMA table_info(records)").all() as Array<{ name: string }>).map((column) => column.name);
    return { version, columns };
  } finally {
    db.close();
  }
}

describe("schema migrations", () => {
  it("migrates the version-1 fixture to the current version and reads every record it held", async () => {
    const dir = await dirWithV1Store();
    const path = join(dir, SQLITE_STORE_FILE);
    expect(readMeta(path)).toEqual({ version: "1", columns: ["collection", "id", "value"] });

    const store = await openSqliteStore({ dir, clock: { now: () => 1_800_000_000_000 } });
    openStores.push(store);
    for (const { collection, id, value } of V1_RECORDS) expect(await store.get(collection, id)).toEqual(value);
    expect((await store.list("memory", { prefix: "writer/" })).map((record) => record.id)).toEqual(["writer/conversation-1", "writer/conversation-2"]);
    store.put("messages", "after-migration", { ok: true });
    await store.close();

    expect(readMeta(path)).toEqual({
      version: String(SCHEMA_VERSION),
      columns: ["collection", "id", "value", "ciphertext", "iv", "auth_tag", "updated_at", "node"],
    });
    const reopened = await openSqliteStore({ dir });
    openStores.push(reopened);
    expect(await reopened.list("messages")).toEqual([
      { id: "after-migration", value: { ok: true } },
      { id: "msg-1", value: V1_RECORDS.find((record) => record.id === "msg-1")!.value },
    ]);
  });

  it("gives each plaintext record of a version-2 store its value's node, so that lists by node find them", async () => {
    const dir = await mkdtemp(join(tmpdir(), "troupe-migrate-"));
    temporaryDirs.push(dir);
    const path = join(dir, SQLITE_STORE_FILE);
    const db = new Database(path);
    migrate(db, { where: path, nowMs: 1_800_000_000_000, target: 2 });
    const insert = db.prepare("INSERT INTO records (collection, id, value, updated_at) VALUES (?, ?, ?, 0)");
    insert.run("workflows", "w1", JSON.stringify({ node: "node-a", n: 1 }));
    insert.run("workflows", "w2", JSON.stringify({ node: "node-b" }));
    insert.run("workflows", "w3", JSON.stringify({ node: 3 }));
    insert.run("workflows", "w4", JSON.stringify(["node-a"]));
    insert.run("workflows", "w5", "not json");
    db.close();

    const store = await openSqliteStore({ dir });
    openStores.push(store);
    expect(await store.list("workflows", { node: "node-a" })).toEqual([{ id: "w1", value: { node: "node-a", n: 1 } }]);
    expect((await store.list("workflows", { node: "node-b" })).map((record) => record.id)).toEqual(["w2"]);
    await store.close();
    expect(readMeta(path).version).toBe(String(SCHEMA_VERSION));
  });

  it("refuses a database of a newer schema version with CONFIG naming both versions, and leaves it untouched", async () => {
    const dir = await dirWithV1Store();
    const path = join(dir, SQLITE_STORE_FILE);
    const db = new Database(path);
    db.prepare("UPDATE store_meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION + 1));
    db.close();
    const before = await readFile(path);

    const error = await openSqliteStore({ dir }).then(
      (store) => {
        openStores.push(store);
        throw new Error("expected the newer database to be refused");
      },
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(BridgeError);
    expect((error as BridgeError).type).toBe("CONFIG");
    expect((error as BridgeError).message).toContain(`schema version ${SCHEMA_VERSION + 1}, newer than this version of troupe supports (${SCHEMA_VERSION})`);
    expect((await readFile(path)).equals(before)).toBe(true);
  });
});
