/**
 * The SQLite store keeps the store contract, plain and encrypted, and owns its file: it creates it privately,
 * holds it against a second process, refuses what is not its own, and never reads with the wrong key.
 */
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { BridgeError, openSqliteStore, SQLITE_STORE_FILE, type SqliteStoreOptions, type Store } from "../../src/index.js";
import { describeStoreContract, type StoreHarness } from "./store-contract.js";
import { runModuleScript } from "../support/module-script.js";

const RAW_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff";
const OTHER_RAW_KEY = "f".repeat(64);
const PASSPHRASE = "correct horse battery staple";

async function sqliteHarness(extra: Omit<SqliteStoreOptions, "dir" | "path"> = {}): Promise<StoreHarness> {
  const dir = await mkdtemp(join(tmpdir(), "troupe-store-"));
  const options: SqliteStoreOptions = { dir, ...extra };
  return {
    open: () => openSqliteStore(options),
    crashWriter: { kind: "sqlite", options },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

describeStoreContract("the SQLite store", { durable: true, createHarness: () => sqliteHarness() });
describeStoreContract("the encrypted SQLite store", { durable: true, createHarness: () => sqliteHarness({ encryptionKey: RAW_KEY }) });

const temporaryDirs: string[] = [];
const openStores: Store[] = [];

afterEach(async () => {
  await Promise.allSettled(openStores.splice(0).map((store) => store.close()));
  await Promise.all(temporaryDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function temporaryDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "troupe-store-"));
  temporaryDirs.push(dir);
  return dir;
}

async function open(options: SqliteStoreOptions): Promise<Store> {
  const store = await openSqliteStore(options);
  openStores.push(store);
  return store;
}

async function openError(options: SqliteStoreOptions): Promise<BridgeError> {
  try {
    openStores.push(await openSqliteStore(options));
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return error as BridgeError;
  }
  throw new Error("expected the store not to open");
}

/** Every byte of the store's files (the database and its WAL), as one buffer. */
async function rawBytes(dir: string): Promise<Buffer> {
  const files = [SQLITE_STORE_FILE, `${SQLITE_STORE_FILE}-wal`];
  const contents = await Promise.all(files.map((file) => readFile(join(dir, file)).catch(() => Buffer.alloc(0))));
  return Buffer.concat(contents);
}

describe("the SQLite store's file", () => {
  it("creates its directory (0700) and its database (0600), and opens one it made before", async () => {
    const dir = join(await temporaryDir(), "nested", ".troupe");
    const store = await open({ dir });
    store.put("meta", "hello", "world");
    await store.close();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, SQLITE_STORE_FILE))).mode & 0o777).toBe(0o600);
    expect(await (await open({ path: join(dir, SQLITE_STORE_FILE) })).get("meta", "hello")).toBe("world");
  });

  it("is CONFIG without a location, or with both dir and path", async () => {
    const dir = await temporaryDir();
    expect((await openError({})).type).toBe("CONFIG");
    expect((await openError({ dir, path: join(dir, "x.db") })).message).toMatch(/exactly one/);
    expect((await openError({ dir: "" })).type).toBe("CONFIG");
  });

  it("is CONFIG naming the folder it cannot create: under /proc (where Node's recursive mkdir never returns) or under a file", async () => {
    const underFile = join(await temporaryDir(), "a-file");
    await writeFile(underFile, "");
    const proc = await openError({ dir: "/proc/troupe-no-such-folder/store" });
    expect(proc).toMatchObject({ type: "CONFIG", details: { field: "dir" } });
    expect(proc.message).toMatch(
      /^Cannot create the store at \/proc\/troupe-no-such-folder\/store\/troupe\.db: ENOENT.*mkdir '\/proc\/troupe-no-such-folder'$/,
    );
    expect(await openError({ dir: join(underFile, "store") })).toMatchObject({ type: "CONFIG", message: expect.stringContaining("ENOTDIR") });
  });

  it("is held by one store at a time: a second open is CONFIG until the first closes", async () => {
    const dir = await temporaryDir();
    const first = await open({ dir });
    const error = await openError({ dir });
    expect(error.type).toBe("CONFIG");
    expect(error.message).toMatch(/in use by another process/);
    await first.close();
    await open({ dir });
  });

  it("refuses a file that is not a SQLite database, and a database troupe did not make (left untouched), with CONFIG", async () => {
    const dir = await temporaryDir();
    await writeFile(join(dir, "garbage.db"), "this is not a database, it is text".repeat(100));
    expect((await openError({ path: join(dir, "garbage.db") })).message).toMatch(/not a SQLite database/);
    const foreign = new Database(join(dir, "foreign.db"));
    foreign.exec("CREATE TABLE users (name TEXT)");
    foreign.close();
    const before = await readFile(join(dir, "foreign.db"));
    const error = await openError({ path: join(dir, "foreign.db") });
    expect(error.type).toBe("CONFIG");
    expect(error.message).toMatch(/not a troupe store.*users/);
    expect((await readFile(join(dir, "foreign.db"))).equals(before)).toBe(true);
  });

  it("is loaded only when a store opens: importing troupe does not load better-sqlite3", async () => {
    const script = [
      'import { createRequire } from "node:module";',
      'const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes("better-sqlite3"));',
      'const troupe = await import("./src/index.ts");',
      "const before = loaded();",
      'const dir = (await import("node:fs")).mkdtempSync((await import("node:os")).tmpdir() + "/troupe-cold-");',
      "await (await troupe.openSqliteStore({ dir })).close();",
      '(await import("node:fs")).rmSync(dir, { recursive: true });',
      "console.log(JSON.stringify({ before, after: loaded() }));",
    ].join("\n");
    const output = await runModuleScript(script);
    expect(JSON.parse(output)).toEqual({ before: false, after: true });
  });
});

describe("the SQLite store's encryption at rest", () => {
  const secret = "the launch code is swordfish-4417";

  it("writes no payload plaintext to the file, where a plaintext store does", async () => {
    const encryptedDir = await temporaryDir();
    const plainDir = await temporaryDir();
    for (const [dir, encryptionKey] of [
      [encryptedDir, RAW_KEY],
      [plainDir, undefined],
    ] as const) {
      const store = await open({ dir, encryptionKey });
      store.put("messages", "m1", { payload: { text: secret } });
      store.put("memory", "writer/1", [{ role: "user", content: secret }]);
      await store.flush();
    }
    // While open (the records are in the WAL) and after close (checkpointed into the database).
    expect((await rawBytes(encryptedDir)).includes(secret)).toBe(false);
    expect((await rawBytes(plainDir)).includes(secret)).toBe(true);
    await Promise.all(openStores.splice(0).map((store) => store.close()));
    expect((await rawBytes(encryptedDir)).includes(secret)).toBe(false);
    expect((await rawBytes(plainDir)).includes(secret)).toBe(true);
    expect(await (await open({ dir: encryptedDir, encryptionKey: RAW_KEY })).get("messages", "m1")).toEqual({ payload: { text: secret } });
  });

  it("opens with the passphrase it was created with, and refuses another (CONFIG)", async () => {
    const dir = await temporaryDir();
    const store = await open({ dir, encryptionKey: PASSPHRASE });
    store.put("agents", "a", { token_sha256: "abc" });
    await store.close();
    const wrong = await openError({ dir, encryptionKey: `${PASSPHRASE}!` });
    expect(wrong.type).toBe("CONFIG");
    expect(wrong.message).toMatch(/Wrong encryption key/);
    expect(await (await open({ dir, encryptionKey: PASSPHRASE })).get("agents", "a")).toEqual({ token_sha256: "abc" });
  });

  it("is CONFIG at open for a wrong key, a missing key, or a passphrase where a raw key was used", async () => {
    const dir = await temporaryDir();
    const store = await open({ dir, encryptionKey: RAW_KEY });
    store.put("agents", "a", 1);
    await store.close();
    const wrong = await openError({ dir, encryptionKey: OTHER_RAW_KEY });
    expect([wrong.type, wrong.message]).toEqual(["CONFIG", expect.stringMatching(/Wrong encryption key/)]);
    const missing = await openError({ dir });
    expect([missing.type, missing.message]).toEqual(["CONFIG", expect.stringMatching(/is encrypted: give its encryption key .*TROUPE_ENCRYPTION_KEY/)]);
    const passphrase = await openError({ dir, encryptionKey: PASSPHRASE });
    expect([passphrase.type, passphrase.message]).toEqual(["CONFIG", expect.stringMatching(/raw key/)]);
  });

  it("is CONFIG for a key given to a store that holds plaintext records; an empty plaintext store becomes encrypted", async () => {
    const plainDir = await temporaryDir();
    const plain = await open({ dir: plainDir });
    plain.put("agents", "a", 1);
    await plain.close();
    const error = await openError({ dir: plainDir, encryptionKey: RAW_KEY });
    expect([error.type, error.message]).toEqual(["CONFIG", expect.stringMatching(/holds 1 unencrypted records/)]);
    expect(await (await open({ dir: plainDir })).get("agents", "a")).toBe(1);

    const emptyDir = await temporaryDir();
    await (await open({ dir: emptyDir })).close();
    const encrypted = await open({ dir: emptyDir, encryptionKey: RAW_KEY });
    encrypted.put("agents", "b", 2);
    await encrypted.close();
    expect((await openError({ dir: emptyDir })).type).toBe("CONFIG");
  });

  it("refuses short, empty and space-padded keys with CONFIG", async () => {
    const dir = await temporaryDir();
    for (const encryptionKey of ["", "short", ` ${RAW_KEY}`, `${PASSPHRASE}\n`]) {
      expect((await openError({ dir, encryptionKey })).type).toBe("CONFIG");
    }
  });

  it("fails a read, with INTERNAL, of a value moved onto another record", async () => {
    const dir = await temporaryDir();
    const store = await open({ dir, encryptionKey: RAW_KEY });
    store.put("agents", "alice", { role: "user" });
    store.put("agents", "mallory", { role: "admin" });
    await store.close();
    const db = new Database(join(dir, SQLITE_STORE_FILE));
    db.prepare("UPDATE records SET (ciphertext, iv, auth_tag) = (SELECT ciphertext, iv, auth_tag FROM records WHERE id = 'mallory') WHERE id = 'alice'").run();
    db.close();
    const reopened = await open({ dir, encryptionKey: RAW_KEY });
    expect(await reopened.get("agents", "mallory")).toEqual({ role: "admin" });
    const error = await reopened.get("agents", "alice").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(BridgeError);
    expect([(error as BridgeError).type, (error as BridgeError).message]).toEqual(["INTERNAL", expect.stringMatching(/agents\/alice.*authentication/)]);
  });
});
