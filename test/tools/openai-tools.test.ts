import { describe, expect, it } from "vitest";
import { openAI, type ToolRequest } from "../../src/index.js";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { promptContext } from "../support/prompt-context.js";
import { startToolRuntime, weatherTool } from "./support.js";

const API_KEY = "sk-test-0123456789abcdef";

const WEATHER = {
  name: "get_weather",
  description: "The current weather in a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

describe("OpenAIProvider tool calling (Chat Completions tools, tool_calls, role tool)", () => {
  it("declares the tools as functions and sends each round as an assistant tool_calls message and tool messages", async () => {
    const fake = await startOpenAIFake();
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, stream: false });
    const tools: ToolRequest = {
      tools: [WEATHER],
      choice: "auto",
      rounds: [
        {
          text: "",
          calls: [
            { callId: "call_a", name: "get_weather", argumentsJson: '{"city":"Oslo"}' },
            { callId: "call_b", name: "get_weather", argumentsJson: '{"city":"Rome"}' },
          ],
          results: [
            { callId: "call_a", name: "get_weather", content: '{"sky":"snow"}', isError: false },
            { callId: "call_b", name: "get_weather", content: "the service is down", isError: true },
          ],
        },
      ],
    };

    await provider.complete(promptContext({ prompt: "Oslo and Rome?", runtimeParams: { systemPrompt: "Be brief." } }).ctx, tools);

    expect(fake.lastRequest.body).toEqual({
      model: "gpt-4o",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Oslo and Rome?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_a", type: "function", function: { name: "get_weather", arguments: '{"city":"Oslo"}' } },
            { id: "call_b", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_a", content: '{"sky":"snow"}' },
        { role: "tool", tool_call_id: "call_b", content: "Error: the service is down" },
      ],
      tools: [{ type: "function", function: { name: "get_weather", description: "The current weather in a city", parameters: WEATHER.inputSchema } }],
      stream: false,
    });
  });

  it.each([false, true])("returns the model's tool_calls with stopReason tool_use (stream %s)", async (stream) => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ text: "Checking.", toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city":"Paris"}' }] }));
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, stream });

    const reply = await provider.complete(promptContext().ctx, { tools: [WEATHER], choice: "auto", rounds: [] });

    expect(reply).toEqual({
      text: "Checking.",
      stopReason: "tool_use",
      usage: { inputTokens: 11, outputTokens: 7 },
      toolCalls: [{ callId: "call_1", name: "get_weather", argumentsJson: '{"city":"Paris"}' }],
    });
  });

  it("assembles streamed tool_call deltas by index, even interleaved", async () => {
    const fake = await startOpenAIFake();
    const chunk = (delta: unknown, finish: string | null = null) => ({
      data: {
        id: "chatcmpl-1",
        object: "chat.completion.chunk",
        created: 1,
        model: "gpt-4o",
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      },
    });
    fake.enqueue({
      kind: "sse",
      frames: [
        chunk({ role: "assistant", content: null }),
        chunk({ tool_calls: [{ index: 0, id: "call_x", type: "function", function: { name: "get_weather", arguments: "" } }] }),
        chunk({ tool_calls: [{ index: 1, id: "call_y", type: "function", function: { name: "get_weather", arguments: '{"ci' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
        chunk({ tool_calls: [{ index: 1, function: { arguments: 'ty":"Rome"}' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"Oslo"}' } }] }),
        chunk({}, "tool_calls"),
        { data: "[DONE]" },
      ],
    });
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL });

    const reply = await provider.complete(promptContext().ctx, { tools: [WEATHER], choice: "auto", rounds: [] });

    expect(reply.toolCalls).toEqual([
      { callId: "call_x", name: "get_weather", argumentsJson: '{"city":"Oslo"}' },
      { callId: "call_y", name: "get_weather", argumentsJson: '{"city":"Rome"}' },
    ]);
  });

  it("sends tool_choice none in the last call after maxToolRounds", async () => {
    const fake = await startOpenAIFake();
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL });

    await provider.complete(promptContext().ctx, { tools: [WEATHER], choice: "none", rounds: [] });

    expect(fake.lastRequest.body).toMatchObject({ tools: [expect.objectContaining({ type: "function" })], tool_choice: "none" });
  });

  it("sends no tools field when the agent has no tools", async () => {
    const fake = await startOpenAIFake();
    const provider = openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL });

    await provider.complete(promptContext().ctx);

    expect(fake.lastRequest.body).not.toHaveProperty("tools");
    expect(fake.lastRequest.body).not.toHaveProperty("tool_choice");
  });

  it.each([false, true])("tells the model its arguments are not JSON (stream %s)", async (stream) => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ toolCalls: [{ id: "call_1", name: "get_weather", arguments: '{"city": "Par' }] }), chatReply({ text: "Sorry." }));
    const { runtime, eventsOf } = await startToolRuntime(openAI({ credentials: { apiKey: API_KEY }, baseURL: fake.baseURL, stream }), [weatherTool()]);

    await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    const toolMessage = fake.lastRequest.body.messages.at(-1);
    expect(toolMessage).toEqual({
      role: "tool",
      tool_call_id: "call_1",
      content: expect.stringMatching(/^Error: Invalid arguments for get_weather: the arguments are not JSON \(.*\): \{"city": "Par$/),
    });
    expect(eventsOf("tool.called")).toEqual([expect.objectContaining({ args: '{"city": "Par' })]);
    expect(eventsOf("tool.completed")).toEqual([expect.objectContaining({ ok: false, error: expect.objectContaining({ kind: "bad_arguments" }) })]);
  });
});
