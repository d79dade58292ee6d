import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, type RuntimeParams } from "../../src/index.js";
import { promptContext } from "../support/prompt-context.js";
import { recordingClock } from "../support/recording-clock.js";
import { rejectionOf, startTestRuntime } from "../support/runtime.js";

describe("MockProvider", () => {
  it("plays its script with the resolved RuntimeParams, streaming its deltas", async () => {
    const seen: RuntimeParams[] = [];
    const provider = mock({
      defaults: { model: "mock-2", temperature: 0.3 },
      script: (ctx) => {
        seen.push(ctx.runtimeParams);
        return { text: "scripted", deltas: ["scr", "ipted"], usage: { inputTokens: 1, outputTokens: 2 }, stopReason: "max_tokens" };
      },
    });
    const { ctx, deltas } = promptContext({ runtimeParams: { temperature: 0.9 } });

    expect(await provider.complete(ctx)).toEqual({ text: "scripted", stopReason: "max_tokens", usage: { inputTokens: 1, outputTokens: 2 } });
    expect(deltas).toEqual(["scr", "ipted"]);
    expect(seen).toEqual([{ model: "mock-2", temperature: 0.9 }]);
  });

  it("retries a scripted transient error when maxRetries allows it", async () => {
    const provider = mock({ maxRetries: 1, retryBaseDelayMs: 0, script: [{ error: { type: "UPSTREAM", message: "flaky" } }, { text: "second try" }] });

    expect((await provider.complete(promptContext().ctx)).text).toBe("second try");
  });

  it("does not retry by default, and reports the attempts", async () => {
    const provider = mock({ script: [{ error: { type: "UPSTREAM", message: "flaky" } }] });

    expect(await rejectionOf(provider.complete(promptContext().ctx))).toMatchObject({ type: "UPSTREAM", message: "flaky", details: { attempts: 1 } });
  });

  it("times out a hanging step after timeoutMs on its clock", async () => {
    const clock = recordingClock();
    const provider = mock({ clock, timeoutMs: 5000, script: [{ hang: true }] });

    const rejection = rejectionOf(provider.complete(promptContext().ctx));
    clock.increment(5000);

    expect(await rejection).toMatchObject({ type: "TIMEOUT", message: "mock: no answer within timeoutMs 5000" });
  });

  it("stops a hanging step when the prompt is cancelled through the runtime", async () => {
    const agent = createMultiProviderAgent({ id: "offline", providers: [mock({ script: [{ hang: true }] })] });
    const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "offline" });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const started = new Promise<void>((resolve) => runtime.on("prompt.started", () => resolve()));

    const rejection = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "wait" }));
    await started;
    await runtime.bridge.sessionsCancel({ sessionId });

    expect((await rejection).type).toBe("CANCELLED");
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });
});
