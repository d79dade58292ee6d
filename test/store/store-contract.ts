/**
 * The behaviour every store keeps, as one suite that each store's test file runs with its own harness: the
 * memory store, the SQLite store and the PostgreSQL store (both plain and encrypted).
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BridgeError, type ListOptions, type Store } from "../../src/index.js";
import { listPages } from "../../src/store/pages.js";
import type { CrashWriterSpec } from "./crash-writer.js";

/** What the suite needs of a store under test. */
export interface StoreHarness {
  /** Opens the test's store: on fresh state at the first call; on the same state at later calls when durable. */
  open(): Promise<Store>;
  /** Durable stores: how test/store/crash-writer.ts opens the same state in another process. */
  crashWriter?: CrashWriterSpec;
  /** Removes what the harness made (temporary directories); the suite closes the stores it opened. */
  cleanup(): Promise<void>;
}

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));

/** UTF-8 byte order: the order a store lists ids in, computed independently of the stores' own comparison. */
function byUtf8(left: string, right: string): number {
  return Buffer.compare(Buffer.from(left, "utf8"), Buffer.from(right, "utf8"));
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

function thrownBy(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

/**
 * Runs the store contract against the stores `createHarness` makes (one harness per test). A `durable` store
 * must also keep its flushed writes across close, reopen and SIGKILL (its harness names a `crashWriter`).
 */
export function describeStoreContract(name: string, { durable, createHarness }: { durable: boolean; createHarness: () => Promise<StoreHarness> }): void {
  describe(`${name} keeps the store contract`, () => {
    let harness: StoreHarness;
    const opened: Store[] = [];

    async function open(): Promise<Store> {
      const store = await harness.open();
      opened.push(store);
      return store;
    }

    beforeEach(async () => {
      harness = await createHarness();
    });

    afterEach(async () => {
      await Promise.allSettled(opened.splice(0).map((store) => store.close()));
      await harness.cleanup();
    });

    it("answers undefined for a record it does not hold, and an empty list for an empty collection", async () => {
      const store = await open();
      expect(await store.get("agents", "nobody")).toBeUndefined();
      expect(await store.list("agents")).toEqual([]);
    });

    it("returns what was put, for every kind of JSON value", async () => {
      const store = await open();
      const values: Record<string, unknown> = {
        object: { agent_id: "opencode://backend", nested: { list: [1, "two", null, true, { deep: [] }] } },
        array: [1, 2.5, -3e-7, "x"],
        string: "plain",
        number: 42,
        boolean: false,
        null: null,
        empty: {},
      };
      for (const [id, value] of Object.entries(values)) store.put("meta", id, value);
      await store.flush();
      for (const [id, value] of Object.entries(values)) expect(await store.get("meta", id)).toEqual(value);
    });

    it("stores a copy: changing the object after put, or a value read, changes nothing stored", async () => {
      const store = await open();
      const value = { status: "queued", attempts: [1] };
      store.put("messages", "m1", value);
      value.status = "changed after put";
      value.attempts.push(2);
      const read = (await store.get("messages", "m1")) as { status: string; attempts: number[] };
      expect(read).toEqual({ status: "queued", attempts: [1] });
      read.attempts.push(3);
      expect(await store.get("messages", "m1")).toEqual({ status: "queued", attempts: [1] });
    });

    it("lets a read see the writes enqueued before it, without a flush", async () => {
      const store = await open();
      store.put("agents", "a", { n: 1 });
      store.delete("agents", "gone");
      expect(await store.get("agents", "a")).toEqual({ n: 1 });
      expect(await store.list("agents")).toEqual([{ id: "a", value: { n: 1 } }]);
    });

    it("applies the writes of one batch in the order they were made", async () => {
      const store = await open();
      store.put("workflows", "kept", { version: 1 });
      store.put("workflows", "doomed", { version: 1 });
      await store.flush();
      store.put("workflows", "kept", { version: 2 });
      store.put("workflows", "kept", { version: 3 });
      store.delete("workflows", "doomed");
      store.put("workflows", "reborn", { version: 1 });
      store.delete("workflows", "reborn");
      store.put("workflows", "reborn", { version: 2 });
      store.put("workflows", "never", { version: 1 });
      store.delete("workflows", "never");
      store.delete("workflows", "not-there");
      await store.flush();
      expect(await store.list("workflows")).toEqual([
        { id: "kept", value: { version: 3 } },
        { id: "reborn", value: { version: 2 } },
      ]);
    });

    it("keeps collections apart: one id in two collections is two records", async () => {
      const store = await open();
      store.put("messages", "same-id", { in: "messages" });
      store.put("message_status", "same-id", { in: "message_status" });
      store.delete("agents", "same-id");
      await store.flush();
      expect(await store.get("messages", "same-id")).toEqual({ in: "messages" });
      expect(await store.get("message_status", "same-id")).toEqual({ in: "message_status" });
      store.delete("messages", "same-id");
      expect(await store.get("messages", "same-id")).toBeUndefined();
      expect(await store.get("message_status", "same-id")).toEqual({ in: "message_status" });
    });

    it("lists a collection ordered by id in code-point order, and by prefix", async () => {
      const store = await open();
      const ids = ["writer/2", "writer/10", "writer/😀", "writer/\uE000", "writer2/x", "writes", "w", "Writer/1", "writer/é", "a", "writer/"];
      for (const id of ids) store.put("memory", id, { id });
      await store.flush();
      const listed = await store.list("memory");
      expect(listed.map((record) => record.id)).toEqual([...ids].sort(byUtf8));
      expect(listed.every((record) => (record.value as { id: string }).id === record.id)).toBe(true);
      expect((await store.list("memory", { prefix: "writer/" })).map((record) => record.id)).toEqual([
        "writer/",
        "writer/10",
        "writer/2",
        "writer/é",
        "writer/\uE000",
        "writer/😀",
      ]);
      expect((await store.list("memory", { prefix: "writer/😀" })).map((record) => record.id)).toEqual(["writer/😀"]);
      expect(await store.list("memory", { prefix: "nothing" })).toEqual([]);
      expect(await store.list("memory", { prefix: "" })).toHaveLength(ids.length);
    });

    it("lists a page: after an id (not it), at most limit records, with a prefix too; listPages reads it all once, in order", async () => {
      const store = await open();
      const ids = ["writer/2", "writer/10", "writer/😀", "writer/\uE000", "writer2/x", "writes", "w", "Writer/1", "writer/é", "a", "writer/"];
      for (const id of ids) store.put("memory", id, { id });
      await store.flush();
      const sorted = [...ids].sort(byUtf8);
      const page = async (options: ListOptions): Promise<string[]> => (await store.list("memory", options)).map((record) => record.id);
      expect(await page({ limit: 3 })).toEqual(sorted.slice(0, 3));
      expect(await page({ after: sorted[2], limit: 3 })).toEqual(sorted.slice(3, 6));
      expect(await page({ after: sorted[sorted.length - 1] })).toEqual([]);
      // An id that is no record's still places the page: what comes after it.
      expect(await page({ after: "writer/3" })).toEqual(sorted.filter((id) => byUtf8(id, "writer/3") > 0));
      expect(await page({ prefix: "writer/", after: "writer/2", limit: 2 })).toEqual(["writer/é", "writer/\uE000"]);
      expect(await page({ prefix: "writer/", after: "writer/😀" })).toEqual([]);
      for (const pageRecords of [1, 2, 4, 11, 12]) {
        const pages: string[][] = [];
        for await (const records of listPages(store, "memory", {}, { pageRecords })) pages.push(records.map((record) => record.id));
        expect(pages.flat()).toEqual(sorted);
        expect(pages.every((each) => each.length > 0 && each.length <= pageRecords)).toBe(true);
      }
      // Pages cut by their bytes (one record each here) go on to the end all the same.
      const byBytes: string[][] = [];
      for await (const records of listPages(store, "memory", {}, { maxBytes: 1 })) byBytes.push(records.map((record) => record.id));
      expect(byBytes).toEqual(sorted.map((id) => [id]));
      for (const limit of [0, -1, 1.5, Number.NaN]) expect(((await rejectionOf(store.list("memory", { limit }))) as BridgeError).type).toBe("INTERNAL");
      expect(((await rejectionOf(store.list("memory", { after: "x\u0000" }))) as BridgeError).type).toBe("INTERNAL");
    });

    it("lists a page of at most maxBytes of values: it ends before the record that would take it past them, the first whatever its size", async () => {
      const store = await open();
      // 1,000 bytes of JSON each ("é" takes two), but for the large c.
      const sized = (id: string, bytes: number): { id: string; pad: string } => ({ id, pad: "é".repeat((bytes - 20) / 2) });
      for (const id of ["a", "b", "d", "e"]) store.put("workflows", id, { ...sized(id, 1_000), node: "n" });
      store.put("workflows", "c", { ...sized("c", 100_000), node: "n" });
      await store.flush();
      const bytesOf = async (id: string): Promise<number> => Buffer.byteLength(JSON.stringify(await store.get("workflows", id)));
      const [small, large] = [await bytesOf("a"), await bytesOf("c")];
      expect(large).toBeGreaterThan(50 * small);
      const page = async (options: ListOptions): Promise<string[]> => (await store.list("workflows", options)).map((record) => record.id);
      expect(await page({ maxBytes: 2 * small })).toEqual(["a", "b"]);
      expect(await page({ maxBytes: 2 * small + large - 1 })).toEqual(["a", "b"]);
      expect(await page({ maxBytes: 2 * small + large })).toEqual(["a", "b", "c"]);
      // The first record comes whatever its size; limit, after, node and prefix narrow it as without it.
      expect(await page({ after: "b", maxBytes: 1 })).toEqual(["c"]);
      expect(await page({ after: "c", maxBytes: 10 * small })).toEqual(["d", "e"]);
      expect(await page({ after: "c", maxBytes: 10 * small, limit: 1 })).toEqual(["d"]);
      expect(await page({ node: "n", prefix: "d", maxBytes: 1 })).toEqual(["d"]);
      expect(await page({ maxBytes: 10 * large })).toEqual(["a", "b", "c", "d", "e"]);
      for (const maxBytes of [0, -1, 1.5, Number.NaN])
        expect(((await rejectionOf(store.list("workflows", { maxBytes }))) as BridgeError).type).toBe("INTERNAL");
    });

    it("lists the records of one node: those whose value's top-level node is it, kept in step with every write", async () => {
      const store = await open();
      store.put("workflows", "w1", { node: "node-a", n: 1 });
      store.put("workflows", "w2", { node: "node-b", n: 2 });
      store.put("workflows", "w3", { node: "node-a", n: 3 });
      store.put("workflows", "w4", { n: 4 });
      store.put("workflows", "w5", { nested: { node: "node-a" } });
      store.put("workflows", "w6", ["node-a"]);
      store.put("workflows", "w7", { node: 7 });
      store.put("bridge_sessions", "w1", { node: "node-a" });
      await store.flush();
      const ofNode = async (node: string, options: ListOptions = {}): Promise<string[]> =>
        (await store.list("workflows", { ...options, node })).map((record) => record.id);
      expect(await ofNode("node-a")).toEqual(["w1", "w3"]);
      expect(await ofNode("node-b")).toEqual(["w2"]);
      expect(await ofNode("node-c")).toEqual([]);
      expect(await ofNode("node-a", { after: "w1" })).toEqual(["w3"]);
      expect(await ofNode("node-a", { limit: 1 })).toEqual(["w1"]);
      expect(await ofNode("node-a", { prefix: "w3" })).toEqual(["w3"]);
      expect(await store.list("workflows", { node: "node-a", limit: 1 })).toEqual([{ id: "w1", value: { node: "node-a", n: 1 } }]);
      // A takeover moves a record to another node; a write without a node, or a delete, takes it from its node.
      store.put("workflows", "w1", { node: "node-b", n: 1 });
      store.put("workflows", "w3", { n: 3 });
      store.put("workflows", "w2", { node: "node-b", n: 22 });
      store.delete("workflows", "w2");
      await store.flush();
      expect(await ofNode("node-a")).toEqual([]);
      expect(await ofNode("node-b")).toEqual(["w1"]);
      expect(((await rejectionOf(store.list("workflows", { node: "\uD800" }))) as BridgeError).type).toBe("INTERNAL");
    });

    it("moves a record to another node without writing its value: read with that node, listed under it, fenced", async () => {
      const store = await open();
      const big = "x".repeat(1024 * 1024);
      store.put("workflows", "w1", { node: "node-a", step: "design", big });
      store.put("workflows", "w2", { node: "node-a", n: 2 });
      store.put("workflows", "w3", ["not", "an", "object"]);
      await store.flush();
      store.move("workflows", "w1", "node-b");
      store.move("workflows", "w3", "node-b");
      store.move("workflows", "absent", "node-b");
      await store.flush();
      expect(await store.get("workflows", "w1")).toEqual({ node: "node-b", step: "design", big });
      expect(await store.get("workflows", "w3")).toEqual(["not", "an", "object"]);
      expect(await store.get("workflows", "absent")).toBeUndefined();
      const ofNode = async (node: string): Promise<string[]> => (await store.list("workflows", { node })).map((record) => record.id);
      expect(await ofNode("node-a")).toEqual(["w2"]);
      expect(await ofNode("node-b")).toEqual(["w1", "w3"]);
      expect((await store.list("workflows", { node: "node-b", limit: 1 }))[0]).toEqual({ id: "w1", value: { node: "node-b", step: "design", big } });
      // In one batch: a move after a put moves what was put; a put after a move is the put; a move after a delete moves nothing.
      store.put("workflows", "w4", { node: "node-a", n: 4 });
      store.move("workflows", "w4", "node-c");
      store.move("workflows", "w2", "node-c");
      store.put("workflows", "w2", { node: "node-a", n: 22 });
      store.delete("workflows", "w1");
      store.move("workflows", "w1", "node-c");
      await store.flush();
      expect(await store.get("workflows", "w4")).toEqual({ node: "node-c", n: 4 });
      expect(await store.get("workflows", "w2")).toEqual({ node: "node-a", n: 22 });
      expect(await store.get("workflows", "w1")).toBeUndefined();
      expect(await ofNode("node-c")).toEqual(["w4"]);
      // A put after a move writes the value as given again, its node with it.
      store.put("workflows", "w3", { node: "node-d" });
      await store.flush();
      expect(await ofNode("node-d")).toEqual(["w3"]);
      // Fenced like any write: an older tenure's move is dropped, and its writer told; in one batch with a put under
      // another fence, or none, each is admitted or refused by its own.
      const refused: string[] = [];
      store.put("workflows", "w5", { node: "node-a" }, { fence: { resource: "node:node-a", token: 5 } });
      await store.flush();
      store.move("workflows", "w5", "node-b", { fence: { resource: "node:node-a", token: 4, onRefused: () => refused.push("older") } });
      await store.flush();
      expect(refused).toEqual(["older"]);
      expect(await store.get("workflows", "w5")).toEqual({ node: "node-a" });
      store.put("workflows", "w5", { node: "node-a", n: 5 });
      store.move("workflows", "w5", "node-b", { fence: { resource: "node:node-a", token: 4, onRefused: () => refused.push("older again") } });
      store.put("workflows", "w6", { node: "node-a", n: 6 }, { fence: { resource: "node:node-a", token: 3, onRefused: () => refused.push("older put") } });
      store.move("workflows", "w6", "node-b");
      await store.flush();
      expect(refused).toEqual(["older", "older again", "older put"]);
      expect(await store.get("workflows", "w5")).toEqual({ node: "node-a", n: 5 });
      expect(await store.get("workflows", "w6")).toBeUndefined();
      expect(() => store.move("workflows", "w5", "\uD800")).toThrow(expect.objectContaining({ type: "INTERNAL" }));
    });

    it("takes a prefix literally: %, _ and \\ are characters like any other", async () => {
      const store = await open();
      const ids = ["100%/a", "1000/b", "100_/c", "100x/d", "a\\b/e", "a\\\\b/f", "ab/g"];
      for (const id of ids) store.put("memory", id, true);
      await store.flush();
      const listed = async (prefix: string): Promise<string[]> => (await store.list("memory", { prefix })).map((record) => record.id);
      expect(await listed("100%")).toEqual(["100%/a"]);
      expect(await listed("100_")).toEqual(["100_/c"]);
      expect(await listed("a\\b")).toEqual(["a\\b/e"]);
      expect(await listed("a\\")).toEqual(["a\\\\b/f", "a\\b/e"]);
    });

    it("keeps unicode ids and values exactly, astral characters included, and NUL in values", async () => {
      const store = await open();
      const text = 'héllo wörld ✓ 😀 中文 עברית \u0000 \u2028 \uFEFF "quoted" \\ back';
      const ids = ["claude-code://qa", "中文/会话", "emoji-😀-id", "\u200Bzero-width"];
      for (const id of ids) store.put("bridge_sessions", id, { text, id });
      await store.flush();
      for (const id of ids) expect(await store.get("bridge_sessions", id)).toEqual({ text, id });
    });

    it("stores a large value (8 MiB of text)", async () => {
      const store = await open();
      const large = "history line with ünïcödé and 😀\n".repeat(256 * 1024);
      store.put("bridge_sessions", "long-session", { history: large });
      await store.flush();
      expect(((await store.get("bridge_sessions", "long-session")) as { history: string }).history).toBe(large);
    });

    it("commits 20,000 records written in one turn, and many small batches", async () => {
      const store = await open();
      for (let index = 0; index < 20_000; index++) store.put("message_status", `m-${String(index).padStart(5, "0")}`, { index });
      await store.flush();
      for (let batch = 0; batch < 200; batch++) {
        store.put("agents", `agent-${String(batch).padStart(3, "0")}`, { batch });
        await store.flush();
      }
      const statuses = await store.list("message_status");
      expect(statuses).toHaveLength(20_000);
      expect(statuses[12_345]).toEqual({ id: "m-12345", value: { index: 12_345 } });
      expect((await store.list("agents")).map((record) => (record.value as { batch: number }).batch)).toEqual(Array.from({ length: 200 }, (_, batch) => batch));
    });

    it("refuses, at once and with INTERNAL, a value that is not JSON, an empty or malformed id (a lone surrogate, a NUL), and an unknown collection", async () => {
      const store = await open();
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const value of [undefined, () => 1, 10n, cyclic]) {
        const error = thrownBy(() => store.put("meta", "bad", value));
        expect(error).toBeInstanceOf(BridgeError);
        expect((error as BridgeError).type).toBe("INTERNAL");
      }
      for (const id of ["", "lone-\uD800-surrogate", "nul-\u0000-inside"])
        expect((thrownBy(() => store.put("meta", id, 1)) as BridgeError).type).toBe("INTERNAL");
      expect(((await rejectionOf(store.list("meta", { prefix: "nul-\u0000" }))) as BridgeError).type).toBe("INTERNAL");
      expect((thrownBy(() => store.put("nowhere" as "meta", "id", 1)) as BridgeError).type).toBe("INTERNAL");
      expect((thrownBy(() => store.delete("meta", "")) as BridgeError).type).toBe("INTERNAL");
      expect(((await rejectionOf(store.get("nowhere" as "meta", "id"))) as BridgeError).type).toBe("INTERNAL");
      // A read of an id no store can hold (a client's, say) finds nothing, as for any id without a record.
      for (const id of ["lone-\uD800-surrogate", "nul-\u0000-inside"]) expect(await store.get("meta", id)).toBeUndefined();
      await store.flush();
      expect(await store.list("meta")).toEqual([]);
    });

    it("commits a fenced write while its token is the newest of its resource, and drops an older tenure's, telling its writer", async () => {
      const store = await open();
      const refused: string[] = [];
      const fence = (token: number, name: string) => ({ resource: "workflow:sess_1", token, onRefused: () => refused.push(name) });
      store.put("workflows", "sess_1", { step: "design" }, { fence: fence(5, "first") });
      await store.flush();
      store.put("workflows", "sess_1", { step: "stale" }, { fence: fence(3, "older") });
      store.delete("workflows", "sess_1", { fence: fence(4, "older delete") });
      store.put("workflows", "sess_1/tasks", { n: 1 }, { fence: fence(5, "same tenure") });
      store.put("messages", "unfenced", { n: 2 });
      await store.flush();
      expect(refused).toEqual(["older delete"]);
      expect(await store.get("workflows", "sess_1")).toEqual({ step: "design" });
      expect(await store.get("workflows", "sess_1/tasks")).toEqual({ n: 1 });
      store.put("workflows", "sess_1", { step: "review" }, { fence: fence(8, "newer") });
      await store.flush();
      store.put("workflows", "sess_1", { step: "lost" }, { fence: fence(5, "after takeover") });
      store.put("workflows", "sess_2", { step: "design" }, { fence: { resource: "workflow:sess_2", token: 1 } });
      await store.flush();
      expect(refused).toEqual(["older delete", "after takeover"]);
      expect(await store.list("workflows")).toEqual([
        { id: "sess_1", value: { step: "review" } },
        { id: "sess_1/tasks", value: { n: 1 } },
        { id: "sess_2", value: { step: "design" } },
      ]);
      expect(await store.get("messages", "unfenced")).toEqual({ n: 2 });
    });

    it("admits, in one batch, only the writes of a resource's greatest token", async () => {
      const store = await open();
      const refused: string[] = [];
      store.put("workflows", "a", 1, { fence: { resource: "r", token: 2, onRefused: () => refused.push("a") } });
      store.put("workflows", "b", 1, { fence: { resource: "r", token: 7 } });
      store.put("workflows", "c", 1, { fence: { resource: "other", token: 1 } });
      await store.flush();
      expect(refused).toEqual(["a"]);
      expect((await store.list("workflows")).map((record) => record.id)).toEqual(["b", "c"]);
    });

    it("refuses a malformed fence at once with INTERNAL", async () => {
      const store = await open();
      for (const fence of [
        { resource: "", token: 1 },
        { resource: "r", token: -1 },
        { resource: "r", token: 1.5 },
        { resource: "nul\u0000", token: 1 },
      ]) {
        expect((thrownBy(() => store.put("meta", "x", 1, { fence })) as BridgeError).type).toBe("INTERNAL");
      }
      await store.flush();
      expect(await store.list("meta")).toEqual([]);
    });

    it("refuses writes and reads once closed, and closes twice without complaint", async () => {
      const store = await open();
      store.put("meta", "before-close", true);
      await store.close();
      await store.close();
      expect((thrownBy(() => store.put("meta", "after-close", true)) as BridgeError).type).toBe("INTERNAL");
      expect(((await rejectionOf(store.get("meta", "before-close"))) as BridgeError).type).toBe("INTERNAL");
      expect(((await rejectionOf(store.list("meta"))) as BridgeError).type).toBe("INTERNAL");
    });

    if (!durable) {
      it("starts empty at every open: it promises no durability", async () => {
        const first = await open();
        first.put("meta", "volatile", true);
        await first.close();
        expect(await (await open()).get("meta", "volatile")).toBeUndefined();
      });
      return;
    }

    it("keeps flushed writes across close and reopen", async () => {
      const first = await open();
      first.put("agents", "flushed", { n: 1 });
      first.put("agents", "deleted-later", { n: 2 });
      await first.flush();
      first.delete("agents", "deleted-later");
      await first.flush();
      await first.close();
      expect(await (await open()).list("agents")).toEqual([{ id: "flushed", value: { n: 1 } }]);
    });

    it("keeps a move across close and reopen", async () => {
      const first = await open();
      first.put("workflows", "w1", { node: "node-a", n: 1 });
      await first.flush();
      first.move("workflows", "w1", "node-b");
      await first.close();
      const second = await open();
      expect(await second.get("workflows", "w1")).toEqual({ node: "node-b", n: 1 });
      expect(await second.list("workflows", { node: "node-b" })).toEqual([{ id: "w1", value: { node: "node-b", n: 1 } }]);
    });

    it("commits at close what was enqueued without a flush", async () => {
      const first = await open();
      first.put("agents", "enqueued-before-close", { n: 3 });
      first.delete("agents", "never-there");
      await first.close();
      expect(await (await open()).list("agents")).toEqual([{ id: "enqueued-before-close", value: { n: 3 } }]);
    });

    it("keeps every flushed batch, whole, when its process is killed with SIGKILL at any moment", async () => {
      // Three kills, each a different time after the 20th flush: while writing, committing or printing.
      for (const [round, killDelayMs] of [5, 25, 60].entries()) {
        const lastFlushed = await runCrashWriter(harness.crashWriter!, round, killDelayMs);
        const store = await open();
        const batches = new Map<number, number>();
        for (const { id } of await store.list("messages", { prefix: `crash-${round}-` })) {
          const batch = Number(id.split("-")[2]);
          batches.set(batch, (batches.get(batch) ?? 0) + 1);
        }
        await store.close();
        // Every batch reported flushed is there, each batch is whole or absent, and the batches present form a prefix.
        const present = [...batches.keys()].sort((left, right) => left - right);
        expect(present.length).toBeGreaterThan(lastFlushed);
        expect(present).toEqual(Array.from({ length: present.length }, (_, batch) => batch));
        expect([...batches.values()].every((count) => count === CRASH_BATCH_SIZE)).toBe(true);
      }
    });
  });
}

/** Records per batch of crash-writer.ts. */
const CRASH_BATCH_SIZE = 50;

/**
 * Runs crash-writer.ts until it has reported 20 flushed batches, kills it with SIGKILL `killDelayMs` later while
 * it keeps writing, and answers the last batch it reported flushed.
 */
async function runCrashWriter(spec: CrashWriterSpec, round: number, killDelayMs: number): Promise<number> {
  const child = spawn(process.execPath, ["--import", "tsx", "test/store/crash-writer.ts", JSON.stringify({ spec, round, batchSize: CRASH_BATCH_SIZE })], {
    cwd: projectRoot,
  });
  const exited = once(child, "exit");
  let output = "";
  let errors = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (errors += chunk));
  try {
    await new Promise<void>((resolve, reject) => {
      let killScheduled = false;
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
        output += chunk;
        if (killScheduled || !/^flushed 20$/m.test(output)) return;
        killScheduled = true;
        setTimeout(resolve, killDelayMs);
      });
      child.on("exit", (code) => reject(new Error(`crash writer exited (${code}) before 20 batches: ${errors}`)));
    });
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
  const flushed = [...output.matchAll(/^flushed (\d+)$/gm)].map((match) => Number(match[1]));
  return Math.max(...flushed);
}
