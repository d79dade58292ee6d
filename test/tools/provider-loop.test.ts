import { describe, expect, it } from "vitest";
import type { ToolContext } from "../../src/index.js";
import { rejectionOf, settle } from "../support/runtime.js";
import { failingTool, slowTool, startToolRuntime, timeTool, weatherTool } from "./support.js";
import { WIRE_MODES } from "./wire.js";

describe.each(WIRE_MODES)("the tool loop over %s, with the real SDK", (_label, wire, stream) => {
  async function start(tools: Parameters<typeof startToolRuntime>[1], options: { maxToolRounds?: number } = {}) {
    const fake = await wire.start();
    const toolRuntime = await startToolRuntime(wire.provider(fake, stream), tools, options);
    return { fake, ...toolRuntime };
  }

  it("round-trips one tool call: declared, called, its result sent back, the answer streamed", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const { fake, runtime, eventsOf } = await start([weatherTool(calls)]);
    fake.enqueue(wire.calling([{ id: "call_weather", name: "get_weather", args: { city: "Paris" } }], "Let me check."), wire.answering("Sunny in Paris."));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Weather in Paris?" });

    expect(reply).toMatchObject({
      text: "Let me check.\n\nSunny in Paris.",
      stopReason: "end_turn",
      usage: { inputTokens: 2 * wire.usage.inputTokens, outputTokens: 2 * wire.usage.outputTokens },
    });
    expect(calls.map(({ args }) => args)).toEqual([{ city: "Paris" }]);
    expect(fake.requests).toHaveLength(2);
    expect(fake.requests.map((request) => wire.declared(request))).toEqual([["get_weather"], ["get_weather"]]);
    expect(wire.results(fake.requests[1]!)).toEqual([{ content: '{"city":"Paris","sky":"sunny"}', isError: false }]);
    expect(
      eventsOf("prompt.delta")
        .map((event) => event.delta)
        .join(""),
    ).toBe(reply.text);
    expect(eventsOf("tool.called", "tool.completed").map(({ type, tool, ok }) => [type, tool, ok])).toEqual([
      ["tool.called", "get_weather", undefined],
      ["tool.completed", "get_weather", true],
    ]);
  });

  it("runs parallel calls of a zod tool and a JSON Schema tool, and sends both results in order", async () => {
    const { fake, runtime } = await start([weatherTool(), timeTool()]);
    fake.enqueue(
      wire.calling([
        { id: "call_a", name: "get_weather", args: { city: "Oslo" } },
        { id: "call_b", name: "get_time", args: { zone: "Europe/Oslo" } },
      ]),
      wire.answering("Sunny, and noon."),
    );

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather and time in Oslo?" });

    expect(reply.text).toBe("Sunny, and noon.");
    expect(wire.results(fake.requests[1]!)).toEqual([
      { content: '{"city":"Oslo","sky":"sunny"}', isError: false },
      { content: "12:00 in Europe/Oslo", isError: false },
    ]);
  });

  it("sends a tool's error back to the model, which answers", async () => {
    const { fake, runtime } = await start([failingTool("the weather service is down")]);
    fake.enqueue(wire.calling([{ id: "call_weather", name: "get_weather", args: { city: "Paris" } }]), wire.answering("The service is down."));

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(reply).toMatchObject({ text: "The service is down.", stopReason: "end_turn" });
    expect(wire.results(fake.requests[1]!)).toEqual([{ content: "the weather service is down", isError: true }]);
  });

  it("sends arguments that fail the schema back as an error, without running the tool", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const { fake, runtime } = await start([weatherTool(calls)]);
    fake.enqueue(wire.calling([{ id: "call_weather", name: "get_weather", args: { town: "Paris" } }]), wire.answering("Sorry."));

    await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(calls).toEqual([]);
    expect(wire.results(fake.requests[1]!)).toEqual([
      { content: "Invalid arguments for get_weather: city: Invalid input: expected string, received undefined", isError: true },
    ]);
  });

  it("after maxToolRounds, forbids tools in one last call and answers with its text", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const { fake, runtime } = await start([weatherTool(calls)], { maxToolRounds: 1 });
    fake.enqueue(wire.calling([{ id: "call_1", name: "get_weather", args: { city: "Paris" } }]), wire.answering("Probably sunny."));

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(reply).toMatchObject({ text: "Probably sunny.", stopReason: "end_turn" });
    expect(calls).toHaveLength(1);
    expect(fake.requests.map((request) => wire.forbidsTools(request))).toEqual([false, true]);
    // Tools stay declared in the last call: its conversation holds calls and results, which need them.
    expect(wire.declared(fake.requests[1]!)).toEqual(["get_weather"]);
  });

  it("aborts a slow tool through its signal when the prompt is cancelled, and sends no further request", async () => {
    const { tool, started, aborted } = slowTool();
    const { fake, runtime } = await start([tool]);
    fake.enqueue(wire.calling([{ id: "call_slow", name: "slow_search", args: {} }]), wire.answering("never sent"));
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const prompt = runtime.bridge.sessionsPrompt({ sessionId, prompt: "Search" });
    const toolCtx = await started;
    await runtime.bridge.sessionsCancel({ sessionId });

    expect(await rejectionOf(prompt)).toMatchObject({ type: "CANCELLED" });
    await aborted;
    expect(toolCtx.signal.aborted).toBe(true);
    await settle();
    expect(fake.requests).toHaveLength(1);
  });
});
