/**
 * `serveMcp` in process, through the SDK's in-memory transport pair: the tools and their schemas, results and
 * error results, cancellation (`notifications/cancelled`) reaching the agent, and progress while a prompt streams.
 */
import { describe, expect, it } from "vitest";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { createMockAgent, TOOL_NAMES } from "../../src/index.js";
import { nextEvent, settle, startTestRuntime } from "../support/runtime.js";
import { connectInMemory, progressLog, structured } from "./support.js";

describe("serveMcp", () => {
  it("lists the eight bridge tools with the bridge's own input schemas", async () => {
    const { runtime } = await startTestRuntime();
    const { client } = await connectInMemory(runtime);

    const { tools } = await client.listTools();

    expect(tools.map((tool) => tool.name)).toEqual(TOOL_NAMES);
    expect(tools).toEqual(runtime.bridge.tools.map(({ name, description, inputSchema }) => ({ name, description, inputSchema })));
    expect(tools.find((tool) => tool.name === "sessions_prompt")?.inputSchema).toMatchObject({
      type: "object",
      required: ["sessionId", "prompt"],
      additionalProperties: false,
    });
  });

  it("answers a call with the result as JSON text and as structuredContent", async () => {
    const { runtime } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
    const { client } = await connectInMemory(runtime);

    const reply = structured(await client.callTool({ name: "tasks_delegate", arguments: { agentId: "echo", prompt: "hi there" } }));

    expect(reply).toMatchObject({ text: "Echo: hi there", stopReason: "end_turn", sessionId: expect.any(String), requestId: expect.any(String) });
    expect(runtime.hasSession(reply.sessionId)).toBe(false);
  });

  it("answers a failed call with an isError result carrying { type, message, details }", async () => {
    const { runtime } = await startTestRuntime();
    const { client } = await connectInMemory(runtime);

    const missing = await client.callTool({ name: "sessions_status", arguments: { sessionId: "no-such-session" } });
    const invalid = await client.callTool({ name: "sessions_prompt", arguments: { sessionId: "s", prompt: 42 } });
    const unknown = await client.callTool({ name: "sessions_explode", arguments: {} });

    expect(missing.isError).toBe(true);
    expect(structured(missing)).toEqual({
      type: "NOT_FOUND",
      message: "Session not found",
      details: { retryable: false, sessionValid: false, sessionId: "no-such-session" },
    });
    expect(invalid.isError).toBe(true);
    expect(structured(invalid)).toMatchObject({ type: "CONFIG", message: expect.stringMatching(/^prompt: /), details: { field: "prompt" } });
    expect(structured(unknown)).toMatchObject({ type: "NOT_FOUND", message: "Unknown tool: sessions_explode" });
  });

  it("cancels the prompt in flight through sessions_cancel when the client cancels the call", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client, received } = await connectInMemory(runtime);
    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: {} }));
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const abort = new AbortController();

    const call = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "a long one" } }, undefined, { signal: abort.signal });
    const { requestId } = (await started) as { requestId: string };
    const cancelled = nextEvent(runtime, (event) => event.type === "prompt.cancelled");
    const receivedBefore = received.length;
    abort.abort("the user pressed stop");

    await expect(call).rejects.toBeInstanceOf(McpError);
    expect(await cancelled).toMatchObject({ sessionId, requestId });
    await settle();
    // The SDK answers nothing to a cancelled request.
    expect(received.slice(receivedBefore)).toEqual([]);
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
    expect(controlled.cancels).toEqual([{ sessionId, requestId }]);
    expect(structured(await client.callTool({ name: "sessions_status", arguments: { sessionId } }))).toMatchObject({ status: "idle", queued: 0 });
  });

  it("cancels a queued prompt without touching the one in flight", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client } = await connectInMemory(runtime);
    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: {} }));
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const first = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "first" } });
    await started;
    const abort = new AbortController();
    const second = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "second", requestId: "second" } }, undefined, {
      signal: abort.signal,
    });
    const queued = await (async () => {
      for (;;) {
        const status = structured(await client.callTool({ name: "sessions_status", arguments: { sessionId } }));
        if (status.queued === 1) return status;
      }
    })();
    expect(queued.status).toBe("busy");

    const cancelled = nextEvent(runtime, (event) => event.type === "prompt.cancelled");
    abort.abort();
    await expect(second).rejects.toBeInstanceOf(McpError);
    expect(await cancelled).toMatchObject({ requestId: "second" });
    controlled.current().reply({ text: "first answer" });

    expect(structured(await first)).toMatchObject({ text: "first answer" });
    expect(controlled.prompts.map((held) => held.ctx.prompt)).toEqual(["first"]);
  });

  it("cancels a delegated task's prompt and still closes its session", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client } = await connectInMemory(runtime);
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const abort = new AbortController();

    const call = client.callTool({ name: "tasks_delegate", arguments: { prompt: "delegated" } }, undefined, { signal: abort.signal });
    const { sessionId } = (await started) as { sessionId: string };
    const closed = nextEvent(runtime, (event) => event.type === "actor.stopped" && event.actorId === sessionId);
    abort.abort();

    await expect(call).rejects.toBeInstanceOf(McpError);
    await closed;
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
    expect(controlled.cancels).toEqual([{ sessionId, requestId: expect.any(String) }]);
    expect(controlled.closes).toEqual([{ sessionId, reason: "closed" }]);
    expect(runtime.hasSession(sessionId)).toBe(false);
  });

  it("cancels the calls in flight when the client disconnects", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client } = await connectInMemory(runtime);
    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: {} }));
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const call = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "orphan" } });
    await started;
    const cancelled = nextEvent(runtime, (event) => event.type === "prompt.cancelled");

    await client.close();

    await expect(call).rejects.toThrow(/Connection closed/);
    expect(await cancelled).toMatchObject({ sessionId });
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
  });

  it("answers the calls in flight with CANCELLED when the server closes, then ends the connection", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client, service } = await connectInMemory(runtime);
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const call = client.callTool({ name: "tasks_delegate", arguments: { prompt: "at shutdown" } });
    await started;

    await service.close();

    const answer = await call;
    expect(answer.isError).toBe(true);
    expect(structured(answer)).toMatchObject({ type: "CANCELLED" });
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
    await service.closed;
  });

  it("sends the streamed text as progress notifications, in order, before the result", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client } = await connectInMemory(runtime);
    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: {} }));
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");
    const progress = progressLog();

    const call = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "stream" } }, undefined, { onprogress: progress.onprogress });
    await started;
    const held = controlled.current();
    for (const delta of ["Hel", "lo, ", "world"]) {
      const noted = progress.next();
      held.ctx.emit(delta);
      await noted;
    }
    held.ctx.emit("!");
    held.reply({ text: "Hello, world!" });

    expect(structured(await call)).toMatchObject({ text: "Hello, world!" });
    expect(progress.notes).toEqual([
      { progress: 3, message: "Hel" },
      { progress: 7, message: "lo, " },
      { progress: 12, message: "world" },
      { progress: 13, message: "!" },
    ]);
  });

  it("gathers the deltas of one turn into one notification", async () => {
    const { runtime } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
    const { client } = await connectInMemory(runtime);
    const progress = progressLog();

    await client.callTool({ name: "tasks_delegate", arguments: { agentId: "echo", prompt: "one two three four" } }, undefined, {
      onprogress: progress.onprogress,
    });

    expect(progress.notes).toEqual([{ progress: 24, message: "Echo: one two three four" }]);
  });

  it("sends no progress notification to a call without a progressToken", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { client, received } = await connectInMemory(runtime);
    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: {} }));
    const started = nextEvent(runtime, (event) => event.type === "prompt.started");

    const call = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "quiet" } });
    await started;
    controlled.current().ctx.emit("unheard");
    controlled.current().reply({ text: "unheard" });
    await call;

    expect(received.filter((message) => "method" in message && message.method === "notifications/progress")).toEqual([]);
  });
});
