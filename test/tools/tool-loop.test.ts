import { describe, expect, it } from "vitest";
import { z } from "zod";
import { createMultiProviderAgent, defineTool, mock, type MockStep, type ToolContext, type ToolRequest } from "../../src/index.js";
import type { HistoryMessage } from "../../machines/index.js";
import { rejectionOf, settle } from "../support/runtime.js";
import { failingTool, slowTool, startToolRuntime, timeTool, weatherTool } from "./support.js";

/** What the mock model saw at each of its calls. */
interface SeenCall {
  prompt: string;
  history: HistoryMessage[];
  tools: ToolRequest | undefined;
}

/** A mock whose calls are answered by `steps` in order (then echo), recording what each call saw. */
function scriptedMock(steps: MockStep[]) {
  const seen: SeenCall[] = [];
  const provider = mock({
    script: (ctx, tools) => {
      seen.push({ prompt: ctx.prompt, history: ctx.history, tools });
      return steps.shift();
    },
  });
  return { provider, seen };
}

describe("the tool loop with the mock provider", () => {
  it("runs the tool the model calls, sends the result back, and answers with the model's next reply", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const { provider, seen } = scriptedMock([
      { toolCalls: [{ name: "get_weather", args: { city: "Paris" } }], usage: { inputTokens: 10, outputTokens: 3 } },
      { text: "It is sunny in Paris.", usage: { inputTokens: 20, outputTokens: 6 } },
    ]);
    const { runtime } = await startToolRuntime(provider, [weatherTool(calls)]);
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Weather in Paris?", requestId: "r1" });

    expect(reply).toEqual({ text: "It is sunny in Paris.", stopReason: "end_turn", requestId: "r1", usage: { inputTokens: 30, outputTokens: 9 } });
    expect(calls.map(({ args }) => args)).toEqual([{ city: "Paris" }]);
    expect(calls[0]?.ctx).toMatchObject({ session: { sessionId, agentId: "assistant" }, agentId: "assistant", requestId: "r1", callId: "call_1_1" });
    expect(seen).toHaveLength(2);
    expect(seen[0]?.tools).toEqual({
      tools: [
        { name: "get_weather", description: "The current weather in a city", inputSchema: expect.objectContaining({ type: "object", required: ["city"] }) },
      ],
      choice: "auto",
      rounds: [],
    });
    expect(seen[1]?.tools?.rounds).toEqual([
      {
        text: "",
        calls: [{ callId: "call_1_1", name: "get_weather", argumentsJson: '{"city":"Paris"}' }],
        results: [{ callId: "call_1_1", name: "get_weather", content: '{"city":"Paris","sky":"sunny"}', isError: false }],
      },
    ]);
  });

  it("runs the calls of one round concurrently and returns their results in the order of the calls", async () => {
    const started: string[] = [];
    let release = (): void => undefined;
    const bothStarted = new Promise<void>((resolve) => {
      release = resolve;
    });
    const waiting = (name: string) =>
      defineTool({
        name,
        description: `Waits until both tools run`,
        parameters: z.object({}),
        execute: async () => {
          started.push(name);
          if (started.length === 2) release();
          // Run one after the other, the first would wait here forever.
          await bothStarted;
          return `${name} done`;
        },
      });
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "first" }, { name: "second" }] }, { text: "Both done." }]);
    const { runtime } = await startToolRuntime(provider, [waiting("first"), waiting("second")]);

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Do both" });

    expect(reply.text).toBe("Both done.");
    expect(seen[1]?.tools?.rounds[0]?.results.map(({ name, content }) => [name, content])).toEqual([
      ["first", "first done"],
      ["second", "second done"],
    ]);
  });

  it("returns a tool's error to the model instead of failing the turn", async () => {
    const { provider, seen } = scriptedMock([
      { toolCalls: [{ name: "get_weather", args: { city: "Paris" } }] },
      { text: "The weather service is down, sorry." },
    ]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [failingTool()]);

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather in Paris?" });

    expect(reply.text).toBe("The weather service is down, sorry.");
    expect(seen[1]?.tools?.rounds[0]?.results).toEqual([{ callId: "call_1_1", name: "get_weather", content: "the weather service is down", isError: true }]);
    expect(eventsOf("tool.completed")).toEqual([expect.objectContaining({ ok: false, error: { kind: "threw", message: "the weather service is down" } })]);
  });

  it("tells the model about arguments that fail the schema, and does not run the tool", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "get_weather", args: { city: 42 } }] }, { text: "Sorry." }]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [weatherTool(calls)]);

    await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(calls).toEqual([]);
    expect(seen[1]?.tools?.rounds[0]?.results).toEqual([
      {
        callId: "call_1_1",
        name: "get_weather",
        content: "Invalid arguments for get_weather: city: Invalid input: expected string, received number",
        isError: true,
      },
    ]);
    expect(eventsOf("tool.completed")).toEqual([expect.objectContaining({ ok: false, error: expect.objectContaining({ kind: "bad_arguments" }) })]);
  });

  it("tells the model about a tool it does not have", async () => {
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "launch_rocket" }] }, { text: "I cannot." }]);
    const { runtime } = await startToolRuntime(provider, [weatherTool(), timeTool()]);

    await runtime.bridge.tasksDelegate({ prompt: "Launch" });

    expect(seen[1]?.tools?.rounds[0]?.results).toEqual([
      { callId: "call_1_1", name: "launch_rocket", content: 'Unknown tool "launch_rocket": the tools are get_weather, get_time', isError: true },
    ]);
  });

  it("sends what a tool returns as JSON, a string as it is, nothing as null, and what is not JSON as an error", async () => {
    const returning = (name: string, value: unknown) => defineTool({ name, description: name, parameters: z.object({}), execute: () => value });
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "text" }, { name: "list" }, { name: "nothing" }, { name: "cycle" }] }, { text: "Done." }]);
    const { runtime } = await startToolRuntime(provider, [
      returning("text", "plain words"),
      returning("list", [1, 2]),
      returning("nothing", undefined),
      returning("cycle", cycle),
    ]);

    await runtime.bridge.tasksDelegate({ prompt: "Go" });

    expect(seen[1]?.tools?.rounds[0]?.results.map(({ content, isError }) => [content, isError])).toEqual([
      ["plain words", false],
      ["[1,2]", false],
      ["null", false],
      [expect.stringMatching(/^the result is not JSON: .*circular/i), true],
    ]);
  });

  it("after maxToolRounds, makes one last call in which the model may call no tool, and warns", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const call = { toolCalls: [{ name: "get_weather", args: { city: "Paris" } }] };
    const { provider, seen } = scriptedMock([call, call, { text: "Paris: sunny, as far as I can tell." }]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [weatherTool(calls)], { maxToolRounds: 2 });

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(reply).toMatchObject({ text: "Paris: sunny, as far as I can tell.", stopReason: "end_turn" });
    expect(calls).toHaveLength(2);
    expect(seen.map((seenCall) => [seenCall.tools?.choice, seenCall.tools?.rounds.length])).toEqual([
      ["auto", 0],
      ["auto", 1],
      ["none", 2],
    ]);
    expect(eventsOf("prompt.warning")).toEqual([expect.objectContaining({ message: "maxToolRounds 2 reached: the model is asked to answer without tools" })]);
  });

  it("does not run calls the model makes when it may call no tool: its text is the answer, stopReason tool_use", async () => {
    const calls: Array<{ args: { city: string }; ctx: ToolContext }> = [];
    const call = { text: "Checking.", toolCalls: [{ name: "get_weather", args: { city: "Paris" } }] };
    const { provider } = scriptedMock([call, call]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [weatherTool(calls)], { maxToolRounds: 1 });

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(calls).toHaveLength(1);
    expect(reply).toMatchObject({ text: "Checking.\n\nChecking.", stopReason: "tool_use" });
    expect(eventsOf("prompt.warning").map((event) => event.message)).toEqual([
      "maxToolRounds 1 reached: the model is asked to answer without tools",
      "the model asked for get_weather after maxToolRounds 1: not run",
    ]);
  });

  it("streams the deltas of every round, a blank line between, and keeps the text turns in the session history", async () => {
    const { provider, seen } = scriptedMock([
      { text: "Let me check.", deltas: ["Let me ", "check."], toolCalls: [{ name: "get_weather", args: { city: "Paris" } }] },
      { text: "It is sunny.", deltas: ["It is ", "sunny."] },
      { text: "You are welcome." },
    ]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [weatherTool()]);
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Weather?" });
    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Thanks" });

    const deltas = eventsOf("prompt.delta").map((event) => event.delta);
    expect(reply.text).toBe("Let me check.\n\nIt is sunny.");
    expect(deltas.slice(0, 5)).toEqual(["Let me ", "check.", "\n\n", "It is ", "sunny."]);
    expect(seen[2]?.history).toEqual([
      { role: "user", content: "Weather?" },
      { role: "assistant", content: "Let me check.\n\nIt is sunny." },
    ]);
    expect(seen[2]?.tools?.rounds).toEqual([]);
  });

  it("reports each call as tool.called and tool.completed, with the session, request, agent and duration", async () => {
    const { provider } = scriptedMock([{ toolCalls: [{ name: "wait", args: { ms: 250 }, id: "call-wait" }] }, { text: "Waited." }]);
    let clockOfTool: { setTimeout(callback: () => void, ms: number): unknown } | undefined;
    const wait = defineTool({
      name: "wait",
      description: "Waits on the runtime's clock",
      parameters: z.object({ ms: z.number() }),
      execute: ({ ms }) => new Promise((resolve) => clockOfTool?.setTimeout(() => resolve("done"), ms)),
    });
    const { runtime, clock, eventsOf } = await startToolRuntime(provider, [wait]);
    clockOfTool = clock;
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "Wait", requestId: "r1" });
    await settle();
    expect(eventsOf("tool.called", "tool.completed")).toEqual([
      {
        type: "tool.called",
        actorId: sessionId,
        sessionId,
        requestId: "r1",
        agentId: "assistant",
        tool: "wait",
        callId: "call-wait",
        round: 1,
        args: { ms: 250 },
      },
    ]);
    clock.increment(250);
    await reply;

    expect(eventsOf("tool.completed")).toEqual([
      {
        type: "tool.completed",
        actorId: sessionId,
        sessionId,
        requestId: "r1",
        agentId: "assistant",
        tool: "wait",
        callId: "call-wait",
        round: 1,
        ok: true,
        durationMs: 250,
      },
    ]);
    const order = eventsOf("prompt.started", "tool.called", "tool.completed", "prompt.completed").map((event) => event.type);
    expect(order).toEqual(["prompt.started", "tool.called", "tool.completed", "prompt.completed"]);
  });

  it("aborts a running tool through its signal when the prompt is cancelled, and calls the model no more", async () => {
    const { tool, started, aborted } = slowTool();
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "slow_search" }] }, { text: "never" }]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [tool]);
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const prompt = runtime.bridge.sessionsPrompt({ sessionId, prompt: "Search", requestId: "r1" });
    const toolCtx = await started;
    await runtime.bridge.sessionsCancel({ sessionId });

    expect(await rejectionOf(prompt)).toMatchObject({ type: "CANCELLED" });
    await aborted;
    expect(toolCtx.signal.aborted).toBe(true);
    await settle();
    expect(seen).toHaveLength(1);
    expect(eventsOf("tool.completed")).toEqual([expect.objectContaining({ ok: false, error: { kind: "cancelled", message: "Prompt cancelled" } })]);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("aborts a running tool when the prompt's timeout passes, and fails the prompt with TIMEOUT", async () => {
    const { tool, started, aborted } = slowTool();
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "slow_search" }] }, { text: "never" }]);
    const { runtime, clock } = await startToolRuntime(provider, [tool]);
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const prompt = runtime.bridge.sessionsPrompt({ sessionId, prompt: "Search", timeout: 5000 });
    await started;
    clock.increment(5000);

    expect(await rejectionOf(prompt)).toMatchObject({ type: "TIMEOUT" });
    await aborted;
    await settle();
    expect(seen).toHaveLength(1);
  });

  it("ends a cancelled prompt even when the tool ignores its signal", async () => {
    let finish = (_value: string): void => undefined;
    const stubborn = defineTool({
      name: "stubborn",
      description: "Ignores its signal",
      parameters: z.object({}),
      execute: () =>
        new Promise<string>((resolve) => {
          finish = resolve;
        }),
    });
    const { provider, seen } = scriptedMock([{ toolCalls: [{ name: "stubborn" }] }, { text: "never" }]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [stubborn]);
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const prompt = runtime.bridge.sessionsPrompt({ sessionId, prompt: "Go" });
    await settle();
    await runtime.bridge.sessionsCancel({ sessionId });

    expect(await rejectionOf(prompt)).toMatchObject({ type: "CANCELLED" });
    finish("late");
    await settle();
    expect(seen).toHaveLength(1);
    expect(eventsOf("tool.completed")).toEqual([expect.objectContaining({ ok: false, error: expect.objectContaining({ kind: "cancelled" }) })]);
  });

  it("runs the loop behind sessions_prompt called by name, as the server and MCP call it", async () => {
    const { provider } = scriptedMock([{ toolCalls: [{ name: "get_time", args: { zone: "UTC" } }] }, { text: "It is noon." }]);
    const { runtime, eventsOf } = await startToolRuntime(provider, [timeTool()]);
    const { sessionId } = (await runtime.bridge.call("sessions_create", {})) as { sessionId: string };

    const reply = await runtime.bridge.call("sessions_prompt", { sessionId, prompt: "Time?" });

    expect(reply).toMatchObject({ text: "It is noon.", stopReason: "end_turn" });
    expect(eventsOf("tool.completed")).toEqual([expect.objectContaining({ tool: "get_time", ok: true })]);
  });

  it("answers a model given no tools with its calls as they are, as before tools existed", async () => {
    const { provider, seen } = scriptedMock([{ text: "I would call a tool.", toolCalls: [{ name: "get_weather" }] }]);
    const { runtime, eventsOf } = await startToolRuntime(provider, []);

    const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(reply).toMatchObject({ text: "I would call a tool.", stopReason: "tool_use" });
    expect(seen.map((seenCall) => seenCall.tools)).toEqual([undefined]);
    expect(eventsOf("tool.called")).toEqual([]);
  });
});

describe("an agent's tool options", () => {
  it("refuses two tools of one name with CONFIG", () => {
    expect(() => createMultiProviderAgent({ id: "a", providers: [mock()], tools: [weatherTool(), failingTool()] })).toThrow(
      expect.objectContaining({ type: "CONFIG", message: "tools: duplicate tool name get_weather" }),
    );
  });

  it.each([0, -1, 1.5])("refuses maxToolRounds %s with CONFIG", (maxToolRounds) => {
    expect(() => createMultiProviderAgent({ id: "a", providers: [mock()], tools: [weatherTool()], maxToolRounds })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "maxToolRounds" }) }),
    );
  });

  it("defaults maxToolRounds to 8", async () => {
    const { provider, seen } = scriptedMock(Array.from({ length: 9 }, () => ({ toolCalls: [{ name: "get_time", args: { zone: "UTC" } }] })));
    const { runtime } = await startToolRuntime(provider, [timeTool()]);

    await runtime.bridge.tasksDelegate({ prompt: "Time?" });

    expect(seen.map((seenCall) => seenCall.tools?.choice)).toEqual([...Array(8).fill("auto"), "none"]);
  });
});
