import { describe, expect, it } from "vitest";
import { BridgeError, mergeRuntimeParams, mock, parseRuntimeParams } from "../../src/index.js";

describe("RuntimeParams merge (SPEC §2.4)", () => {
  it("lets each higher layer override only the fields it defines", () => {
    const merged = mergeRuntimeParams(
      { model: "base", temperature: 0.1, maxTokens: 100, topP: 0.5 },
      { temperature: 0.7, maxTokens: undefined },
      { maxTokens: 50, systemPrompt: "prompt-level" },
    );

    expect(merged).toEqual({ model: "base", temperature: 0.7, maxTokens: 50, topP: 0.5, systemPrompt: "prompt-level" });
  });

  it("shallow-merges providerSpecific across all layers", () => {
    const merged = mergeRuntimeParams(
      { providerSpecific: { a: 1, b: 1, nested: { x: 1 } } },
      { providerSpecific: { b: 2, c: 2 } },
      {},
      { providerSpecific: { c: 3, nested: { y: 2 } } },
    );

    expect(merged.providerSpecific).toEqual({ a: 1, b: 2, c: 3, nested: { y: 2 } });
  });

  it("puts a provider's defaults under what the session and the prompt set", () => {
    const provider = mock({ models: ["m-1", "m-2"], defaults: { temperature: 0.2, maxTokens: 10, providerSpecific: { seed: 1 } } });

    expect(provider.resolveParams({ maxTokens: 99, providerSpecific: { user: "u" } })).toEqual({
      model: "m-1",
      temperature: 0.2,
      maxTokens: 99,
      providerSpecific: { seed: 1, user: "u" },
    });
    expect(provider.resolveParams({ model: "m-2" }).model).toBe("m-2");
  });
});

describe("RuntimeParams validation", () => {
  it.each([
    [{ temperature: 2.1 }, "defaults.temperature"],
    [{ temperature: -0.1 }, "defaults.temperature"],
    [{ maxTokens: 0 }, "defaults.maxTokens"],
    [{ maxTokens: 1.5 }, "defaults.maxTokens"],
    [{ topP: 1.01 }, "defaults.topP"],
    [{ topK: 0 }, "defaults.topK"],
    [{ stopSequences: "END" }, "defaults.stopSequences"],
    [{ model: "" }, "defaults.model"],
    [{ temprature: 0.5 }, "defaults.temprature"],
  ])("refuses %j with CONFIG naming %s", (value, field) => {
    let thrown: unknown;
    try {
      parseRuntimeParams(value, "defaults");
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(BridgeError);
    expect(thrown).toMatchObject({ type: "CONFIG", details: { field, retryable: false } });
    expect((thrown as BridgeError).message.startsWith(`${field}: `)).toBe(true);
  });

  it("accepts the edges of every range", () => {
    const edges = { temperature: 2, maxTokens: 1, topP: 0, topK: 1, stopSequences: [], systemPrompt: "", providerSpecific: {} };
    expect(parseRuntimeParams(edges, "runtimeParams")).toEqual(edges);
  });

  it("validates a provider's defaults when it is constructed", () => {
    expect(() => mock({ defaults: { topP: 3 } })).toThrow("defaults.topP");
  });

  it("refuses bad provider options with CONFIG naming the option", () => {
    expect(() => mock({ timeoutMs: 0 })).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "timeoutMs" }) }));
    expect(() => mock({ maxRetries: -1 })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: "maxRetries" }) }));
    expect(() => mock({ models: [] })).toThrow(expect.objectContaining({ details: expect.objectContaining({ field: "models" }) }));
  });
});
