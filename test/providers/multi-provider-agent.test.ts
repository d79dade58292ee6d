import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, MultiProviderCompanionAgent, openAI, ProviderRegistry, type MockScript } from "../../src/index.js";
import { startOpenAIFake } from "../fakes/openai-fake.js";
import { rejectionOf, startTestRuntime } from "../support/runtime.js";

function answering(text: string): MockScript {
  return () => ({ text });
}

async function companionRuntime() {
  const agent = createMultiProviderAgent({
    id: "multi-ai",
    name: "Companion",
    capabilities: ["chat"],
    providers: [mock({ id: "alpha", models: ["alpha-1", "alpha-2"], script: answering("from alpha") }), mock({ id: "beta", script: answering("from beta") })],
    defaultProviderId: "beta",
  });
  const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "multi-ai" });
  return runtime;
}

describe("MultiProviderCompanionAgent", () => {
  it("binds a session to metadata.provider for its whole life", async () => {
    const runtime = await companionRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "multi-ai", metadata: { provider: "alpha" } });

    for (const prompt of ["one", "two", "three"]) {
      expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt })).text).toBe("from alpha");
    }
    expect((await runtime.bridge.sessionsStatus({ sessionId })).provider).toBe("alpha");
  });

  it("uses the agent's defaultProviderId when metadata.provider is omitted", async () => {
    const runtime = await companionRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "multi-ai" });

    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "hi" })).text).toBe("from beta");
  });

  it("fails sessions_create with CONFIG naming metadata.provider when the provider is not registered", async () => {
    const runtime = await companionRuntime();

    const error = await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "multi-ai", metadata: { provider: "openai" } }));

    expect(error).toMatchObject({
      type: "CONFIG",
      message: "metadata.provider: no provider openai is registered with agent multi-ai (registered: alpha, beta)",
      details: { field: "metadata.provider", provider: "openai" },
    });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("lists its providers and default provider in agents_discover, and is found by capability", async () => {
    const runtime = await companionRuntime();

    const { agents } = await runtime.bridge.agentsDiscover({ capability: "chat" });

    expect(agents).toEqual([
      {
        id: "multi-ai",
        name: "Companion",
        description: expect.any(String),
        capabilities: ["chat"],
        status: "ready",
        providers: [
          { id: "alpha", models: ["alpha-1", "alpha-2"] },
          { id: "beta", models: ["mock-1"] },
        ],
        defaultProvider: "beta",
      },
    ]);
    expect((await runtime.bridge.agentsDiscover({ capability: "deploy" })).agents).toEqual([]);
  });

  it("answers tasks_delegate with the provider its metadata names", async () => {
    const runtime = await companionRuntime();

    const reply = await runtime.bridge.tasksDelegate({
      agentId: "multi-ai",
      prompt: "Summarize",
      metadata: { provider: "alpha" },
      runtimeParams: { temperature: 0 },
    });

    expect(reply).toMatchObject({ text: "from alpha", stopReason: "end_turn" });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("serves an OpenAI session and a mock session side by side", async () => {
    const fake = await startOpenAIFake();
    const agent = createMultiProviderAgent({
      id: "multi-ai",
      providers: [openAI({ credentials: { apiKey: "sk-test" }, baseURL: fake.baseURL }), mock({ script: answering("offline") })],
    });
    const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "multi-ai" });
    const online = await runtime.bridge.sessionsCreate({});
    const offline = await runtime.bridge.sessionsCreate({ metadata: { provider: "mock" } });

    const [first, second] = await Promise.all([
      runtime.bridge.sessionsPrompt({ sessionId: online.sessionId, prompt: "hi" }),
      runtime.bridge.sessionsPrompt({ sessionId: offline.sessionId, prompt: "hi" }),
    ]);

    expect(agent.defaultProviderId).toBe("openai");
    expect(first.text).toBe("Hello from the OpenAI fake");
    expect(second.text).toBe("offline");
    expect(fake.requests).toHaveLength(1);
  });

  it("refuses a configuration without providers, with an unknown default, or with duplicate ids", () => {
    expect(() => createMultiProviderAgent({ id: "a", providers: [] })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "providers" }) }),
    );
    expect(() => createMultiProviderAgent({ id: "a", providers: [mock()], defaultProviderId: "openai" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "defaultProviderId" }) }),
    );
    expect(() => new ProviderRegistry([mock(), mock()])).toThrow("duplicate provider id mock");
  });

  it("lists providers registered after it was created", () => {
    const registry = new ProviderRegistry([mock()]);
    const agent = new MultiProviderCompanionAgent({ id: "a", registry });
    registry.register(mock({ id: "second", models: ["m"] }));

    expect(agent.providers).toEqual([
      { id: "mock", models: ["mock-1"] },
      { id: "second", models: ["m"] },
    ]);
  });
});
