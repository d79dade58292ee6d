/**
 * The bridge-session tools on any node of a cluster (issue 15, docs/cluster.md "Bridge sessions on any node"), on a
 * real NATS JetStream and a real PostgreSQL: a node asked about a session another node runs sends the call to that
 * node and answers with its answer or its error (over HTTP, MCP and in process), a prompt's streamed text included;
 * an id no record knows is NOT_FOUND everywhere; a session whose node died is TRANSPORT (503) until a survivor took
 * it over, then the survivor answers, the session idle with its history.
 */
import { afterEach, describe, expect, it } from "vitest";
import { CommunicationBus, createRuntime, openPostgresStore, type Runtime } from "../../src/index.js";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { useEngines } from "../support/engines.js";
import { createControlledAgent, type ControlledAgent } from "../support/controlled-agent.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { rejectionOf } from "../support/runtime.js";
import { call, until, type Answer } from "../bus/support.js";
import { connectHttp, progressLog, structured } from "../mcp/support.js";

let nats: NatsServer;
let postgres: PostgresServer;
let testNumber = 0;

useEngines((engines) => ({ nats, postgres } = engines));

/** One node of a test's cluster: a bus given a runtime whose default agent is a controlled one. */
interface TestNode {
  bus: CommunicationBus;
  runtime: Runtime;
  worker: ControlledAgent;
}

const running: TestNode[] = [];
const connections: ClusterConnection[] = [];

afterEach(async () => {
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
  await Promise.allSettled(
    running.splice(0).map(async (node) => {
      await node.bus.stop();
      await node.runtime.stop();
    }),
  );
});

/** A cluster of its own for each test: its PostgreSQL schema and its lease bucket. */
function newCluster(leaseMs = 1_000): { schema: string; bucket: string; leaseMs: number } {
  testNumber += 1;
  return { schema: `tools_${process.pid}_${testNumber}`, bucket: `tools_${process.pid}_${testNumber}`, leaseMs };
}

async function startNode(cluster: { schema: string; bucket: string; leaseMs: number }, nodeId: string): Promise<TestNode> {
  const worker = createControlledAgent("worker");
  const runtime = createRuntime({
    agents: [worker.agent],
    defaultAgentId: "worker",
    store: () => openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.schema }),
  });
  const bus = new CommunicationBus({
    runtime,
    host: "127.0.0.1",
    port: 0,
    apiKey: "test-key",
    closeGraceMs: 50,
    env: {},
    cluster: { url: nats.url, nodeId, leaseMs: cluster.leaseMs, leaseBucket: cluster.bucket },
  });
  await bus.start();
  const node = { bus, runtime, worker };
  running.push(node);
  return node;
}

/** Calls a bridge tool over HTTP (`POST /bridge/<tool>`). */
function tool(node: TestNode, name: string, args: Record<string, unknown>): Promise<Answer> {
  return call(node.bus, "POST", `/bridge/${name}`, args);
}

/** A session created over HTTP on `node`: it lives there. */
async function createSession(node: TestNode): Promise<string> {
  const created = await tool(node, "sessions_create", { metadata: { project: "notifications" } });
  expect(created.status).toBe(200);
  return created.body.sessionId as string;
}

describe("bridge-session tools on any node", () => {
  it("answer on node B for a session node A runs as node A answers them: prompt, status, an agent's failure, close", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = await createSession(a);
    // Created on node-a, asked at once on node-b: the record is in the store before the creation is answered.
    expect(await tool(b, "sessions_status", { sessionId })).toEqual(await tool(a, "sessions_status", { sessionId }));
    expect(b.runtime.hasSession(sessionId)).toBe(false);

    const prompted = tool(b, "sessions_prompt", { sessionId, prompt: "design it", requestId: "req-1" });
    await until(() => a.worker.prompts.length === 1);
    expect(a.worker.current().ctx.prompt).toBe("design it");
    const busy = await tool(b, "sessions_status", { sessionId });
    expect(busy).toMatchObject({ status: 200, body: { sessionId, status: "busy", activeRequestId: "req-1" } });
    expect(busy).toEqual(await tool(a, "sessions_status", { sessionId }));
    a.worker.current().reply({ text: "designed", usage: { inputTokens: 3, outputTokens: 1 } });
    expect(await prompted).toEqual({
      status: 200,
      body: { text: "designed", stopReason: "end_turn", requestId: "req-1", usage: { inputTokens: 3, outputTokens: 1 } },
    });
    expect(b.worker.prompts).toEqual([]);

    // A failure of the agent comes back as node-a answers it: its type, status and details.
    const failing = tool(b, "sessions_prompt", { sessionId, prompt: "build it" });
    await until(() => a.worker.prompts.length === 2);
    a.worker.current().fail("UPSTREAM", "the provider is down", { retryable: true });
    const failed = await failing;
    expect(failed).toMatchObject({ status: 502, body: { error: { type: "UPSTREAM", message: "the provider is down", details: { retryable: true } } } });
    // Arguments are checked as on every node.
    expect(await tool(b, "sessions_prompt", { sessionId, prompt: 42 })).toEqual(await tool(a, "sessions_prompt", { sessionId, prompt: 42 }));

    const idle = await tool(b, "sessions_status", { sessionId });
    expect(idle).toMatchObject({ status: 200, body: { status: "idle", usage: { inputTokens: 3, outputTokens: 1 } } });
    expect(idle).toEqual(await tool(a, "sessions_status", { sessionId }));

    expect(await tool(b, "sessions_close", { sessionId })).toEqual({ status: 200, body: { closed: true, sessionId } });
    expect(a.runtime.hasSession(sessionId)).toBe(false);
    expect(a.worker.closes).toEqual([{ sessionId, reason: "closed" }]);
    for (const node of [a, b]) {
      expect(await tool(node, "sessions_status", { sessionId })).toMatchObject({
        status: 404,
        body: { error: { type: "NOT_FOUND", message: "Session not found" } },
      });
    }
  }, 30_000);

  it("cancel a prompt in flight on node A through node B, by the one in flight or by its requestId", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = await createSession(a);

    const first = tool(b, "sessions_prompt", { sessionId, prompt: "long" });
    await until(() => a.worker.prompts.length === 1);
    const { activeRequestId } = (await tool(b, "sessions_status", { sessionId })).body as { activeRequestId: string };
    const queued = tool(a, "sessions_prompt", { sessionId, prompt: "queued", requestId: "req-queued" });
    await until(() => a.runtime.sessionStatus(sessionId).queued === 1);

    expect(await tool(b, "sessions_cancel", { sessionId, requestId: "req-queued" })).toEqual({
      status: 200,
      body: { cancelled: true, sessionId, requestId: "req-queued" },
    });
    expect(await queued).toMatchObject({ status: 409, body: { error: { type: "CANCELLED" } } });
    expect(await tool(b, "sessions_cancel", { sessionId })).toEqual({ status: 200, body: { cancelled: true, sessionId, requestId: activeRequestId } });
    expect(await first).toMatchObject({ status: 409, body: { error: { type: "CANCELLED" } } });
    expect(a.worker.prompts[0]?.ctx.signal.aborted).toBe(true);
    expect(a.worker.cancels).toEqual([{ sessionId, requestId: activeRequestId }]);
    // Nothing left to cancel: node-a's NOT_FOUND for the unknown request, through node-b.
    const nothing = await tool(b, "sessions_cancel", { sessionId, requestId: "req-none" });
    expect(nothing.status).toBe(404);
    expect(nothing).toEqual(await tool(a, "sessions_cancel", { sessionId, requestId: "req-none" }));
  }, 30_000);

  it("stream a prompt's text to a caller on node B, in process and over MCP, and cancel it when that caller aborts", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = await createSession(a);

    const heard: string[] = [];
    const inProcess = b.runtime.bridge.sessionsPrompt({ sessionId, prompt: "stream" }, { onDelta: (delta) => heard.push(delta) });
    await until(() => a.worker.prompts.length === 1);
    a.worker.current().ctx.emit("one ");
    await until(() => heard.join("") === "one ");
    a.worker.current().ctx.emit("two");
    await until(() => heard.join("") === "one two");
    a.worker.current().reply({ text: "one two" });
    expect(await inProcess).toMatchObject({ text: "one two", stopReason: "end_turn" });

    const { client } = await connectHttp(b.bus);
    const progress = progressLog();
    const overMcp = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "stream again" } }, undefined, {
      onprogress: progress.onprogress,
    });
    await until(() => a.worker.prompts.length === 2);
    const noted = progress.next();
    a.worker.current().ctx.emit("three");
    expect(await noted).toEqual({ progress: 5, message: "three" });
    a.worker.current().reply({ text: "three" });
    expect(structured(await overMcp)).toMatchObject({ text: "three", stopReason: "end_turn" });

    // The MCP client cancels its call: node-b cancels the prompt on node-a, whose agent's call is aborted.
    const abort = new AbortController();
    const cancelled = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "never mind" } }, undefined, { signal: abort.signal });
    cancelled.catch(() => undefined);
    await until(() => a.worker.prompts.length === 3);
    abort.abort();
    await until(() => a.worker.cancels.length === 1);
    expect(a.worker.prompts[2]?.ctx.signal.aborted).toBe(true);
    await until(() => a.runtime.sessionStatus(sessionId).status === "idle");
  }, 30_000);

  it("carry an answer larger than a NATS message whole, and refuse a prompt too large to send (413)", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = await createSession(a);
    const maxPayloadBytes = b.bus.cluster!.maxPayloadBytes();
    // Quotes take two bytes each in JSON: the answer is three NATS messages' worth.
    const text = `"é${"\u{1F600}".repeat(10)}`.repeat(Math.ceil((1.5 * maxPayloadBytes) / 23));

    const heard: string[] = [];
    const large = b.runtime.bridge.sessionsPrompt({ sessionId, prompt: "say a lot" }, { onDelta: (delta) => heard.push(delta) });
    await until(() => a.worker.prompts.length === 1);
    a.worker.current().ctx.emit(text);
    a.worker.current().reply({ text });
    const answer = await large;
    expect(answer.text.length).toBe(text.length);
    expect(answer.text === text).toBe(true);
    expect(heard.join("") === text).toBe(true);
    expect(heard.length).toBeGreaterThan(1);

    const tooLarge = await rejectionOf(b.runtime.bridge.sessionsPrompt({ sessionId, prompt: "x".repeat(maxPayloadBytes - 100) }));
    expect(tooLarge).toMatchObject({ type: "CONFIG", details: { limitBytes: maxPayloadBytes, nodeId: "node-a" } });
    expect(a.worker.prompts.length).toBe(1);
  }, 30_000);

  it("answer NOT_FOUND on every node for an id no record knows", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    for (const node of [a, b]) {
      for (const [name, args] of [
        ["sessions_prompt", { sessionId: "no-such-session", prompt: "hello" }],
        ["sessions_status", { sessionId: "no-such-session" }],
        ["sessions_cancel", { sessionId: "no-such-session" }],
        ["sessions_close", { sessionId: "no-such-session" }],
      ] as const) {
        expect(await tool(node, name, args)).toEqual({
          status: 404,
          body: {
            error: { type: "NOT_FOUND", message: "Session not found", details: { sessionId: "no-such-session", retryable: false, sessionValid: false } },
          },
        });
      }
    }
  }, 30_000);

  it("answer TRANSPORT (503) while the session's node is dead and not yet taken over, then from the survivor, idle with its history", async () => {
    // A lease of 3 s leaves time to ask node-b before it takes node-a over.
    const cluster = newCluster(3_000);
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = await createSession(a);
    const first = tool(b, "sessions_prompt", { sessionId, prompt: "design it" });
    await until(() => a.worker.prompts.length === 1);
    a.worker.current().reply({ text: "designed" });
    expect((await first).status).toBe(200);
    const interrupted = tool(b, "sessions_prompt", { sessionId, prompt: "build it" });
    await until(() => a.worker.prompts.length === 2);

    // node-a is cut from NATS, as a killed node is for the others: it answers nothing more.
    await a.bus.cluster!.close();
    const unavailable = await tool(b, "sessions_status", { sessionId });
    expect(unavailable).toMatchObject({ status: 503, body: { error: { type: "TRANSPORT", details: { retryable: true, nodeId: "node-a" } } } });
    expect((await tool(b, "sessions_cancel", { sessionId })).status).toBe(503);
    // The prompt in flight there: node-b hears nothing from node-a for a lease time, and gives up.
    expect(await interrupted).toMatchObject({ status: 503, body: { error: { type: "TRANSPORT", details: { retryable: true, nodeId: "node-a" } } } });
    expect(b.runtime.hasSession(sessionId)).toBe(false);

    await until(() => b.runtime.hasSession(sessionId), 15_000);
    expect(await tool(b, "sessions_status", { sessionId })).toMatchObject({ status: 200, body: { sessionId, status: "idle" } });
    const next = tool(b, "sessions_prompt", { sessionId, prompt: "review it" });
    await until(() => b.worker.prompts.length === 1);
    expect(b.worker.current().ctx.history).toEqual([
      { role: "user", content: "design it" },
      { role: "assistant", content: "designed" },
    ]);
    b.worker.current().reply({ text: "reviewed" });
    expect(await next).toMatchObject({ status: 200, body: { text: "reviewed" } });
  }, 30_000);

  it("end forwarded prompts TRANSPORT (ask again) when either node stops: cancelled on the session's node when the asking node stops", async () => {
    const cluster = newCluster();
    const [a, b, c] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b"), await startNode(cluster, "node-c")];
    const sessionId = await createSession(a);

    const viaB = rejectionOf(b.runtime.bridge.sessionsPrompt({ sessionId, prompt: "one" }));
    await until(() => a.worker.prompts.length === 1);
    await b.bus.stop();
    expect(await viaB).toMatchObject({ type: "TRANSPORT", details: { unavailable: true, retryable: true, nodeId: "node-b" } });
    await until(() => a.worker.cancels.length === 1);

    const viaC = rejectionOf(c.runtime.bridge.sessionsPrompt({ sessionId, prompt: "two" }));
    await until(() => a.worker.prompts.length === 2);
    await a.bus.stop();
    expect(await viaC).toMatchObject({ type: "TRANSPORT", details: { unavailable: true, retryable: true, nodeId: "node-a" } });
  }, 30_000);

  it("end a forwarded prompt TRANSPORT when a message of its stream is lost, and cancel it on its node", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const sessionId = await createSession(a);
    const watcher = await connectNats({ url: nats.url, name: "stream watcher" });
    connections.push(watcher);
    const subjects: string[] = [];
    watcher.nats.subscribe("troupe.prompts.*", {
      callback: (_error, message) => {
        subjects.push(message.subject);
      },
    });
    await watcher.nats.flush();

    const prompt = b.runtime.bridge.sessionsPrompt({ sessionId, prompt: "stream" }, { onDelta: () => undefined });
    await until(() => a.worker.prompts.length === 1);
    a.worker.current().ctx.emit("one");
    await until(() => subjects.length === 1);
    // Messages go missing: the next one node-b sees is far ahead of the last it saw.
    watcher.nats.publish(subjects[0]!, JSON.stringify({ seq: 1_000_000, alive: true }));

    expect(await rejectionOf(prompt)).toMatchObject({ type: "TRANSPORT", details: { retryable: true, unavailable: true, nodeId: "node-a" } });
    await until(() => a.worker.cancels.length === 1);
    expect(a.worker.prompts[0]?.ctx.signal.aborted).toBe(true);
  }, 30_000);
});
