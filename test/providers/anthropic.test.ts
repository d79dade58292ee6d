import { afterEach, describe, expect, it, vi } from "vitest";
import { anthropic, createMultiProviderAgent } from "../../src/index.js";
import { messageError, messageReply, startAnthropicFake } from "../fakes/anthropic-fake.js";
import { promptContext } from "../support/prompt-context.js";
import { rejectionOf, startProviderRuntime, startTestRuntime } from "../support/runtime.js";

const API_KEY = "sk-ant-test-0123456789abcdef";
const MODEL = "claude-sonnet-4-6";

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("AnthropicProvider against a fake Messages API", () => {
  it("maps every RuntimeParam onto the JSON request and answers text, stop reason and usage", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageReply({ text: "Entanglement", stopReason: "stop_sequence", usage: { input_tokens: 30, output_tokens: 4 } }));
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url, stream: false });
    const { ctx, deltas } = promptContext({
      prompt: "And then?",
      history: [
        { role: "user", content: "Explain quantum computing" },
        { role: "assistant", content: "Qubits." },
      ],
      runtimeParams: {
        model: MODEL,
        temperature: 0.7,
        maxTokens: 300,
        topP: 0.8,
        topK: 40,
        stopSequences: ["###"],
        systemPrompt: "You are a physics professor.",
        providerSpecific: { metadata: { user_id: "user-1" } },
      },
    });

    const reply = await provider.complete(ctx);

    expect(reply).toEqual({ text: "Entanglement", stopReason: "stop_sequence", usage: { inputTokens: 30, outputTokens: 4 } });
    expect(deltas).toEqual(["Entanglement"]);
    const request = fake.lastRequest;
    expect(request.headers.authorization).toBe(`Bearer ${API_KEY}`); // SDK 1.x sends the key as a bearer token
    expect(request.headers["anthropic-version"]).toEqual(expect.any(String));
    expect(request.body).toEqual({
      model: MODEL,
      max_tokens: 300,
      messages: [
        { role: "user", content: "Explain quantum computing" },
        { role: "assistant", content: "Qubits." },
        { role: "user", content: "And then?" },
      ],
      system: "You are a physics professor.",
      temperature: 0.7,
      top_p: 0.8,
      top_k: 40,
      stop_sequences: ["###"],
      metadata: { user_id: "user-1" },
      stream: false,
    });
  });

  it("sends max_tokens 1024 when no layer sets maxTokens (the API requires it)", async () => {
    const fake = await startAnthropicFake();
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url });

    await provider.complete(promptContext().ctx);

    expect(fake.lastRequest.body).toMatchObject({ model: MODEL, max_tokens: 1024, stream: true });
    expect(fake.lastRequest.body.system).toBeUndefined();
  });

  it("refuses a temperature above 1 with CONFIG naming the field, before any request", async () => {
    const fake = await startAnthropicFake();
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url });

    const error = await rejectionOf(provider.complete(promptContext({ runtimeParams: { temperature: 1.5 } }).ctx));

    expect(error).toMatchObject({ type: "CONFIG", message: "runtimeParams.temperature: anthropic accepts 0–1, got 1.5" });
    expect(error.details).toMatchObject({ field: "runtimeParams.temperature", sessionValid: true });
    expect(fake.requests).toHaveLength(0);
    expect(() => anthropic({ credentials: { apiKey: API_KEY }, defaults: { temperature: 2 } })).toThrow("defaults.temperature");
  });

  it("fails sessions_create with CONFIG when the session's runtimeParams exceed what Anthropic accepts", async () => {
    const fake = await startAnthropicFake();
    const { runtime } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));

    const error = await rejectionOf(runtime.bridge.sessionsCreate({ metadata: { provider: "anthropic", runtimeParams: { temperature: 1.2 } } }));

    expect(error).toMatchObject({ type: "CONFIG", details: { field: "metadata.runtimeParams.temperature" } });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("streams the SSE event sequence into deltas and reads usage from message_start and message_delta", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageReply({ deltas: ["Two ", "plus ", "two"], stopReason: "max_tokens", usage: { input_tokens: 21, output_tokens: 3 } }));
    const { runtime, events } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { provider: "anthropic" } });

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "2+2?" });

    expect(fake.lastRequest.body.stream).toBe(true);
    expect(reply).toMatchObject({ text: "Two plus two", stopReason: "max_tokens", usage: { inputTokens: 21, outputTokens: 3 } });
    expect(events.flatMap((event) => (event.type === "prompt.delta" ? [event.delta] : []))).toEqual(["Two ", "plus ", "two"]);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).usage).toEqual({ inputTokens: 21, outputTokens: 3 });
  });

  it.each([
    ["end_turn", "end_turn"],
    ["max_tokens", "max_tokens"],
    ["stop_sequence", "stop_sequence"],
    ["tool_use", "tool_use"],
    ["refusal", "content_filter"],
  ])("maps stop_reason %s to stopReason %s", async (stopReason, expected) => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageReply({ stopReason }));
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url });
    expect((await provider.complete(promptContext().ctx)).stopReason).toBe(expected);
  });

  it("sends the session's history as alternating messages, with the agent's system prompt", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageReply({ text: "Blue." }));
    const agent = createMultiProviderAgent({
      id: "companion",
      providers: [anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url })],
      systemPrompt: "You are terse.",
    });
    const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "companion" });
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Sky colour?" });
    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Why?" });

    expect(fake.lastRequest.body.system).toBe("You are terse.");
    expect(fake.lastRequest.body.messages).toEqual([
      { role: "user", content: "Sky colour?" },
      { role: "assistant", content: "Blue." },
      { role: "user", content: "Why?" },
    ]);
  });

  it("closes the HTTP connection when the prompt is cancelled mid-stream", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageReply({ deltas: ["Once upon "], hangAfterDeltas: true }));
    const { runtime } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const firstDelta = new Promise<void>((resolve) => runtime.on("prompt.delta", () => resolve()));

    const rejection = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "A story", requestId: "req-1" }));
    await firstDelta;
    await runtime.bridge.sessionsCancel({ sessionId, requestId: "req-1" });

    await fake.lastRequest.clientClosed;
    expect((await rejection).type).toBe("CANCELLED");
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("retries a 429 (retry-after) and a 529 overloaded, then answers", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(
      messageError(429, "Number of requests has exceeded your rate limit", { "retry-after": "0" }, "rate_limit_error"),
      messageError(529, "Overloaded", { "retry-after": "0" }, "overloaded_error"),
      messageReply({ text: "made it" }),
    );
    const { runtime } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url, maxRetries: 2 }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" })).text).toBe("made it");
    expect(fake.requests).toHaveLength(3);
  });

  it("fails the session with AUTH on a 401 and keeps the key out of the error", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageError(401, `invalid x-api-key: ${API_KEY}`, {}, "authentication_error"));
    const { runtime, events } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));
    const status = await runtime.bridge.sessionsStatus({ sessionId });

    expect(error).toMatchObject({ type: "AUTH", message: "anthropic: 401 invalid x-api-key: [REDACTED]", details: { sessionValid: false } });
    expect(status).toMatchObject({ status: "failed", error: { type: "AUTH" } });
    expect(JSON.stringify([error, status, events])).not.toContain(API_KEY);
  });

  it("rejects with UPSTREAM after retrying a 500 and leaves the session valid (idle)", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageError(500, "Internal server error", {}, "api_error"), messageError(500, "Internal server error", {}, "api_error"));
    const { runtime } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url, maxRetries: 1, retryBaseDelayMs: 1 }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error).toMatchObject({ type: "UPSTREAM", message: "anthropic: 500 Internal server error", details: { sessionValid: true, attempts: 2 } });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("fails the session with CONFIG on a 404 for an unknown model", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageError(404, "model: claude-nonexistent", {}, "not_found_error"));
    const { runtime } = await startProviderRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { runtimeParams: { model: "claude-nonexistent" } } });

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error).toMatchObject({ type: "CONFIG", details: { sessionValid: false, status: 404 } });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("failed");
  });

  it("rejects with TRANSPORT when the stream ends before message_stop", async () => {
    const fake = await startAnthropicFake();
    const cut = messageReply({ deltas: ["half"] });
    fake.enqueue((request) => {
      const response = typeof cut === "function" ? cut(request) : cut;
      return response.kind === "sse" ? { ...response, frames: response.frames.slice(0, -1) } : response;
    });
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url, maxRetries: 0 });

    const error = await rejectionOf(provider.complete(promptContext().ctx));

    expect(error).toMatchObject({ type: "TRANSPORT", message: "anthropic: the stream ended before message_stop" });
  });

  it("reads ANTHROPIC_API_KEY once, at construction, and refuses to start without a key", async () => {
    const fake = await startAnthropicFake();
    vi.stubEnv("ANTHROPIC_API_KEY", "sk-ant-from-env");
    const provider = anthropic({ baseURL: fake.url });
    vi.stubEnv("ANTHROPIC_API_KEY", "");

    await provider.complete(promptContext().ctx);

    expect(fake.lastRequest.headers.authorization).toBe("Bearer sk-ant-from-env");
    expect(() => anthropic({ baseURL: fake.url })).toThrow(expect.objectContaining({ type: "CONFIG" }));
  });
});
