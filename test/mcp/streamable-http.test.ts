/**
 * `/mcp` on the bus: MCP's Streamable HTTP behind the bus key, driven by the official SDK client. The bus runs
 * on a test runtime (simulated clock, a controlled default agent), so that prompts last as long as a test
 * wants and idle time is the test's to move.
 */
import { describe, expect, it } from "vitest";
import { StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { createMockAgent, TOOL_NAMES } from "../../src/index.js";
import { TEST_KEY } from "../bus/support.js";
import { nextEvent, startTestRuntime } from "../support/runtime.js";
import { connectHttp, httpClient, progressLog, startMcpBus, structured } from "./support.js";

/** The rejection of a promise as the SDK's HTTP error, failing the test if it resolves or fails otherwise. */
async function httpErrorOf(promise: Promise<unknown>): Promise<StreamableHTTPError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  if (!(error instanceof StreamableHTTPError)) throw new Error(`expected a StreamableHTTPError, got ${String(error)}`);
  return error;
}

describe("/mcp (Streamable HTTP)", () => {
  it("serves the eight tools and runs a whole session with the bus key", async () => {
    const { runtime, controlled } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
    const bus = await startMcpBus(runtime);
    const { client } = await connectHttp(bus);

    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(TOOL_NAMES);
    expect(tools.map((tool) => tool.inputSchema)).toEqual(runtime.bridge.tools.map((tool) => tool.inputSchema));

    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: {} }));

    // Progress: each delta the agent streams reaches the client on the call's SSE stream, before the result.
    const progress = progressLog();
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const prompt = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "stream" } }, undefined, { onprogress: progress.onprogress });
    await started;
    const held = controlled.current();
    for (const delta of ["one ", "two"]) {
      const noted = progress.next();
      held.ctx.emit(delta);
      await noted;
    }
    held.reply({ text: "one two" });
    expect(structured(await prompt)).toMatchObject({ text: "one two", stopReason: "end_turn" });
    expect(progress.notes).toEqual([
      { progress: 4, message: "one " },
      { progress: 7, message: "two" },
    ]);
    expect(structured(await client.callTool({ name: "sessions_status", arguments: { sessionId } }))).toMatchObject({ sessionId, status: "idle" });

    // Cancel: notifications/cancelled (a second POST) aborts the call, which cancels the prompt at the agent.
    const abort = new AbortController();
    const longStarted = nextEvent(runtime, (event) => event.type === "prompt.started");
    const long = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "long" } }, undefined, { signal: abort.signal });
    const { requestId } = (await longStarted) as { requestId: string };
    const cancelled = nextEvent(runtime, (event) => event.type === "prompt.cancelled");
    abort.abort();
    await expect(long).rejects.toBeInstanceOf(McpError);
    expect(await cancelled).toMatchObject({ sessionId, requestId });
    expect(controlled.prompts[1]?.ctx.signal.aborted).toBe(true);
    expect(controlled.cancels).toEqual([{ sessionId, requestId }]);
    expect(structured(await client.callTool({ name: "sessions_status", arguments: { sessionId } }))).toMatchObject({ status: "idle", queued: 0 });

    expect(structured(await client.callTool({ name: "sessions_close", arguments: { sessionId } }))).toEqual({ closed: true, sessionId });
    const missing = await client.callTool({ name: "sessions_close", arguments: { sessionId } });
    expect(missing.isError).toBe(true);
    expect(structured(missing)).toMatchObject({ type: "NOT_FOUND", message: "Session not found" });

    const delegated = structured(await client.callTool({ name: "tasks_delegate", arguments: { agentId: "echo", prompt: "over http" } }));
    expect(delegated).toMatchObject({ text: "Echo: over http", sessionId: expect.any(String) });
  });

  it("refuses a client without the key, or with a wrong one, with 401", async () => {
    const { runtime } = await startTestRuntime();
    const bus = await startMcpBus(runtime);
    const withoutKey = httpClient(bus, {});
    const wrongKey = httpClient(bus, { "x-agent-api-key": `${TEST_KEY}-not` });

    const refused = await httpErrorOf(withoutKey.client.connect(withoutKey.transport));
    const wrong = await httpErrorOf(wrongKey.client.connect(wrongKey.transport));

    expect(refused.code).toBe(401);
    expect(refused.message).toContain('"type":"AUTH"');
    expect(wrong.code).toBe(401);
  });

  it("refuses an initialize past maxMcpSessions with 429 until a session is deleted", async () => {
    const { runtime } = await startTestRuntime();
    const bus = await startMcpBus(runtime, { maxMcpSessions: 1 });
    const first = await connectHttp(bus);
    const second = httpClient(bus);

    const refused = await httpErrorOf(second.client.connect(second.transport));
    expect(refused.code).toBe(429);
    expect(refused.message).toContain('"type":"CAPACITY"');

    await first.transport.terminateSession();
    const third = await connectHttp(bus);
    expect(structured(await third.client.callTool({ name: "bridge_health", arguments: {} }))).toMatchObject({ status: "ok" });
  });

  it("closes a session idle for mcpSessionIdleMs; its client then gets 404", async () => {
    const { runtime, clock } = await startTestRuntime();
    const bus = await startMcpBus(runtime, { maxMcpSessions: 1, mcpSessionIdleMs: 60_000 });
    const idle = await connectHttp(bus);
    await idle.client.callTool({ name: "bridge_health", arguments: {} });

    clock.increment(59_999);
    await idle.client.callTool({ name: "bridge_health", arguments: {} });
    clock.increment(60_000);

    const gone = await idle.client.callTool({ name: "bridge_health", arguments: {} }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(gone).toBeInstanceOf(StreamableHTTPError);
    expect((gone as StreamableHTTPError).code).toBe(404);
    // Its place is free again: maxMcpSessions is 1.
    await connectHttp(bus);
  });

  it("keeps a session alive while a call is in flight, however long it takes", async () => {
    const { runtime, clock, controlled } = await startTestRuntime();
    const bus = await startMcpBus(runtime, { mcpSessionIdleMs: 60_000 });
    const { client } = await connectHttp(bus);
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const call = client.callTool({ name: "tasks_delegate", arguments: { prompt: "slow" } });
    await started;

    clock.increment(10 * 60_000);
    controlled.current().reply({ text: "finally" });

    expect(structured(await call)).toMatchObject({ text: "finally" });
    expect(structured(await client.callTool({ name: "bridge_health", arguments: {} }))).toMatchObject({ status: "ok" });
  });

  it("answers an unknown session with 404, a missing one (but for an initialize) with 400, another method with 405", async () => {
    const { runtime } = await startTestRuntime();
    const bus = await startMcpBus(runtime);
    const headers = { "x-agent-api-key": TEST_KEY, accept: "application/json, text/event-stream" };

    const unknown = await fetch(`${bus.url}/mcp`, { headers: { ...headers, "mcp-session-id": "no-such-session" } });
    const anonymous = await fetch(`${bus.url}/mcp`, { method: "DELETE", headers });
    const put = await fetch(`${bus.url}/mcp`, { method: "PUT", headers });

    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, POST, DELETE");

    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ error: { type: "NOT_FOUND", message: "MCP session not found" } });
    expect(anonymous.status).toBe(400);
    expect(await anonymous.json()).toMatchObject({ error: { type: "CONFIG", details: { field: "mcp-session-id" } } });
  });

  it("answers a body that is not JSON with JSON-RPC's parse error (-32700, id null) and 400, with or without a session", async () => {
    const { runtime } = await startTestRuntime();
    const bus = await startMcpBus(runtime);
    const headers = { "x-agent-api-key": TEST_KEY, accept: "application/json, text/event-stream", "content-type": "application/json" };

    for (const sessionHeader of [{}, { "mcp-session-id": "no-such-session" }] as Array<Record<string, string>>) {
      const answer = await fetch(`${bus.url}/mcp`, { method: "POST", headers: { ...headers, ...sessionHeader }, body: '{"jsonrpc":"2.0",' });
      expect(answer.status).toBe(400);
      expect(await answer.json()).toEqual({
        jsonrpc: "2.0",
        id: null,
        error: { code: -32700, message: "Parse error: Invalid JSON", data: expect.stringMatching(/^Malformed JSON body/) },
      });
    }
    // The bridge's own routes keep troupe's envelope.
    const bridge = await fetch(`${bus.url}/bridge/bridge_health`, { method: "POST", headers, body: "{" });
    expect(await bridge.json()).toMatchObject({ error: { type: "CONFIG" } });
  });

  it("answers the calls in flight with CANCELLED when the bus stops, and does not wait for the streams clients hold", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const bus = await startMcpBus(runtime, { closeGraceMs: 600_000 });
    const { client } = await connectHttp(bus);
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const call = client.callTool({ name: "tasks_delegate", arguments: { prompt: "in flight at stop" } });
    await started;

    await bus.stop();

    const answer = await call;
    expect(answer.isError).toBe(true);
    expect(structured(answer)).toMatchObject({ type: "CANCELLED" });
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
  });
});
