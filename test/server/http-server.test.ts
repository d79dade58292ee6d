import { once } from "node:events";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import type { Clock } from "../../src/clock.js";
import { createMockAgent } from "../../src/agents/mock-agent.js";
import { createRuntime, type Runtime } from "../../src/runtime/runtime.js";
import { startHttpServer, type HttpServer, type HttpServerOptions } from "../../src/server/http-server.js";

const running: { runtime: Runtime; server: HttpServer }[] = [];

afterEach(async () => {
  for (const { runtime, server } of running.splice(0)) {
    await server.close();
    await runtime.stop();
  }
});

async function startServer(options: HttpServerOptions = {}): Promise<HttpServer> {
  const agents = [createMockAgent({ id: "echo", capabilities: ["chat"] }), createMockAgent({ id: "sleeper", script: () => ({ hang: true }) })];
  const runtime = createRuntime({ agents, defaultAgentId: "echo" });
  await runtime.start();
  const server = await startHttpServer(runtime, { host: "127.0.0.1", port: 0, ...options });
  running.push({ runtime, server });
  return server;
}

interface Answer {
  status: number;
  /** The parsed JSON; its shape is what the tests assert, so it is left untyped. */
  body: any;
}

async function post(server: HttpServer, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${server.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" || body === undefined ? body : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

async function get(server: HttpServer, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await fetch(`${server.url}${path}`, { headers });
  return { status: response.status, body: await response.json() };
}

describe("GET /health", () => {
  it("answers healthy with the uptime and the bridge's health, without a key", async () => {
    const server = await startServer({ apiKey: "secret" });
    const { status, body } = await get(server, "/health");
    expect(status).toBe(200);
    expect(body).toMatchObject({ status: "healthy", bridge: { status: "ok", agents: 2 } });
    expect(typeof body.uptime).toBe("number");
  });
});

describe("POST /bridge/:tool", () => {
  it("answers every one of the eight tools", async () => {
    const server = await startServer();

    const health = await post(server, "/bridge/bridge_health");
    expect(health).toMatchObject({ status: 200, body: { status: "ok", executors: ["in-process", "worker"] } });

    const discovered = await post(server, "/bridge/agents_discover", { capability: "chat" });
    expect(discovered.status).toBe(200);
    expect(discovered.body.agents.map((agent: { id: string }) => agent.id)).toEqual(["echo"]);

    const created = await post(server, "/bridge/sessions_create", {});
    expect(created).toMatchObject({ status: 200, body: { agentId: "echo", status: "active" } });
    const { sessionId } = created.body;

    const prompted = await post(server, "/bridge/sessions_prompt", { sessionId, prompt: "hello", requestId: "r1" });
    expect(prompted).toMatchObject({ status: 200, body: { text: "Echo: hello", stopReason: "end_turn", requestId: "r1" } });

    const status = await post(server, "/bridge/sessions_status", { sessionId });
    expect(status).toMatchObject({ status: 200, body: { sessionId, status: "idle", queued: 0 } });

    const cancelled = await post(server, "/bridge/sessions_cancel", { sessionId, requestId: "unknown" });
    expect(cancelled).toMatchObject({ status: 404, body: { error: { type: "NOT_FOUND" } } });

    const closed = await post(server, "/bridge/sessions_close", { sessionId });
    expect(closed).toEqual({ status: 200, body: { closed: true, sessionId } });

    const gone = await post(server, "/bridge/sessions_status", { sessionId });
    expect(gone).toMatchObject({ status: 404, body: { error: { type: "NOT_FOUND", message: "Session not found" } } });

    const delegated = await post(server, "/bridge/tasks_delegate", { prompt: "one shot" });
    expect(delegated).toMatchObject({ status: 200, body: { text: "Echo: one shot", stopReason: "end_turn" } });
    expect(typeof delegated.body.sessionId).toBe("string");
  });

  it("cancels an in-flight prompt sent over another request", async () => {
    const server = await startServer();
    const { body: session } = await post(server, "/bridge/sessions_create", { agentId: "sleeper" });
    const prompt = post(server, "/bridge/sessions_prompt", { sessionId: session.sessionId, prompt: "wait", requestId: "slow" });
    await expect.poll(async () => (await post(server, "/bridge/sessions_status", { sessionId: session.sessionId })).body.status).toBe("busy");
    const cancel = await post(server, "/bridge/sessions_cancel", { sessionId: session.sessionId });
    expect(cancel).toEqual({ status: 200, body: { cancelled: true, sessionId: session.sessionId, requestId: "slow" } });
    expect(await prompt).toMatchObject({ status: 409, body: { error: { type: "CANCELLED" } } });
  });

  it("cancels a prompt whose client went away before its answer, and the session takes the next one", async () => {
    const server = await startServer();
    const { body: session } = await post(server, "/bridge/sessions_create", { agentId: "sleeper" });
    const client = new AbortController();
    const prompt = fetch(`${server.url}/bridge/sessions_prompt`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sessionId: session.sessionId, prompt: "wait", requestId: "gone" }),
      signal: client.signal,
    });
    await expect.poll(async () => (await post(server, "/bridge/sessions_status", { sessionId: session.sessionId })).body.status).toBe("busy");
    client.abort();
    await expect(prompt).rejects.toThrow();
    await expect.poll(async () => (await post(server, "/bridge/sessions_status", { sessionId: session.sessionId })).body.status).toBe("idle");
    // Nothing to cancel any more: the prompt ended with its client.
    expect((await post(server, "/bridge/sessions_cancel", { sessionId: session.sessionId })).body).toMatchObject({
      error: { type: "NOT_FOUND", message: "No prompt in flight" },
    });
  });

  it("treats an empty body as {}", async () => {
    const server = await startServer();
    const response = await fetch(`${server.url}/bridge/sessions_create`, { method: "POST" });
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ agentId: "echo", status: "active" });
  });

  it("accepts JSON sent with another content type", async () => {
    const server = await startServer();
    const { status } = await post(server, "/bridge/bridge_health", "{}", { "content-type": "text/plain" });
    expect(status).toBe(200);
  });

  it("answers malformed JSON with 400 CONFIG", async () => {
    const server = await startServer();
    const { status, body } = await post(server, "/bridge/sessions_create", "{not json");
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ type: "CONFIG", details: { retryable: false } });
    expect(body.error.message).toMatch(/^Malformed JSON body/);
  });

  it("answers a schema error with 400 CONFIG naming the field", async () => {
    const server = await startServer();
    const { status, body } = await post(server, "/bridge/sessions_prompt", { sessionId: "s", prompt: 42 });
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ type: "CONFIG", details: { field: "prompt" } });
    expect(body.error.message).toMatch(/^prompt: /);
  });

  it("answers a body over maxBodyBytes with 413 without reading all of it", async () => {
    const server = await startServer();
    const prompt = "x".repeat(2 * 1024 * 1024);
    const { status, body } = await post(server, "/bridge/tasks_delegate", { prompt });
    expect(status).toBe(413);
    expect(body.error).toMatchObject({ type: "CONFIG", details: { limitBytes: 1024 * 1024 } });
  });

  it("answers a streamed body that grows past maxBodyBytes with 413", async () => {
    const server = await startServer({ maxBodyBytes: 1024 });
    const chunk = new TextEncoder().encode("x".repeat(512));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let index = 0; index < 8; index += 1) controller.enqueue(chunk);
        controller.close();
      },
    });
    const response = await fetch(`${server.url}/bridge/bridge_health`, { method: "POST", body: stream, duplex: "half" });
    expect(response.status).toBe(413);
    expect(response.headers.get("connection")).toBe("close");
  });

  it("answers a body still trickling in bodyTimeoutMs after its route began to read it with 408, and closes the connection", async () => {
    const bodyTimeoutMs = 30_000;
    // The simulated clock, telling the test when the body's deadline is set (the route has begun to read).
    const simulated = new SimulatedClock();
    let deadlineSet!: () => void;
    const reading = new Promise<void>((resolve) => (deadlineSet = resolve));
    const clock: Clock = {
      now: () => simulated.now(),
      setTimeout: (callback, delayMs) => {
        if (delayMs === bodyTimeoutMs) deadlineSet();
        return simulated.setTimeout(callback, delayMs);
      },
      clearTimeout: (handle) => simulated.clearTimeout(handle as number),
    };
    const runtime = createRuntime({ agents: [createMockAgent({ id: "echo" })], defaultAgentId: "echo", clock });
    await runtime.start();
    const server = await startHttpServer(runtime, { host: "127.0.0.1", port: 0, bodyTimeoutMs });
    running.push({ runtime, server });

    const socket = connect(server.port, "127.0.0.1");
    let received = "";
    socket.on("data", (data: Buffer) => (received += data.toString()));
    const closed = once(socket, "close");
    socket.write("POST /bridge/bridge_health HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
    await reading;
    // A byte every so often does not move the deadline: the body as a whole must arrive in time.
    simulated.increment(bodyTimeoutMs - 1);
    socket.write(" ");
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(received).toBe("");
    simulated.increment(1);
    await closed;
    expect(received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(received.toLowerCase()).toContain("connection: close");
    expect(JSON.parse(received.slice(received.indexOf("\r\n\r\n") + 4)).error).toMatchObject({ type: "TIMEOUT", details: { bodyTimeoutMs } });
  });

  it("answers an unknown tool with 404 NOT_FOUND", async () => {
    const server = await startServer();
    const { status, body } = await post(server, "/bridge/sessions_destroy", {});
    expect(status).toBe(404);
    expect(body.error).toMatchObject({ type: "NOT_FOUND", message: "Unknown tool: sessions_destroy" });
  });
});

describe("routing", () => {
  it("answers an unknown route with 404", async () => {
    const server = await startServer();
    const { status, body } = await get(server, "/nowhere");
    expect(status).toBe(404);
    expect(body.error.type).toBe("NOT_FOUND");
  });

  it("answers a wrong method with 405 and the allowed one", async () => {
    const server = await startServer();
    const response = await fetch(`${server.url}/bridge/bridge_health`);
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
    expect(await response.json()).toMatchObject({ error: { type: "CONFIG", details: { allow: ["POST"] } } });
  });
});

describe("API key", () => {
  it("refuses a request without the key with 401 AUTH", async () => {
    const server = await startServer({ apiKey: "secret" });
    const { status, body } = await post(server, "/bridge/bridge_health", {});
    expect(status).toBe(401);
    expect(body.error).toMatchObject({ type: "AUTH", message: "Missing x-agent-api-key header" });
  });

  it("refuses a wrong key with 401 AUTH", async () => {
    const server = await startServer({ apiKey: "secret" });
    const { status, body } = await post(server, "/bridge/bridge_health", {}, { "x-agent-api-key": "secreT" });
    expect(status).toBe(401);
    expect(body.error).toMatchObject({ type: "AUTH", message: "Invalid API key" });
  });

  it("accepts the right key", async () => {
    const server = await startServer({ apiKey: "secret" });
    const { status, body } = await post(server, "/bridge/bridge_health", {}, { "x-agent-api-key": "secret" });
    expect(status).toBe(200);
    expect(body.status).toBe("ok");
  });

  it("asks for the key before saying a route does not exist", async () => {
    const server = await startServer({ apiKey: "secret" });
    expect((await get(server, "/nowhere")).status).toBe(401);
    expect((await get(server, "/nowhere", { "x-agent-api-key": "secret" })).status).toBe(404);
  });

  it("refuses an empty key at start with CONFIG", async () => {
    const runtime = createRuntime();
    await expect(startHttpServer(runtime, { port: 0, apiKey: "" })).rejects.toMatchObject({ type: "CONFIG" });
  });
});

describe("robustness", () => {
  it("keeps serving after bad input of every kind", async () => {
    const server = await startServer({ apiKey: "secret" });
    const key = { "x-agent-api-key": "secret" };
    const answers = await Promise.all([
      post(server, "/bridge/sessions_create", "{", key),
      post(server, "/bridge/sessions_create", "[1, 2]", key),
      post(server, "/bridge/sessions_create", "null", key),
      post(server, "/bridge/sessions_create", '"text"', key),
      post(server, "/bridge/sessions_prompt", { sessionId: "nope", prompt: "hi" }, key),
      post(server, "/bridge/sessions_create", { agentId: "nobody" }, key),
      post(server, "/bridge/%E0%A4%A", {}, key),
      post(server, "/bridge/tasks_delegate", { prompt: "x".repeat(2 * 1024 * 1024) }, key),
      post(server, "/bridge/bridge_health", {}),
      get(server, "/../../etc/passwd", key),
    ]);
    expect(answers.map((answer) => answer.status)).toEqual([400, 400, 200, 400, 404, 404, 404, 413, 401, 404]);
    const { status } = await post(server, "/bridge/tasks_delegate", { prompt: "still there?" }, key);
    expect(status).toBe(200);
    expect((await get(server, "/health")).status).toBe(200);
  });

  it("cuts requests still in flight when close() has waited closeGraceMs", async () => {
    const server = await startServer({ closeGraceMs: 50 });
    const { body: session } = await post(server, "/bridge/sessions_create", { agentId: "sleeper" });
    const prompt = fetch(`${server.url}/bridge/sessions_prompt`, {
      method: "POST",
      body: JSON.stringify({ sessionId: session.sessionId, prompt: "forever" }),
    });
    await expect.poll(async () => (await post(server, "/bridge/sessions_status", { sessionId: session.sessionId })).body.status).toBe("busy");
    await server.close();
    await expect(prompt).rejects.toThrow();
  });

  it("reports the port it picked and a URL to reach it", async () => {
    const server = await startServer();
    expect(server.port).toBeGreaterThan(0);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`);
  });

  it("rejects a port in use with CONFIG", async () => {
    const server = await startServer();
    const runtime = createRuntime();
    await expect(startHttpServer(runtime, { host: "127.0.0.1", port: server.port })).rejects.toMatchObject({
      type: "CONFIG",
      details: { code: "EADDRINUSE" },
    });
  });
});

describe("a request that fails with an internal error", () => {
  it("answers 500 with the message and no stack, and publishes server.error with the stack for the operator's log", async () => {
    const runtime = createRuntime({ agents: [createMockAgent({ id: "echo" })] });
    await runtime.start();
    const server = await startHttpServer(runtime, {
      host: "127.0.0.1",
      port: 0,
      routes: [
        {
          method: "GET",
          path: /^\/boom$/,
          handle: () => {
            throw new TypeError("cannot read the thing");
          },
        },
      ],
    });
    running.push({ runtime, server });
    const seen: unknown[] = [];
    runtime.on("server.error", (event) => seen.push(event));
    const response = await fetch(`${server.url}/boom?secret=1`);
    expect(response.status).toBe(500);
    const body = (await response.json()) as { error: { type: string; message: string; stack?: string } };
    expect(body.error).toMatchObject({ type: "INTERNAL", message: "cannot read the thing" });
    expect(JSON.stringify(body)).not.toMatch(/at .*http-server/);
    expect(seen).toEqual([
      expect.objectContaining({
        type: "server.error",
        method: "GET",
        path: "/boom",
        message: "cannot read the thing",
        stack: expect.stringMatching(/TypeError: cannot read the thing\n\s+at /),
      }),
    ]);
    // A client error is the client's: no server.error.
    expect((await fetch(`${server.url}/nowhere`)).status).toBe(404);
    expect(seen).toHaveLength(1);
  });
});
