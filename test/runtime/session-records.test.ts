/**
 * Reading stored bridge sessions a page of the store at a time (src/runtime/session-records.ts): every session comes
 * with the prompts its pending record names, wherever the pages of the listing cut between the two.
 */
import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/index.js";
import { pendingRecordId, pendingRecordOf, SessionRecords } from "../../src/runtime/session-records.js";

function storedSession(sessionId: string, node?: string): Record<string, unknown> {
  return {
    v: 1,
    sessionId,
    agentId: "writer",
    metadata: {},
    createdAt: 1,
    ttlMs: 0,
    idleMs: 0,
    maxQueuedPrompts: 10,
    historyWindow: 30,
    status: "idle",
    lastActivityAt: 1,
    history: [],
    usage: { inputTokens: 0, outputTokens: 0 },
    error: null,
    ...(node === undefined ? {} : { node }),
  };
}

describe("stored bridge sessions read by page", () => {
  it("gives every session once with its interrupted prompts, however the pages cut between a session and its pending record", async () => {
    const store = createMemoryStore();
    // Ids of several lengths, so that other ids sort between a session and its pending record ("s-1" < "s-1-0" < "s-1/pending").
    const ids = Array.from({ length: 260 }, (_, index) => `s-${index % 26}${index >= 26 ? `-${Math.floor(index / 26)}` : ""}`);
    const interrupted = new Map<string, string[]>();
    for (const [index, id] of ids.entries()) {
      store.put("bridge_sessions", id, storedSession(id, "node-a"));
      if (index % 3 === 0) {
        interrupted.set(id, [`request-${index}`]);
        store.put("bridge_sessions", pendingRecordId(id), pendingRecordOf([`request-${index}`], "node-a"));
      }
    }
    store.put("bridge_sessions", "other", storedSession("other", "node-b"));
    await store.flush();

    const batches: string[][] = [];
    const loaded = new Map<string, string[]>();
    for await (const batch of SessionRecords.loadPages(store, "node-a")) {
      batches.push(batch.map(({ session }) => session.sessionId));
      for (const { session, interrupted: prompts } of batch) {
        expect(loaded.has(session.sessionId)).toBe(false);
        loaded.set(session.sessionId, prompts);
      }
    }
    // Given in several batches (the store's pages of 100), each session once, with exactly its prompts.
    expect(batches.length).toBeGreaterThan(2);
    expect([...loaded.keys()].sort()).toEqual([...ids].sort());
    for (const id of ids) expect(loaded.get(id)).toEqual(interrupted.get(id) ?? []);
    expect((await SessionRecords.load(store, "node-a")).map(({ session }) => session.sessionId).sort()).toEqual([...ids].sort());
  });
});
