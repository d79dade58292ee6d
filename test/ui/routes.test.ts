/**
 * What /ui needs from the server, over HTTP: the redirect, the page and its bundle (open, with a strict
 * content security policy and etags), the live actor tree (`GET /actors`, keyed, paged, with the seq it was
 * read at) and a live actor's state graph (`GET /actors/:id/graph`).
 */
import { describe, expect, it } from "vitest";
import { createActor, createMachine } from "xstate";
import { createMockAgent, type RuntimeEvent } from "../../src/index.js";
import { EventHub } from "../../src/events/event-hub.js";
import { createInspector } from "../../src/events/inspector.js";
import { systemClock } from "../../src/clock.js";
import { call } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";

describe("the routes of /ui", () => {
  it("redirects / to /ui/ and serves the page and its bundle without the key, each with an etag", async () => {
    const { bus } = await startRuntimeBus({ agents: [createMockAgent({ id: "echo" })] });
    const root = await fetch(`${bus.url}/`, { redirect: "manual" });
    expect(root.status).toBe(302);
    expect(root.headers.get("location")).toBe("/ui/");
    const page = await fetch(`${bus.url}/ui/`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toMatch(/default-src 'none'.*script-src 'self'.*connect-src 'self'/);
    expect(await page.text()).toContain('<script type="module" src="/ui/assets/app.js"></script>');
    const script = await fetch(`${bus.url}/ui/assets/app.js`);
    expect(script.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    const etag = script.headers.get("etag")!;
    const bundleLength = (await script.text()).length;
    expect(bundleLength).toBeGreaterThan(10_000);
    const again = await fetch(`${bus.url}/ui/assets/app.js`, { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    // Compressed for a client that takes gzip (fetch asks for it and unpacks it).
    const { request } = await import("node:http");
    const compressed = await new Promise<{ encoding?: string; bytes: number }>((resolve, reject) => {
      request(`${bus.url}/ui/assets/app.js`, { headers: { "accept-encoding": "gzip" } }, (response) => {
        let bytes = 0;
        response.on("data", (chunk: Buffer) => (bytes += chunk.length));
        response.on("end", () => resolve({ encoding: response.headers["content-encoding"], bytes }));
      })
        .on("error", reject)
        .end();
    });
    expect(compressed.encoding).toBe("gzip");
    expect(compressed.bytes).toBeLessThan(bundleLength / 2);
    // Only the built files are served; any other path is the API's (the key first, then 404).
    expect((await fetch(`${bus.url}/ui/assets/secret.js`)).status).toBe(404);
    expect((await fetch(`${bus.url}/ui/assets/..%2Fpackage.json`)).status).toBe(401);
    expect((await call(bus, "GET", "/ui/assets/..%2Fpackage.json")).status).toBe(404);
  });

  it("lists the live actor tree with each actor's parent, machine and state, paged, behind the key", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [createMockAgent({ id: "echo" })] });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "echo" });
    expect((await call(bus, "GET", "/actors", undefined, { "x-agent-api-key": "wrong" })).status).toBe(401);
    const { status, body } = await call(bus, "GET", "/actors?limit=1000");
    expect(status).toBe(200);
    expect(body.seq).toBe(runtime.hub.lastSeq);
    const byId = new Map<string, any>(body.actors.map((actor: { id: string }) => [actor.id, actor]));
    expect(byId.get("supervisor")).toEqual({ id: "supervisor", machine: "supervisor", state: "running", status: "active" });
    expect(byId.get(sessionId)).toEqual({ id: sessionId, parentId: "shard-0", machine: "session", state: "active", status: "active" });
    expect(byId.get("agent:echo")).toMatchObject({ machine: "agent", state: "ready" });
    // Parents come before their children.
    const order = body.actors.map((actor: { id: string }) => actor.id);
    for (const actor of body.actors) if (actor.parentId !== undefined) expect(order.indexOf(actor.parentId)).toBeLessThan(order.indexOf(actor.id));
    const first = await call(bus, "GET", "/actors?limit=2");
    expect(first.body.actors).toHaveLength(2);
    const next = await call(bus, "GET", `/actors?limit=1000&cursor=${first.body.next_cursor}`);
    expect([...first.body.actors, ...next.body.actors].map((actor: { id: string }) => actor.id)).toEqual(order);
    expect((await call(bus, "GET", "/actors?limit=0")).status).toBe(400);
  });

  it("answers a live machine actor's state graph, and 404 for one that is not there", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [createMockAgent({ id: "echo" })] });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "echo" });
    const graph = await call(bus, "GET", `/actors/${sessionId}/graph`);
    expect(graph.status).toBe(200);
    expect(graph.body.machine).toBe("session");
    expect(graph.body.states.map((state: { id: string }) => state.id)).toEqual(expect.arrayContaining(["active", "busy", "idle", "failed"]));
    expect((await call(bus, "GET", `/actors/${encodeURIComponent("agent:echo")}/graph`)).body.machine).toBe("agent");
    const missing = await call(bus, "GET", "/actors/nobody/graph");
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ type: "NOT_FOUND", details: { actorId: "nobody" } });
    expect((await call(bus, "GET", "/actors/%E0%A4%A/graph")).status).toBe(400);
  });
});

describe("actor.spawned", () => {
  it("says the state a machine starts in, and corrects it when eventless transitions move it at once", () => {
    const hub = new EventHub(systemClock);
    const events: RuntimeEvent[] = [];
    hub.on("*", (event) => events.push(event));
    const machine = createMachine({
      id: "hop",
      initial: "start",
      states: { start: { always: "landed" }, landed: { initial: "inner", states: { inner: {} } } },
    });
    const actor = createActor(machine, { inspect: createInspector(hub, undefined, { created: () => undefined, stateChanged: () => undefined }) });
    actor.start();
    expect(events.map(({ seq: _seq, ts: _ts, ...rest }) => rest)).toEqual([
      { type: "actor.spawned", actorId: actor.id, machine: "hop", state: "start" },
      { type: "actor.transition", actorId: actor.id, from: "start", to: JSON.stringify({ landed: "inner" }), event: "xstate.init" },
    ]);
    actor.stop();
  });
});
