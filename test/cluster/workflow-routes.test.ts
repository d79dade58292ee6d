/**
 * The workflow routes on any node of a cluster (issue 15, docs/cluster.md "Workflow routes on any node"), on a
 * real NATS JetStream and a real PostgreSQL: a node asked for a workflow another node runs forwards the request to
 * that node and answers with its answer (or its error); an id no record knows is 404 everywhere; a workflow whose
 * node died and is not yet taken over is 503 (TRANSPORT, retryable), and the survivor answers once it took it over.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { CommunicationBus, openPostgresStore, type Store } from "../../src/index.js";
import { MAX_PAGE_CHARS } from "../../src/bus/pagination.js";
import { useEngines } from "../support/engines.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { call, TEST_KEY, until } from "../bus/support.js";

const LEAD = "cli://lead";
const DEV = "cli://dev";
const STEPS = [
  { name: "design", required_agents: [DEV] },
  { name: "review", required_agents: [DEV] },
];

let nats: NatsServer;
let postgres: PostgresServer;
let testNumber = 0;
const running: CommunicationBus[] = [];

useEngines((engines) => ({ nats, postgres } = engines));

afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((bus) => bus.stop()));
});

/** A cluster of its own for each test: its PostgreSQL schema and its lease bucket. */
function newCluster(): { schema: string; bucket: string } {
  testNumber += 1;
  return { schema: `routes_${process.pid}_${testNumber}`, bucket: `routes_${process.pid}_${testNumber}` };
}

/** A node: a bus that makes its runtime, on the cluster's NATS and PostgreSQL schema. */
async function startNode(cluster: { schema: string; bucket: string }, nodeId: string, leaseMs: number): Promise<CommunicationBus> {
  const bus = new CommunicationBus({
    store: () => openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.schema }),
    host: "127.0.0.1",
    port: 0,
    apiKey: TEST_KEY,
    closeGraceMs: 50,
    env: {},
    cluster: { url: nats.url, nodeId, leaseMs, leaseBucket: cluster.bucket },
  });
  await bus.start();
  running.push(bus);
  return bus;
}

/** Creates a workflow through node `bus`'s HTTP route: it runs there. */
async function createWorkflow(bus: CommunicationBus): Promise<string> {
  const created = await call(bus, "POST", "/sessions", {
    initiator: LEAD,
    participants: [{ agent_id: DEV, role: "dev" }],
    steps: STEPS,
  });
  expect(created.status).toBe(201);
  // It runs on the node that created it, and says so.
  expect(created.body.session).toMatchObject({ node: bus.cluster!.nodeId });
  return created.body.session_id as string;
}

describe("workflow routes on any node", () => {
  it("answer on node B for a workflow node A runs as node A answers them, and change it on node A", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a", 1_000), await startNode(cluster, "node-b", 1_000)];
    const sessionId = await createWorkflow(a);
    expect(b.sessionManager.runs(sessionId)).toBe(false);

    const onA = await call(a, "GET", `/sessions/${sessionId}`);
    const onB = await call(b, "GET", `/sessions/${sessionId}`);
    expect(onB).toEqual(onA);
    expect(onB.body).toMatchObject({ session_id: sessionId, status: "active", workflow: { current_step: "design" } });

    const moved = await call(b, "PATCH", `/sessions/${sessionId}/workflow`, { current_step: "review" });
    expect(moved).toMatchObject({ status: 200, body: { success: true, session: { workflow: { current_step: "review" } } } });
    expect(a.sessionManager.getSession(sessionId)?.workflow.current_step).toBe("review");
    expect(b.sessionManager.runs(sessionId)).toBe(false);

    // The owner's refusal comes back as it is: a body its schema refuses is 400 naming the field.
    const refused = await call(b, "PATCH", `/sessions/${sessionId}/workflow`, { current_step: 42 });
    expect(refused).toEqual(await call(a, "PATCH", `/sessions/${sessionId}/workflow`, { current_step: 42 }));
    expect(refused.status).toBe(400);

    const completed = await call(b, "POST", `/sessions/${sessionId}/complete`, { summary: "done through node-b", artifacts: [] });
    expect(completed).toMatchObject({ status: 200, body: { success: true, session: { status: "completed" } } });
    expect(a.sessionManager.getSession(sessionId)?.status).toBe("completed");
    // Completing it again is answered by node-b exactly as by node-a.
    const again = await call(b, "POST", `/sessions/${sessionId}/complete`, { summary: "twice", artifacts: [] });
    expect(again).toEqual(await call(a, "POST", `/sessions/${sessionId}/complete`, { summary: "twice", artifacts: [] }));
    expect(again.body).toMatchObject({ session: { status: "completed" } });

    const deleted = await call(b, "DELETE", `/sessions/${sessionId}`);
    expect(deleted).toEqual({ status: 200, body: { success: true, session_id: sessionId } });
    expect(a.sessionManager.runs(sessionId)).toBe(false);
    // Deleted, no record knows it: 404 on both nodes.
    expect((await call(a, "GET", `/sessions/${sessionId}`)).status).toBe(404);
    expect((await call(b, "GET", `/sessions/${sessionId}`)).status).toBe(404);
  }, 30_000);

  it("answer on node B a route whose answer is larger than NATS carries as node A answers it, the change made once", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a", 1_000), await startNode(cluster, "node-b", 1_000)];
    const limitBytes = b.cluster!.maxPayloadBytes();
    // A shared context near its bound (64 KiB) makes the workflow's view larger than any request about it.
    const created = await call(a, "POST", "/sessions", {
      initiator: LEAD,
      participants: [{ agent_id: DEV, role: "dev" }],
      steps: STEPS,
      shared_context: { notes: "n".repeat(60_000) },
    });
    const sessionId = created.body.session_id as string;
    // The request fits one NATS message (and the HTTP body bound); the answer, the view with these artifacts, does not.
    const completion = { summary: "done through node-b", artifacts: ["a".repeat(limitBytes - 20_000)] };
    const completed = await call(b, "POST", `/sessions/${sessionId}/complete`, completion);
    expect(completed.status).toBe(200);
    expect(Buffer.byteLength(JSON.stringify(completed.body))).toBeGreaterThan(limitBytes);
    expect(completed.body).toMatchObject({
      success: true,
      session: { session_id: sessionId, status: "completed", completion: { summary: completion.summary } },
    });
    // Node A answers the same, and its workflow ended once: completing it again changes nothing.
    expect(completed.body.session).toEqual(a.sessionManager.getSession(sessionId));
    expect(await call(b, "GET", `/sessions/${sessionId}`)).toEqual(await call(a, "GET", `/sessions/${sessionId}`));
    expect(await call(b, "POST", `/sessions/${sessionId}/complete`, { summary: "again", artifacts: [] })).toEqual(completed);
  }, 30_000);

  it("list every workflow of the cluster on any node, by id a page at a time, each naming its node, and answer any of them on either", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a", 1_000), await startNode(cluster, "node-b", 1_000)];
    const onA = [await createWorkflow(a), await createWorkflow(a), await createWorkflow(a)];
    const onB = [await createWorkflow(b), await createWorkflow(b)];
    const expected = [...onA.map((id) => [id, "node-a"]), ...onB.map((id) => [id, "node-b"])].sort(([left], [right]) => (left! < right! ? -1 : 1));
    // A change on node-a is seen on node-b once durable (node-a answers once it is).
    expect((await call(a, "PATCH", `/sessions/${onA[0]}/workflow`, { current_step: "review" })).status).toBe(200);
    for (const bus of [a, b]) {
      const all = (await call(bus, "GET", "/sessions")).body as {
        sessions: Array<{ session_id: string; node: string; workflow: { current_step: string } }>;
        next_cursor?: string;
      };
      expect(all.sessions.map((session) => [session.session_id, session.node])).toEqual(expected);
      expect(all.next_cursor).toBeUndefined();
      expect(all.sessions.find((session) => session.session_id === onA[0])?.workflow.current_step).toBe("review");
      // Two at a time, each page read on its own: the cursor is the last id given.
      const walked: string[] = [];
      let cursor: string | undefined;
      do {
        const page = (await call(bus, "GET", `/sessions?limit=2${cursor === undefined ? "" : `&cursor=${cursor}`}`)).body as {
          sessions: Array<{ session_id: string }>;
          next_cursor?: string;
        };
        expect(page.sessions.length).toBeLessThanOrEqual(2);
        walked.push(...page.sessions.map((session) => session.session_id));
        cursor = page.next_cursor;
      } while (cursor !== undefined);
      expect(walked).toEqual(expected.map(([id]) => id));
      // An offset cursor is one of a node's own lists, not this one.
      const offset = Buffer.from("o:2", "utf8").toString("base64url");
      expect(await call(bus, "GET", `/sessions?cursor=${offset}`)).toMatchObject({ status: 400, body: { error: { type: "CONFIG" } } });
    }
    // ?node= lists the workflows one node runs, on any node.
    for (const bus of [a, b]) {
      for (const [node, ids] of [
        ["node-a", onA],
        ["node-b", onB],
        ["node-c", []],
      ] as const) {
        const page = await call(bus, "GET", `/sessions?node=${node}`);
        expect((page.body.sessions as Array<{ session_id: string }>).map((session) => session.session_id)).toEqual([...ids].sort());
      }
      expect(await call(bus, "GET", "/sessions?node=bad%20id")).toMatchObject({ status: 400, body: { error: { type: "CONFIG" } } });
    }
    // Newest first (what /ui shows) lists the node asked, from its actors; another node's, or the cluster's, is CONFIG.
    const newestOnA = await call(a, "GET", "/sessions?node=node-a&order=newest");
    expect((newestOnA.body.sessions as Array<{ session_id: string; node: string }>).map((session) => [session.session_id, session.node])).toEqual(
      [...onA].reverse().map((id) => [id, "node-a"]),
    );
    for (const query of ["order=newest", "order=newest&node=node-b"]) {
      expect(await call(a, "GET", `/sessions?${query}`)).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field: "order" } } } });
    }
    // A deleted workflow leaves the list of every node.
    expect((await call(b, "DELETE", `/sessions/${onA[1]}`)).status).toBe(200);
    expect(((await call(b, "GET", "/sessions")).body.sessions as Array<{ session_id: string }>).map((session) => session.session_id)).not.toContain(onA[1]);
    for (const bus of [a, b]) expect((await call(bus, "GET", `/sessions/${onA[2]}`)).body).toMatchObject({ session_id: onA[2], node: "node-a" });
  }, 30_000);

  it("read no more of the store for a page of GET /sessions than the page holds, small workflows first or not", async () => {
    const cluster = newCluster();
    const a = await startNode(cluster, "node-a", 1_000);
    const ids: string[] = [];
    for (let index = 0; index < 50; index++) ids.push(await createWorkflow(a));
    ids.sort();
    // The first ten by id stay small (about 1 KB each); the forty after them hold 300 KB of artifacts each (12 MB).
    const artifacts = ["a".repeat(300_000)];
    for (const id of ids.slice(10)) expect((await call(a, "POST", `/sessions/${id}/complete`, { summary: "big", artifacts })).status).toBe(200);
    const store = (a as unknown as { runtime: { store: Store } }).runtime.store;
    await store.flush();
    let bytesRead = 0;
    const list = store.list.bind(store);
    const spy = vi.spyOn(store, "list").mockImplementation(async (collection, options) => {
      const records = await list(collection, options);
      for (const { value } of records) bytesRead += Buffer.byteLength(JSON.stringify(value));
      return records;
    });
    try {
      const walked: string[] = [];
      let cursor: string | undefined;
      do {
        bytesRead = 0;
        const page = await call(a, "GET", `/sessions?limit=1000${cursor === undefined ? "" : `&cursor=${cursor}`}`);
        expect(page.status).toBe(200);
        const sessions = page.body.sessions as Array<{ session_id: string }>;
        walked.push(...sessions.map((session) => session.session_id));
        // The page's records and the one past it: sized from the small ones first, a read by count took all 12 MB.
        expect(bytesRead).toBeLessThanOrEqual(MAX_PAGE_CHARS + 2 * 310_000);
        cursor = page.body.next_cursor as string | undefined;
      } while (cursor !== undefined);
      expect(walked).toEqual(ids);
    } finally {
      spy.mockRestore();
    }
    // A cursor of a key no store holds (a NUL) is one no listing gave: CONFIG, not the store's INTERNAL.
    const nul = Buffer.from(`k:\u0000${ids[0]}`, "utf8").toString("base64url");
    expect(await call(a, "GET", `/sessions?cursor=${nul}`)).toMatchObject({ status: 400, body: { error: { type: "CONFIG" } } });
  }, 60_000);

  it("pass over at most 1,000 records a page of GET /sessions leaves out, ending the page there with its cursor", async () => {
    const cluster = newCluster();
    const a = await startNode(cluster, "node-a", 1_000);
    // 1,500 records no version reads, whose ids come before the one workflow's.
    const seeder = await openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.schema });
    for (let index = 0; index < 1_500; index++) seeder.put("workflows", `!unreadable-${String(index).padStart(4, "0")}`, { not: "a workflow" });
    await seeder.close();
    const sessionId = await createWorkflow(a);
    const first = await call(a, "GET", "/sessions");
    expect(first.status).toBe(200);
    expect(first.body.sessions).toEqual([]);
    expect(typeof first.body.next_cursor).toBe("string");
    const second = await call(a, "GET", `/sessions?cursor=${first.body.next_cursor as string}`);
    expect((second.body.sessions as Array<{ session_id: string }>).map((session) => session.session_id)).toEqual([sessionId]);
    expect(second.body.next_cursor).toBeUndefined();
  }, 30_000);

  it("answer 404 NOT_FOUND on every node for an id no record knows", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a", 1_000), await startNode(cluster, "node-b", 1_000)];
    for (const bus of [a, b]) {
      expect(await call(bus, "GET", "/sessions/no-such-workflow")).toMatchObject({ status: 404, body: { error: { type: "NOT_FOUND" } } });
      expect((await call(bus, "PATCH", "/sessions/no-such-workflow/workflow", { current_step: "review" })).status).toBe(404);
      expect((await call(bus, "POST", "/sessions/no-such-workflow/complete", { summary: "x", artifacts: [] })).status).toBe(404);
      expect((await call(bus, "DELETE", "/sessions/no-such-workflow")).status).toBe(404);
      // An id no store can hold (a NUL) is found nowhere either: 404, as on one node, not a store failure.
      expect((await call(bus, "GET", "/sessions/abc%00def")).status).toBe(404);
      expect((await call(bus, "POST", "/bridge/sessions_status", { sessionId: "\u0000" })).status).toBe(404);
      expect((await call(bus, "GET", "/messages/%00?sender=x")).status).toBe(404);
    }
  }, 30_000);

  it("answer 503 TRANSPORT for a workflow whose node died until a survivor took it over, then from the survivor", async () => {
    const cluster = newCluster();
    // A lease of 3 s leaves time to ask node-b before it takes node-a over.
    const [a, b] = [await startNode(cluster, "node-a", 3_000), await startNode(cluster, "node-b", 3_000)];
    const sessionId = await createWorkflow(a);
    // Created in a later millisecond than node-a's.
    const createdAt = ((await call(a, "GET", `/sessions/${sessionId}`)).body as { created_at: number }).created_at;
    await until(() => Date.now() > createdAt);
    const newer = await createWorkflow(b);

    // node-a is cut from NATS, as a killed node is for the others: it answers nothing more.
    await a.cluster!.close();
    const unavailable = await call(b, "GET", `/sessions/${sessionId}`);
    expect(unavailable).toMatchObject({ status: 503, body: { error: { type: "TRANSPORT", details: { retryable: true, nodeId: "node-a" } } } });
    expect((await call(b, "PATCH", `/sessions/${sessionId}/workflow`, { current_step: "review" })).status).toBe(503);
    expect(b.sessionManager.runs(sessionId)).toBe(false);

    await until(() => b.sessionManager.runs(sessionId), 15_000);
    expect(await call(b, "GET", `/sessions/${sessionId}`)).toMatchObject({ status: 200, body: { session_id: sessionId, status: "active" } });
    expect(await call(b, "PATCH", `/sessions/${sessionId}/workflow`, { current_step: "review" })).toMatchObject({
      status: 200,
      body: { session: { workflow: { current_step: "review" } } },
    });
    // Taken over after node-b's own, node-a's workflow is still the older: newest first goes by age, not arrival.
    const newest = await call(b, "GET", "/sessions?node=node-b&order=newest");
    expect((newest.body.sessions as Array<{ session_id: string }>).map((session) => session.session_id)).toEqual([newer, sessionId]);
  }, 30_000);
});
