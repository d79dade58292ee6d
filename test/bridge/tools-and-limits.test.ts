import { describe, expect, it } from "vitest";
import { BridgeError, createMockAgent, createRuntime, TOOL_NAMES, VERSION } from "../../src/index.js";
import { rejectionOf, settle, startTestRuntime } from "../support/runtime.js";

describe("bridge tools (SPEC §2.1)", () => {
  it("lists the eight tools with JSON Schemas of their arguments", async () => {
    const { runtime } = await startTestRuntime();
    expect(runtime.bridge.tools.map((tool) => tool.name)).toEqual([
      "bridge_health",
      "agents_discover",
      "sessions_create",
      "sessions_prompt",
      "sessions_status",
      "sessions_close",
      "sessions_cancel",
      "tasks_delegate",
    ]);
    expect(TOOL_NAMES).toHaveLength(8);
    const prompt = runtime.bridge.tools.find((tool) => tool.name === "sessions_prompt");
    expect(prompt?.description).toMatch(/prompt/);
    expect(prompt?.inputSchema).toMatchObject({
      type: "object",
      required: ["sessionId", "prompt"],
      additionalProperties: false,
      properties: { runtimeParams: { properties: { temperature: { minimum: 0, maximum: 2 } } } },
    });
  });

  it("answers the same through call(snake_case) as through the typed method", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.call("sessions_create", { agentId: "controlled" });
    const viaCall = runtime.bridge.call("sessions_prompt", { sessionId, prompt: "p", requestId: "r" });
    await settle();
    controlled.current().reply({ text: "t" });
    expect(await viaCall).toEqual({ text: "t", stopReason: "end_turn", requestId: "r" });
    expect(await runtime.bridge.call("sessions_status", { sessionId })).toEqual(await runtime.bridge.sessionsStatus({ sessionId }));
  });

  it("reports health: version, executors, session counts by status and capacity", async () => {
    const { runtime, clock, controlled } = await startTestRuntime({ maxSessions: 10 });
    clock.increment(1_500);
    const a = await runtime.bridge.sessionsCreate({});
    await runtime.bridge.sessionsCreate({});
    runtime.bridge.sessionsPrompt({ sessionId: a.sessionId, prompt: "x" }).catch(() => undefined);
    await settle();
    expect(await runtime.bridge.health()).toEqual({
      status: "ok",
      version: VERSION,
      uptimeMs: 1_500,
      executors: ["in-process", "worker", "probe"],
      sessions: { total: 2, active: 1, busy: 1, idle: 0, failed: 0, capacity: 10 },
      agents: 1,
    });
    controlled.current().reply();
  });

  it("discovers agents, their status and providers, filtered by capability", async () => {
    const { runtime } = await startTestRuntime({
      agents: [createMockAgent({ id: "coder", name: "Coder", description: "Writes code", capabilities: ["code", "chat"] })],
    });
    const all = await runtime.bridge.agentsDiscover();
    expect(all.agents.map((agent) => agent.id)).toEqual(["controlled", "coder"]);
    expect(await runtime.bridge.agentsDiscover({ capability: "code" })).toEqual({
      agents: [
        {
          id: "coder",
          name: "Coder",
          description: "Writes code",
          capabilities: ["code", "chat"],
          status: "ready",
          providers: [{ id: "mock", models: ["mock-1"] }],
          defaultProvider: "mock",
        },
      ],
    });
    expect((await runtime.bridge.agentsDiscover({ capability: "nothing" })).agents).toEqual([]);
  });

  it("shows an agent busy while one of its prompts runs", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
    await settle();
    expect((await runtime.bridge.agentsDiscover()).agents[0]?.status).toBe("busy");
    controlled.current().reply();
    await reply;
    expect((await runtime.bridge.agentsDiscover()).agents[0]?.status).toBe("ready");
  });

  it("opens the agent's side of a session with onSessionOpen, getting the metadata", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { team: "a", runtimeParams: { temperature: 0 } } });
    expect(controlled.opened).toEqual([{ sessionId, agentId: "controlled", metadata: { team: "a", runtimeParams: { temperature: 0 } } }]);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).provider).toBeUndefined();
  });

  it("binds a session to a provider the agent lists, and refuses one it does not list with CONFIG before any session exists", async () => {
    const { runtime, controlled } = await startTestRuntime({ agents: [createMockAgent({ id: "coder" })] });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "coder", metadata: { provider: "mock" } });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).provider).toBe("mock");

    const unknown = await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "coder", metadata: { provider: "openai" } }));
    expect(unknown).toMatchObject({
      type: "CONFIG",
      message: "metadata.provider: no provider openai is registered with agent coder (registered: mock)",
      details: { field: "metadata.provider", provider: "openai", retryable: false },
    });
    // An agent without providers cannot bind a session to one either.
    const none = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "controlled", prompt: "x", metadata: { provider: "mock" } }));
    expect(none).toMatchObject({ type: "CONFIG", message: "metadata.provider: no provider mock is registered with agent controlled (it lists no providers)" });
    expect(controlled.opened).toEqual([]);
    expect((await runtime.bridge.health()).sessions.total).toBe(1);
  });

  it("merges session runtimeParams under the prompt's own", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({
      metadata: { runtimeParams: { temperature: 0.7, maxTokens: 100, providerSpecific: { a: 1 } } },
    });
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x", runtimeParams: { temperature: 0.2, providerSpecific: { b: 2 } } });
    await settle();
    expect(controlled.current().ctx.runtimeParams).toEqual({ temperature: 0.2, maxTokens: 100, providerSpecific: { a: 1, b: 2 } });
    controlled.current().reply();
    await reply;
  });

  describe("tasks_delegate", () => {
    it("creates a session, prompts it and closes it", async () => {
      const { runtime } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
      const result = await runtime.bridge.tasksDelegate({ agentId: "echo", prompt: "Summarize this" });
      expect(result).toEqual({
        sessionId: expect.any(String),
        text: "Echo: Summarize this",
        stopReason: "end_turn",
        requestId: expect.any(String),
        usage: { inputTokens: 2, outputTokens: 3 },
      });
      expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId: result.sessionId }))).toMatchObject({ type: "NOT_FOUND" });
    });

    it("closes its session even when the prompt fails", async () => {
      const { runtime, controlled } = await startTestRuntime();
      const delegated = runtime.bridge.tasksDelegate({ prompt: "x" });
      await settle();
      controlled.current().fail("UPSTREAM", "rate limited");
      expect(await rejectionOf(delegated)).toMatchObject({ type: "UPSTREAM", message: "rate limited" });
      await settle();
      expect(controlled.closes).toEqual([{ sessionId: controlled.opened[0]?.sessionId, reason: "closed" }]);
      expect((await runtime.bridge.health()).sessions.total).toBe(0);
    });
  });
});

describe("errors and limits (SPEC §2.3)", () => {
  it("is a BridgeError with type, message and details.retryable / details.sessionValid", async () => {
    const { runtime } = await startTestRuntime();
    const error = await rejectionOf(runtime.bridge.sessionsStatus({ sessionId: "missing" }));
    expect(error).toBeInstanceOf(BridgeError);
    expect(error).toBeInstanceOf(Error);
    expect((error as BridgeError).toJSON()).toEqual({
      type: "NOT_FOUND",
      message: "Session not found",
      details: { retryable: false, sessionValid: false, sessionId: "missing" },
    });
  });

  it("answers an unknown agentId with NOT_FOUND", async () => {
    const { runtime } = await startTestRuntime();
    expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "ghost" }))).toMatchObject({ type: "NOT_FOUND", message: "Agent not found: ghost" });
  });

  it("answers an unknown tool name with NOT_FOUND", async () => {
    const { runtime } = await startTestRuntime();
    expect(await rejectionOf(runtime.bridge.call("sessions_explode", {}))).toMatchObject({ type: "NOT_FOUND", message: "Unknown tool: sessions_explode" });
  });

  it.each([
    ["sessions_prompt", { prompt: "x" }, "sessionId"],
    ["sessions_prompt", { sessionId: 42, prompt: "x" }, "sessionId"],
    ["sessions_prompt", { sessionId: "s", prompt: ["x"] }, "prompt"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", runtimeParams: { temperature: 3 } }, "runtimeParams.temperature"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", runtimeParams: { maxTokens: 1.5 } }, "runtimeParams.maxTokens"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", runtimeParams: { topP: -0.1 } }, "runtimeParams.topP"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", runtimeParams: { topK: 0 } }, "runtimeParams.topK"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", runtimeParams: { stopSequences: "END" } }, "runtimeParams.stopSequences"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", runtimeParams: { temprature: 1 } }, "runtimeParams.temprature"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", timeout: -5 }, "timeout"],
    ["sessions_prompt", { sessionId: "s", prompt: "x", timeout: 3_000_000_000 }, "timeout"],
    ["sessions_status", {}, "sessionId"],
    ["sessions_create", { metadata: "team-a" }, "metadata"],
    ["sessions_create", { metadata: { provider: 7 } }, "metadata.provider"],
    ["sessions_create", { agent: "x" }, "agent"],
    ["sessions_cancel", { sessionId: "s", requestId: "" }, "requestId"],
    ["tasks_delegate", { agentId: "controlled" }, "prompt"],
    ["agents_discover", { capability: 3 }, "capability"],
  ])("answers bad arguments to %s (%j) with CONFIG naming %s", async (tool, args, field) => {
    const { runtime } = await startTestRuntime();
    const error = await rejectionOf(runtime.bridge.call(tool, args));
    expect(error).toMatchObject({ type: "CONFIG", details: { field, retryable: false } });
    expect(error.message.startsWith(`${field}: `)).toBe(true);
  });

  it("names every unknown key as its own issue", async () => {
    const { runtime } = await startTestRuntime();
    const error = await rejectionOf(runtime.bridge.call("sessions_create", { foo: 1, bar: 2 }));
    expect(error).toMatchObject({ type: "CONFIG", message: 'foo: unrecognized key "foo"', details: { field: "foo" } });
    expect(error.details?.["issues"]).toEqual([
      { field: "foo", message: 'unrecognized key "foo"' },
      { field: "bar", message: 'unrecognized key "bar"' },
    ]);
  });

  it("refuses a prompt over maxPromptBytes, counting UTF-8 bytes", async () => {
    const { runtime } = await startTestRuntime({ maxPromptBytes: 10 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "ééééé€" }));
    expect(error).toMatchObject({ type: "CONFIG", details: { field: "prompt", limitBytes: 10, actualBytes: 13 } });
    expect(await rejectionOf(runtime.bridge.tasksDelegate({ prompt: "x".repeat(11) }))).toMatchObject({ details: { field: "prompt" } });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("active");
  });

  it("refuses metadata over maxMetadataBytes", async () => {
    const { runtime } = await startTestRuntime({ maxMetadataBytes: 32 });
    const error = await rejectionOf(runtime.bridge.sessionsCreate({ metadata: { notes: "x".repeat(40) } }));
    expect(error).toMatchObject({ type: "CONFIG", details: { field: "metadata", limitBytes: 32 } });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("refuses calls past maxConcurrentRequests with CAPACITY, and accepts again once one finishes", async () => {
    const { runtime, controlled } = await startTestRuntime({ maxConcurrentRequests: 2 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "a" });
    const second = runtime.bridge.sessionsPrompt({ sessionId, prompt: "b" });
    await settle();
    const error = await rejectionOf(runtime.bridge.sessionsStatus({ sessionId }));
    expect(error).toMatchObject({ type: "CAPACITY", details: { retryable: true, maxConcurrentRequests: 2 } });
    controlled.current().reply();
    await first;
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("busy");
    controlled.current().reply();
    await second;
  });

  it("counts work that reserves a slot (a cluster's forwarded A2A request) against maxConcurrentRequests until it gives the slot back", async () => {
    const { runtime } = await startTestRuntime({ maxConcurrentRequests: 2 });
    const releases = [runtime.bridge.reserve(), runtime.bridge.reserve()];
    expect(() => runtime.bridge.reserve()).toThrow(expect.objectContaining({ type: "CAPACITY" }));
    expect(await rejectionOf(runtime.bridge.health())).toMatchObject({ type: "CAPACITY", details: { maxConcurrentRequests: 2 } });
    releases[0]!();
    // Given back twice, a slot counts once.
    releases[0]!();
    expect((await runtime.bridge.health()).status).toBe("ok");
    expect(() => runtime.bridge.reserve()).not.toThrow();
    expect(() => runtime.bridge.reserve()).toThrow(expect.objectContaining({ type: "CAPACITY" }));
  });

  it("refuses calls before start with INTERNAL", async () => {
    const runtime = createRuntime({ agents: [createMockAgent({ id: "echo" })] });
    expect(await rejectionOf(runtime.bridge.health())).toMatchObject({ type: "INTERNAL", message: "Runtime is not started" });
  });

  it.each([
    [{ maxSessions: 0 }, "maxSessions"],
    [{ sessionTtlMs: -1 }, "sessionTtlMs"],
    [{ sessionIdleMs: 30 * 24 * 3_600_000 }, "sessionIdleMs"],
    [{ maxQueuedPrompts: 1.5 }, "maxQueuedPrompts"],
    [{ defaultAgentId: "nobody" }, "defaultAgentId"],
  ])("refuses bad runtime options %j with CONFIG naming %s", (options, field) => {
    expect(() => createRuntime(options)).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field }) }));
  });

  it("refuses two agents with one id", () => {
    expect(() => createRuntime({ agents: [createMockAgent({ id: "a" }), createMockAgent({ id: "a" })] })).toThrow(/duplicate agent id a/);
  });
});
