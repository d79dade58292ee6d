import { afterEach, describe, expect, it, vi } from "vitest";
import { createMultiProviderAgent, gemini, GeminiProvider } from "../../src/index.js";
import { contentReply, googleError, isStreamRequest, modelOf, startGeminiFake } from "../fakes/gemini-fake.js";
import { promptContext } from "../support/prompt-context.js";
import { rejectionOf, startProviderRuntime, startTestRuntime } from "../support/runtime.js";

const API_KEY = "AIzaSy-test-0123456789abcdef";

afterEach(() => {
  vi.unstubAllEnvs();
});

const RETRY_NOW = [{ "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "0s" }];

describe("GeminiProvider against a fake Gemini API", () => {
  it("maps every RuntimeParam onto generateContent and answers text, stop reason and usage", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(contentReply({ text: "Superposition", usage: { promptTokenCount: 40, candidatesTokenCount: 2 } }));
    const provider = gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, stream: false });
    const { ctx, deltas } = promptContext({
      prompt: "More?",
      history: [
        { role: "user", content: "Explain quantum computing" },
        { role: "assistant", content: "Qubits." },
      ],
      runtimeParams: {
        model: "gemini-2.5-pro",
        temperature: 1.3,
        maxTokens: 256,
        topP: 0.95,
        topK: 32,
        stopSequences: ["STOP!"],
        systemPrompt: "You are a physics professor.",
        providerSpecific: { responseMimeType: "text/plain", seed: 3, safetySettings: [{ category: "HARM_CATEGORY_HARASSMENT", threshold: "BLOCK_NONE" }] },
      },
    });

    const reply = await provider.complete(ctx);

    expect(reply).toEqual({ text: "Superposition", stopReason: "end_turn", usage: { inputTokens: 40, outputTokens: 2 } });
    expect(deltas).toEqual(["Superposition"]);
    const request = fake.lastRequest;
    expect(request.path).toBe("/v1beta/models/gemini-2.5-pro:generateContent");
    expect(request.headers["x-goog-api-key"]).toBe(API_KEY);
    expect(request.body).toEqual({
      contents: [
        { role: "user", parts: [{ text: "Explain quantum computing" }] },
        { role: "model", parts: [{ text: "Qubits." }] },
        { role: "user", parts: [{ text: "More?" }] },
      ],
      systemInstruction: { role: "user", parts: [{ text: "You are a physics professor." }] },
      generationConfig: {
        temperature: 1.3,
        maxOutputTokens: 256,
        topP: 0.95,
        topK: 32,
        stopSequences: ["STOP!"],
        responseMimeType: "text/plain",
        seed: 3,
      },
      safetySettings: [{ category: "HARM_CATEGORY_HARASSMENT", threshold: "BLOCK_NONE" }],
    });
  });

  it("streams streamGenerateContent?alt=sse into deltas and takes usage from the last chunk", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(contentReply({ deltas: ["Light ", "is ", "fast"], usage: { promptTokenCount: 9, candidatesTokenCount: 3 } }));
    const { runtime, events } = await startProviderRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { provider: "gemini" } });

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Speed of light?" });

    expect(isStreamRequest(fake.lastRequest)).toBe(true);
    expect(fake.lastRequest.query.get("alt")).toBe("sse");
    expect(modelOf(fake.lastRequest)).toBe("gemini-2.5-flash");
    expect(reply).toMatchObject({ text: "Light is fast", stopReason: "end_turn", usage: { inputTokens: 9, outputTokens: 3 } });
    expect(events.flatMap((event) => (event.type === "prompt.delta" ? [event.delta] : []))).toEqual(["Light ", "is ", "fast"]);
  });

  it.each([
    ["STOP", "end_turn"],
    ["MAX_TOKENS", "max_tokens"],
    ["SAFETY", "content_filter"],
    ["RECITATION", "content_filter"],
  ])("maps finishReason %s to stopReason %s, streaming or not", async (finishReason, stopReason) => {
    const fake = await startGeminiFake();
    fake.enqueue(contentReply({ finishReason }), contentReply({ finishReason }));
    for (const stream of [true, false]) {
      const provider = gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, stream });
      expect((await provider.complete(promptContext().ctx)).stopReason).toBe(stopReason);
    }
  });

  it("sends history with model turns and the system instruction through the runtime", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(contentReply({ text: "4" }));
    const agent = createMultiProviderAgent({
      id: "companion",
      providers: [gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, defaults: { temperature: 0.4, maxTokens: 64 } })],
      systemPrompt: "Answer with a number.",
    });
    const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "companion" });
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { runtimeParams: { temperature: 0.9 } } });

    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "2+2?" });
    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Times 2?", runtimeParams: { maxTokens: 8 } });

    expect(fake.lastRequest.body).toMatchObject({
      contents: [
        { role: "user", parts: [{ text: "2+2?" }] },
        { role: "model", parts: [{ text: "4" }] },
        { role: "user", parts: [{ text: "Times 2?" }] },
      ],
      systemInstruction: { parts: [{ text: "Answer with a number." }] },
      generationConfig: { temperature: 0.9, maxOutputTokens: 8 },
    });
  });

  it("closes the HTTP connection when the prompt is cancelled mid-stream", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(contentReply({ deltas: ["Chapter one"], hangAfterDeltas: true }));
    const { runtime } = await startProviderRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const firstDelta = new Promise<void>((resolve) => runtime.on("prompt.delta", () => resolve()));

    const rejection = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "A novel" }));
    await firstDelta;
    await runtime.bridge.sessionsCancel({ sessionId });

    await fake.lastRequest.clientClosed;
    expect((await rejection).type).toBe("CANCELLED");
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("retries a 429 RESOURCE_EXHAUSTED after its RetryInfo delay", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(googleError(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED", RETRY_NOW), contentReply({ text: "ok" }));
    const provider = gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, maxRetries: 1 });

    expect((await provider.complete(promptContext().ctx)).text).toBe("ok");
    expect(fake.requests).toHaveLength(2);
  });

  it("fails the session with AUTH on Gemini's 400 API_KEY_INVALID and keeps the key out of it", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(
      googleError(400, `API key not valid: ${API_KEY}. Please pass a valid API key.`, "INVALID_ARGUMENT", [
        { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "API_KEY_INVALID", domain: "googleapis.com" },
      ]),
    );
    const { runtime, events } = await startProviderRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));
    const status = await runtime.bridge.sessionsStatus({ sessionId });

    expect(error).toMatchObject({ type: "AUTH", message: "gemini: 400 API key not valid: [REDACTED]. Please pass a valid API key." });
    expect(status).toMatchObject({ status: "failed", error: { type: "AUTH" } });
    expect(JSON.stringify([error, status, events])).not.toContain(API_KEY);
  });

  it("fails the session with AUTH on a 403 PERMISSION_DENIED", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(googleError(403, "Method doesn't allow unregistered callers.", "PERMISSION_DENIED"));
    const { runtime } = await startProviderRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }))).toMatchObject({ type: "AUTH" });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("failed");
  });

  it("fails the session with CONFIG on a 404 for an unknown model", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(googleError(404, "models/gemini-0 is not found for API version v1beta", "NOT_FOUND"));
    const { runtime } = await startProviderRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url }));
    const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { runtimeParams: { model: "gemini-0" } } });

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error).toMatchObject({
      type: "CONFIG",
      message: "gemini: 404 models/gemini-0 is not found for API version v1beta",
      details: { sessionValid: false },
    });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("failed");
  });

  it("rejects with UPSTREAM after retrying a 500 and leaves the session valid (idle)", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(googleError(500, "An internal error has occurred.", "INTERNAL"), googleError(500, "An internal error has occurred.", "INTERNAL"));
    const { runtime } = await startProviderRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, maxRetries: 1, retryBaseDelayMs: 1 }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "Hi" }));

    expect(error).toMatchObject({ type: "UPSTREAM", details: { sessionValid: true, status: 500, attempts: 2 } });
    expect(fake.requests).toHaveLength(2);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("rejects with TRANSPORT when the connection drops", async () => {
    const fake = await startGeminiFake();
    fake.enqueue({ kind: "destroy" });
    const provider = gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, maxRetries: 0 });

    expect(await rejectionOf(provider.complete(promptContext().ctx))).toMatchObject({ type: "TRANSPORT", details: { sessionValid: true } });
  });

  it("reads GEMINI_API_KEY once, at construction, and refuses to start without a key", async () => {
    const fake = await startGeminiFake();
    vi.stubEnv("GEMINI_API_KEY", "AIza-from-env");
    const provider = new GeminiProvider({ baseURL: fake.url });
    vi.stubEnv("GEMINI_API_KEY", "");

    await provider.complete(promptContext().ctx);

    expect(fake.lastRequest.headers["x-goog-api-key"]).toBe("AIza-from-env");
    expect(() => gemini({ baseURL: fake.url })).toThrow(expect.objectContaining({ type: "CONFIG" }));
  });
});
