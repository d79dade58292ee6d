import { afterEach, describe, expect, it, vi } from "vitest";
import { BridgeError, openAI, OpenAIProvider, type ProviderWarning } from "../../src/index.js";
import { chatError, chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { promptContext } from "../support/prompt-context.js";
import { recordingClock } from "../support/recording-clock.js";
import { rejectionOf, startProviderRuntime } from "../support/runtime.js";

const API_KEY = "sk-test-0123456789abcdef";

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("OpenAIProvider against a fake Chat Completions API", () => {
  it("maps every RuntimeParam onto the JSON request and answers text, stop reason and usage", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ text: "Quantum bits", usage: { prompt_tokens: 45, completion_tokens: 120 } }));
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, stream: false });
    const { ctx, deltas } = promptContext({
      prompt: "Explain quantum computing",
      history: [
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello!" },
      ],
      runtimeParams: {
        model: "gpt-4o-mini",
        temperature: 0.2,
        maxTokens: 500,
        topP: 0.9,
        stopSequences: ["END"],
        systemPrompt: "You are a physics professor.",
        providerSpecific: { seed: 7, user: "user-1" },
      },
    });

    const reply = await provider.complete(ctx);

    expect(reply).toEqual({ text: "Quantum bits", stopReason: "end_turn", usage: { inputTokens: 45, outputTokens: 120 } });
    expect(deltas).toEqual(["Quantum bits"]);
    const request = fake.lastRequest;
    expect(request.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(request.body).toEqual({
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "You are a physics professor." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello!" },
        { role: "user", content: "Explain quantum computing" },
      ],
      temperature: 0.2,
      max_tokens: 500,
      top_p: 0.9,
      stop: ["END"],
      seed: 7,
      user: "user-1",
      stream: false,
    });
  });

  it("streams deltas, asks for usage in the last chunk, and reports it", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ deltas: ["The ", "answer ", "is 42"], usage: { prompt_tokens: 8, completion_tokens: 3 } }));
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL });
    const { ctx, deltas } = promptContext();

    const reply = await provider.complete(ctx);

    expect(fake.lastRequest.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect(deltas).toEqual(["The ", "answer ", "is 42"]);
    expect(reply).toEqual({ text: "The answer is 42", stopReason: "end_turn", usage: { inputTokens: 8, outputTokens: 3 } });
  });

  it.each([
    ["stop", "end_turn"],
    ["length", "max_tokens"],
    ["content_filter", "content_filter"],
    ["tool_calls", "tool_use"],
  ])("maps finish_reason %s to stopReason %s, streaming or not", async (finishReason, stopReason) => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ finishReason }), chatReply({ finishReason }));
    for (const stream of [true, false]) {
      const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, stream });
      expect((await provider.complete(promptContext().ctx)).stopReason).toBe(stopReason);
    }
  });

  it("does not send topK, and reports it as a warning of that prompt", async () => {
    const fake = await startOpenAIFake();
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL });

    const { ctx, warnings } = promptContext({ runtimeParams: { topK: 40, topP: 0.5 } });
    await provider.complete(ctx);

    expect(fake.lastRequest.body.top_k).toBeUndefined();
    expect(fake.lastRequest.body.top_p).toBe(0.5);
    expect(warnings).toEqual([expect.stringContaining("openai: Chat Completions has no top_k: topK is not sent")]);
  });

  it("reports a topK among its defaults to onWarning when it is constructed", () => {
    const warnings: ProviderWarning[] = [];
    openAI({ credentials: { apiKey: API_KEY }, baseURL: "http://127.0.0.1:9/v1", defaults: { topK: 5 }, onWarning: (warning) => warnings.push(warning) });
    expect(warnings).toEqual([{ providerId: "openai", field: "topK", message: expect.stringContaining("topK is not sent") }]);
  });

  it("streams the topK warning as a prompt.warning event through the runtime", async () => {
    const fake = await startOpenAIFake();
    const { runtime, events } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }));
    const { sessionId, agentId } = await runtime.bridge.sessionsCreate({});
    const { requestId } = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "hi", runtimeParams: { topK: 3 } });
    expect(events.filter((event) => event.type === "prompt.warning").map(({ seq: _seq, ts: _ts, ...rest }) => rest)).toEqual([
      {
        type: "prompt.warning",
        actorId: sessionId,
        sessionId,
        requestId,
        message: "openai: Chat Completions has no top_k: topK is not sent",
        agentId,
      },
    ]);
  });

  it("merges provider defaults < session metadata.runtimeParams < prompt runtimeParams on the wire", async () => {
    const fake = await startOpenAIFake();
    const provider = openAI({
      credentials: { apiKey: API_KEY },
      baseURL: fake.baseURL,
      models: ["gpt-4o", "gpt-4o-mini"],
      defaults: { temperature: 0.1, maxTokens: 100, topP: 0.5, providerSpecific: { seed: 1, user: "default", presence_penalty: 0.1 } },
    });
    const { runtime } = await startProviderRuntime(provider, "You are the agent.");
    const { sessionId } = await runtime.bridge.sessionsCreate({
      metadata: {
        provider: "openai",
        runtimeParams: { temperature: 0.7, model: "gpt-4o-mini", providerSpecific: { user: "session", frequency_penalty: 0.2 } },
      },
    });

    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "one", runtimeParams: { maxTokens: 50, providerSpecific: { frequency_penalty: 0.3 } } });
    const first = fake.lastRequest.body;
    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "two", runtimeParams: { systemPrompt: "Answer in French." } });
    const second = fake.lastRequest.body;

    expect(first).toMatchObject({
      model: "gpt-4o-mini",
      temperature: 0.7,
      max_tokens: 50,
      top_p: 0.5,
      seed: 1,
      user: "session",
      presence_penalty: 0.1,
      frequency_penalty: 0.3,
    });
    expect(first.messages[0]).toEqual({ role: "system", content: "You are the agent." });
    expect(second).toMatchObject({ temperature: 0.7, max_tokens: 100, frequency_penalty: 0.2 });
    expect(second.messages[0]).toEqual({ role: "system", content: "Answer in French." });
  });

  it("sends the session's history with each prompt, after the system prompt", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ text: "Paris" }), chatReply({ text: "About 2.1 million" }));
    const { runtime } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }), "Be brief.");
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Capital of France?" });
    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Its population?" });

    expect(reply).toMatchObject({ text: "About 2.1 million", stopReason: "end_turn", usage: { inputTokens: 11, outputTokens: 7 } });
    expect(fake.lastRequest.body.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Capital of France?" },
      { role: "assistant", content: "Paris" },
      { role: "user", content: "Its population?" },
    ]);
  });

  it("surfaces streamed deltas as prompt.delta events through the runtime", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ deltas: ["Hel", "lo"], delayMs: 10 }));
    const { runtime, events } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const statusAtFirstDelta = new Promise((resolve) => runtime.on("prompt.delta", () => resolve(runtime.bridge.sessionsStatus({ sessionId }))));

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi", requestId: "req-1" });

    expect(reply.text).toBe("Hello");
    expect(await statusAtFirstDelta).toMatchObject({ status: "busy", activeRequestId: "req-1" });
    const streamed = events.filter((event) => event.type === "prompt.delta" || event.type === "prompt.completed");
    expect(streamed.map((event) => (event.type === "prompt.delta" ? event.delta : event.type))).toEqual(["Hel", "lo", "prompt.completed"]);
  });

  it("closes the HTTP connection when the prompt is cancelled mid-stream", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ deltas: ["partial "], hangAfterDeltas: true }));
    const { runtime } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const firstDelta = new Promise<void>((resolve) => runtime.on("prompt.delta", () => resolve()));

    const rejection = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Tell me a long story", requestId: "req-1" }));
    await firstDelta;
    expect(fake.lastRequest.closedByClient).toBe(false);
    await runtime.bridge.sessionsCancel({ sessionId });

    await fake.lastRequest.clientClosed;
    expect((await rejection).type).toBe("CANCELLED");
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("retries a 429 after its retry-after and answers", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(429, "Rate limit reached", { "retry-after": "0" }, "requests", "rate_limit_exceeded"), chatReply({ text: "finally" }));
    const { runtime } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, maxRetries: 2 }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" });

    expect(reply.text).toBe("finally");
    expect(fake.requests).toHaveLength(2);
  });

  it("waits exactly the retry-after a 429 names, on the provider's clock", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(429, "Rate limit reached", { "retry-after": "1" }));
    const clock = recordingClock();
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, clock, retryBaseDelayMs: 5 });

    const reply = provider.complete(promptContext().ctx);
    await vi.waitFor(() => expect(clock.delays).toContain(1000));
    clock.increment(999);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fake.requests).toHaveLength(1);
    clock.increment(1);

    expect((await reply).text).toBe("Hello from the OpenAI fake");
    expect(fake.requests).toHaveLength(2);
  });

  it("fails the session with AUTH on a 401, without retrying", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(401, "Invalid authentication", {}, "invalid_request_error", "invalid_api_key"));
    const { runtime } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error).toBeInstanceOf(BridgeError);
    expect(error.type).toBe("AUTH");
    expect(error.details).toMatchObject({ sessionValid: false, retryable: false, status: 401, provider: "openai" });
    expect(fake.requests).toHaveLength(1);
    const status = await runtime.bridge.sessionsStatus({ sessionId });
    expect(status).toMatchObject({ status: "failed", error: { type: "AUTH" } });
  });

  it("fails the session with CONFIG on a 404 for an unknown model", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(404, "The model `gpt-9` does not exist", {}, "invalid_request_error", "model_not_found"));
    const { runtime } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }));
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { runtimeParams: { model: "gpt-9" } } });

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error).toMatchObject({ type: "CONFIG", message: "openai: 404 The model `gpt-9` does not exist" });
    expect(error.details).toMatchObject({ sessionValid: false });
    expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "failed", error: { type: "CONFIG" } });
  });

  it("rejects with UPSTREAM after retrying a 500 and leaves the session valid (idle)", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(500, "The server had an error", {}, "server_error"), chatError(500, "The server had an error", {}, "server_error"));
    const { runtime } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, maxRetries: 1, retryBaseDelayMs: 1 }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error.type).toBe("UPSTREAM");
    expect(error.details).toMatchObject({ sessionValid: true, retryable: true, status: 500, attempts: 2 });
    expect(fake.requests).toHaveLength(2);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "again" })).text).toBe("Hello from the OpenAI fake");
  });

  it("never lets the key reach an error message, a status or an event, even when the API echoes it", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(401, `Incorrect API key provided: ${API_KEY}. You can find your API key at https://platform.openai.com`));
    const { runtime, events } = await startProviderRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));
    const status = await runtime.bridge.sessionsStatus({ sessionId });

    expect(error.message).toBe("openai: 401 Incorrect API key provided: [REDACTED]. You can find your API key at https://platform.openai.com");
    for (const written of [JSON.stringify(error), error.message, JSON.stringify(status), JSON.stringify(events)]) {
      expect(written).not.toContain(API_KEY);
    }
  });

  it("rejects with TRANSPORT when nothing listens at baseURL", async () => {
    const fake = await startOpenAIFake();
    const { baseURL } = fake;
    await fake.close();
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL, maxRetries: 0 });

    const error = await rejectionOf(provider.complete(promptContext().ctx));

    expect(error).toMatchObject({ type: "TRANSPORT", details: { sessionValid: true, retryable: true, provider: "openai" } });
  });

  it("rejects with TIMEOUT when an attempt outlives timeoutMs, and closes the connection", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue({ kind: "hang" });
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, timeoutMs: 100, maxRetries: 0 });

    const error = await rejectionOf(provider.complete(promptContext().ctx));

    expect(error).toMatchObject({ type: "TIMEOUT", details: { sessionValid: true, timeoutMs: 100 } });
    await fake.lastRequest.clientClosed;
  });

  it("reads OPENAI_API_KEY and OPENAI_BASE_URL once, at construction", async () => {
    const fake = await startOpenAIFake();
    vi.stubEnv("OPENAI_API_KEY", "sk-from-env");
    vi.stubEnv("OPENAI_BASE_URL", fake.baseURL);
    const provider = new OpenAIProvider();
    vi.stubEnv("OPENAI_API_KEY", "sk-changed-later");
    vi.stubEnv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1");

    await provider.complete(promptContext().ctx);

    expect(fake.lastRequest.headers.authorization).toBe("Bearer sk-from-env");
  });

  it("refuses to start without a key unless it talks to a custom baseURL (a local server)", async () => {
    vi.stubEnv("OPENAI_API_KEY", "");
    vi.stubEnv("OPENAI_BASE_URL", "");
    expect(() => openAI()).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "credentials.apiKey" }) }));

    const fake = await startOpenAIFake();
    const local = openAI({ id: "ollama", baseURL: fake.baseURL, models: ["llama3.2"] });
    const reply = await local.complete(promptContext().ctx);

    expect(reply.text).toBe("Hello from the OpenAI fake");
    expect(fake.lastRequest.body.model).toBe("llama3.2");
    expect(local.describe()).toEqual({ id: "ollama", models: ["llama3.2"] });
  });
});
