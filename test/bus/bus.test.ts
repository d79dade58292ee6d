/**
 * The CommunicationBus itself: options and defaults, the key rules of SPEC §3, start and stop, the routes it
 * shares with the bridge server, agent registration, metrics and durations.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { CommunicationBus, createMemoryStore, createMockAgent, createRuntime, formatDuration, isLoopbackHost, parseDuration } from "../../src/index.js";
import { createApiKeyCheck } from "../../src/server/http-server.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { call, connect, envelope, rawConnect, register, startBus, TEST_KEY, until } from "./support.js";
import { frameText } from "../../src/protocol/frames.js";

/** `GET /health` over HTTPS, trusting `ca`. */
function httpsHealth(url: string, ca: Buffer): Promise<{ status: number | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    httpsGet(`${url}/health`, { ca }, (response) => {
      let body = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      response.on("end", () => resolve({ status: response.statusCode, body }));
    }).on("error", reject);
  });
}

async function rejectionOf(promise: Promise<unknown>): Promise<{ type?: string; message: string; details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as { type?: string; message: string };
  }
  throw new Error("expected a rejection");
}

describe("options", () => {
  it("applies the defaults of the seed's options", () => {
    const bus = new CommunicationBus({ env: {} });
    expect(bus.options).toMatchObject({
      port: 8080,
      host: "127.0.0.1",
      maxConnections: 1_000,
      heartbeatInterval: 30_000,
      messageTimeout: 300_000,
      persistenceEnabled: false,
      encryptionEnabled: false,
      apiKey: undefined,
      maxBodyBytes: 1024 * 1024,
    });
  });

  it("reads AGENT_BUS_API_KEY when apiKey is not given, and prefers apiKey", () => {
    expect(new CommunicationBus({ env: { AGENT_BUS_API_KEY: "from-env" } }).options.apiKey).toBe("from-env");
    expect(new CommunicationBus({ apiKey: "given", env: { AGENT_BUS_API_KEY: "from-env" } }).options.apiKey).toBe("given");
    expect(new CommunicationBus({ env: { AGENT_BUS_API_KEY: "" } }).options.apiKey).toBeUndefined();
  });

  it("refuses bad option values with CONFIG naming the option", () => {
    expect(() => new CommunicationBus({ maxConnections: 0 })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "maxConnections" }) }),
    );
    expect(() => new CommunicationBus({ port: 70_000 })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "port" }) }),
    );
    expect(() => new CommunicationBus({ apiKey: "" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "apiKey" }) }),
    );
  });

  it.each([
    ["localhost", true],
    ["127.0.0.1", true],
    ["127.1.2.3", true],
    ["::1", true],
    ["[::1]", true],
    ["0.0.0.0", false],
    ["::", false],
    ["10.0.0.5", false],
    ["bus.example.com", false],
  ] as const)("treats %s as loopback: %s", (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});

describe("key rules at start", () => {
  it("refuses dev-key on a non-loopback host with CONFIG, without listening", async () => {
    const bus = new CommunicationBus({ host: "0.0.0.0", port: 0, apiKey: "dev-key", env: {} });
    const error = await rejectionOf(bus.start());
    expect(error).toMatchObject({ type: "CONFIG", details: { field: "apiKey" } });
    expect(error.message).toMatch(/dev-key/);
    expect(() => bus.url).toThrow();
  });

  it("refuses a non-loopback host without any key", async () => {
    const bus = new CommunicationBus({ host: "0.0.0.0", port: 0, env: {} });
    expect(await rejectionOf(bus.start())).toMatchObject({ type: "CONFIG", details: { field: "apiKey" } });
  });

  it("accepts dev-key on loopback, and a real key anywhere", async () => {
    const local = await startBus({ apiKey: "dev-key" });
    expect((await call(local, "GET", "/agents", undefined, { "x-agent-api-key": "dev-key" })).status).toBe(200);
    const open = await startBus({ host: "0.0.0.0", apiKey: "a-real-key" });
    expect(open.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
  });

  it("keeps its store in dataDir with persistenceEnabled, and says what is missing for encryption", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "troupe-bus-data-"));
    try {
      expect(await rejectionOf(new CommunicationBus({ port: 0, encryptionEnabled: true, env: {} }).start())).toMatchObject({
        type: "CONFIG",
        details: { field: "encryptionEnabled" },
      });
      expect(await rejectionOf(new CommunicationBus({ port: 0, persistenceEnabled: true, dataDir, encryptionEnabled: true, env: {} }).start())).toMatchObject({
        type: "CONFIG",
        details: { field: "encryptionKey" },
      });
      expect(() => new CommunicationBus({ port: 0, persistenceEnabled: true, runtime: createRuntime(), env: {} })).toThrow(
        expect.objectContaining({ type: "CONFIG" }),
      );
      const bus = await startBus({ persistenceEnabled: true, dataDir, encryptionEnabled: true, env: { TROUPE_ENCRYPTION_KEY: "a passphrase of some length" } });
      expect(existsSync(join(dataDir, "troupe.db"))).toBe(true);
      await bus.stop();
      // The database was made with a key: opening it without one is CONFIG, never garbage.
      expect(await rejectionOf(new CommunicationBus({ port: 0, persistenceEnabled: true, dataDir, env: {} }).start())).toMatchObject({ type: "CONFIG" });
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("serves HTTPS and WSS with tls", async () => {
    const cert = readFileSync(new URL("../fixtures/tls/cert.pem", import.meta.url));
    const bus = await startBus({ tls: { key: readFileSync(new URL("../fixtures/tls/key.pem", import.meta.url)), cert } });
    expect(bus.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await httpsHealth(bus.url, cert);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toMatchObject({ status: "healthy" });
    for (const agentId of ["codex://secure", "codex://sender"])
      bus.registerAgent({ agent_descriptor: { agent_id: agentId, framework: "codex", capabilities: [], metadata: {} } });
    const received: string[] = [];
    const socket = new WebSocket(`${bus.url.replace("https", "wss")}/agents/connect?agent_id=${encodeURIComponent("codex://secure")}`, {
      headers: { "x-agent-api-key": TEST_KEY },
      ca: cert,
    });
    socket.on("message", (data) => received.push(JSON.parse(frameText(data)).message_id));
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    await bus.send(envelope("codex://sender", "codex://secure", { message_id: "over-tls" }));
    await until(() => received.includes("over-tls"));
    socket.close();
    // A client that does not speak TLS is a closed connection, and the server goes on.
    const plain = await fetch(bus.url.replace("https", "http") + "/health").then(
      () => "answered",
      () => "refused",
    );
    expect(plain).toBe("refused");
    expect((await httpsHealth(bus.url, cert)).status).toBe(200);
  });

  it("compares keys by digest, so keys of any length are simply refused", () => {
    const check = createApiKeyCheck("s3cret");
    expect(() => check("s3cret")).not.toThrow();
    for (const presented of ["s3cre", "s3cret!", "x".repeat(10_000), ["s3cret"], undefined, ""]) {
      expect(() => check(presented as string)).toThrow(expect.objectContaining({ type: "AUTH" }));
    }
  });
});

describe("lifecycle", () => {
  it("serves GET /health without a key and the bridge tools with one, on the same server", async () => {
    const runtime = createRuntime({ agents: [createMockAgent({ id: "echo" })], defaultAgentId: "echo" });
    await runtime.start();
    const bus = await startBus({ runtime });
    const health = await fetch(`${bus.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "healthy", uptime: expect.any(Number) });
    const delegated = await call(bus, "POST", "/bridge/tasks_delegate", { prompt: "hi" });
    expect(delegated).toMatchObject({ status: 200, body: { text: "Echo: hi" } });
    await bus.stop();
    // A runtime given to the bus is the caller's: it is still running.
    expect((await runtime.bridge.tasksDelegate({ prompt: "still" })).text).toBe("Echo: still");
    await runtime.stop();
  });

  it("refuses a second start with INTERNAL, stops once however often it is asked, and rejects a busy port with CONFIG", async () => {
    const bus = await startBus();
    expect(await rejectionOf(bus.start())).toMatchObject({ type: "INTERNAL" });
    const sameStop = bus.stop();
    expect(bus.stop()).toBe(sameStop);
    await sameStop;
    await new CommunicationBus({ env: {} }).stop();

    const first = await startBus();
    const second = new CommunicationBus({ port: first.port, host: "127.0.0.1", apiKey: TEST_KEY, env: {} });
    expect(await rejectionOf(second.start())).toMatchObject({ type: "CONFIG", details: { code: "EADDRINUSE" } });
  });

  it("refuses to send before start and after stop with INTERNAL", async () => {
    const bus = new CommunicationBus({ port: 0, apiKey: TEST_KEY, env: {} });
    expect(await rejectionOf(bus.send(envelope("codex://a", "codex://b")))).toMatchObject({ type: "INTERNAL" });
  });
});

describe("agents", () => {
  it("registers a wrapped or a bare descriptor, lists it with presence, and deregisters it", async () => {
    const bus = await startBus();
    const wrapped = await call(bus, "POST", "/agents/register", {
      agent_descriptor: { agent_id: "codex://a", framework: "codex", capabilities: ["ts"], metadata: { team: "web" } },
    });
    expect(wrapped).toEqual({
      status: 201,
      body: {
        success: true,
        agent: { agent_id: "codex://a", framework: "codex", capabilities: ["ts"], metadata: { team: "web" } },
        agent_token: expect.stringMatching(/^[\w-]{32}$/),
      },
    });
    const bare = await call(bus, "POST", "/agents/register", { agent_id: "opencode://b" });
    expect(bare.body.agent).toEqual({ agent_id: "opencode://b", framework: "opencode", capabilities: [], metadata: {} });
    await connect(bus, "codex://a");
    const listed = (await call(bus, "GET", "/agents")).body.agents;
    expect(listed).toEqual([
      expect.objectContaining({ agent_id: "codex://a", online: true, last_heartbeat: expect.any(Number), source: "registered" }),
      expect.objectContaining({ agent_id: "opencode://b", online: false, last_heartbeat: null, source: "registered" }),
    ]);
    expect((await call(bus, "DELETE", "/agents/opencode%3A%2F%2Fb")).body).toEqual({ success: true, agent_id: "opencode://b" });
    expect((await call(bus, "GET", "/agents")).body.agents).toHaveLength(1);
  });

  it("lists the runtime's agents as troupe://<id>, online while the runtime runs, with their actor's status", async () => {
    const writer = createControlledAgent("writer", ["prose"]);
    const runtime = createRuntime({ agents: [writer.agent, createMockAgent({ id: "claude-code://reviewer" })] });
    await runtime.start();
    const bus = await startBus({ runtime });
    try {
      const listed = async (agentId: string) =>
        ((await call(bus, "GET", "/agents")).body.agents as Array<{ agent_id: string }>).find((agent) => agent.agent_id === agentId);
      expect((await call(bus, "GET", "/agents")).body.agents).toEqual([
        {
          agent_id: "troupe://writer",
          framework: "troupe",
          capabilities: ["prose"],
          metadata: { name: "writer", description: "", kind: "in-process" },
          online: true,
          last_heartbeat: null,
          registered_at: null,
          source: "runtime",
          status: "ready",
        },
        expect.objectContaining({ agent_id: "claude-code://reviewer", framework: "troupe", source: "runtime", status: "ready" }),
      ]);

      const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "writer" });
      const started = new Promise<void>((resolve) => runtime.on("prompt.started", () => resolve()));
      const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "draft" });
      await started;
      expect(await listed("troupe://writer")).toMatchObject({ online: true, status: "busy" });
      writer.current().reply();
      await reply;
      expect(await listed("troupe://writer")).toMatchObject({ status: "ready" });

      // They are known recipients, but no socket may stand in for them, nor a registration.
      expect((await call(bus, "POST", "/messages/send", envelope("codex://sender", "troupe://writer", { message_type: "status_update" }))).status).toBe(202);
      expect(await (await rawConnect(bus, "troupe://writer")).closed).toMatchObject({ code: 1008 });
      expect(await call(bus, "POST", "/agents/register", { agent_id: "troupe://writer" })).toMatchObject({
        status: 400,
        body: { error: { type: "CONFIG", details: { field: "agent_id" } } },
      });
    } finally {
      await bus.stop();
      await runtime.stop();
    }
    expect(bus.listAgents().find((agent) => agent.agent_id === "troupe://writer")).toMatchObject({ online: false, status: "offline" });
  });

  it("reports a remote agent's status from its actor: offline until its socket connects, ready while connected, gone once deregistered", async () => {
    const bus = await startBus();
    const statusOf = async (agentId: string) =>
      ((await call(bus, "GET", "/agents")).body.agents as Array<{ agent_id: string; status: string }>).find((agent) => agent.agent_id === agentId)?.status;
    await register(bus, "codex://a");
    expect(await statusOf("codex://a")).toBe("offline");
    const agent = await connect(bus, "codex://a");
    expect(await statusOf("codex://a")).toBe("ready");
    await agent.client.close();
    await until(() => bus.listAgents().some((listed) => listed.agent_id === "codex://a" && !listed.online));
    expect(await statusOf("codex://a")).toBe("offline");
    await call(bus, "DELETE", "/agents/codex%3A%2F%2Fa");
    expect(await statusOf("codex://a")).toBeUndefined();
  });

  it("brings an agent that registers while connected (as a workflow participant) online at once", async () => {
    const bus = await startBus();
    bus.sessionManager.createSession(
      "claude-code://lead",
      [{ agent_id: "codex://web", role: "implementer" }],
      [{ name: "build", required_agents: ["codex://web"] }],
    );
    await connect(bus, "codex://web");
    expect(bus.listAgents().find((agent) => agent.agent_id === "codex://web")).toMatchObject({ source: "participant", online: true, status: "ready" });
    await register(bus, "codex://web");
    expect(bus.listAgents().find((agent) => agent.agent_id === "codex://web")).toMatchObject({ source: "registered", online: true, status: "ready" });
  });
});

describe("metrics", () => {
  it("counts messages by status and in total, sessions, agents, and acknowledgement latency", async () => {
    const bus = await startBus();
    await register(bus, "codex://a", "codex://b", "codex://c");
    await connect(bus, "codex://b");
    for (let index = 0; index < 5; index += 1) await bus.send(envelope("codex://a", "codex://b"));
    await bus.send(envelope("codex://a", "codex://c"));
    bus.sessionManager.createSession("codex://a", [], [{ name: "one", required_agents: [] }]);
    await until(() => bus.metricsSnapshot().messages.acknowledged_total === 5);
    const metrics = (await call(bus, "GET", "/metrics")).body;
    expect(metrics).toMatchObject({
      uptime: expect.any(Number),
      messages: {
        by_status: { accepted: 0, queued: 1, delivered: 0, acknowledged: 5, retrying: 0, dead: 0 },
        accepted_total: 6,
        acknowledged_total: 5,
        dead_total: 0,
        retries_total: 0,
        duplicates_total: 0,
      },
      sessions: { total: 1, active: 1, completed: 0, terminated: 0 },
      agents: { known: 3, online: 1, connections: 1 },
    });
    const latency = metrics.latency_ms.accepted_to_acknowledged;
    expect(latency.samples).toBe(5);
    expect(latency.p50).toBeLessThanOrEqual(latency.p95);
    expect(latency.p95).toBeLessThanOrEqual(latency.p99);
    expect(latency.p99).toBeLessThanOrEqual(latency.max);
  });
});

describe("durations", () => {
  it.each([
    ["1500ms", 1_500],
    ["300s", 300_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["0.5s", 500],
  ] as const)("parses %s as %i ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "5", "5x", "-5s", "0s", "5 m", "1.s", "1000h", "five minutes"])("refuses %j with CONFIG", (text) => {
    expect(() => parseDuration(text, "routing.timeout")).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "routing.timeout" }) }),
    );
  });

  it("writes milliseconds back as a duration", () => {
    expect(formatDuration(300_000)).toBe("300000ms");
    expect(parseDuration(formatDuration(1_234))).toBe(1_234);
  });
});

describe("what the bus writes to its runtime's store", () => {
  it("writes nothing to the memory store a runtime makes for itself, and every message to a store it was given", async () => {
    const sendOne = async (runtime: ReturnType<typeof createRuntime>): Promise<number> => {
      await runtime.start();
      const bus = await startBus({ runtime });
      await register(bus, "codex://from", "codex://to");
      await bus.send(envelope("codex://from", "codex://to", { message_id: "kept-or-not" }));
      const kept = (await runtime.store.list("messages")).length + (await runtime.store.list("agents")).length;
      await bus.stop();
      await runtime.stop();
      return kept;
    };
    // Nothing could be restored from a store that dies with the process: writing to it would only cost.
    expect(await sendOne(createRuntime())).toBe(0);
    expect(await sendOne(createRuntime({ store: createMemoryStore() }))).toBe(3);
  });
});
