import { describe, expect, it } from "vitest";
import { anthropic, type ToolRequest } from "../../src/index.js";
import { messageReply, startAnthropicFake } from "../fakes/anthropic-fake.js";
import { promptContext } from "../support/prompt-context.js";
import { startToolRuntime, weatherTool } from "./support.js";

const API_KEY = "sk-ant-test-0123456789abcdef";

const WEATHER = {
  name: "get_weather",
  description: "The current weather in a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

describe("AnthropicProvider tool calling (Messages tools, tool_use, tool_result)", () => {
  it.each([false, true])(
    "sends the tools with input_schema, the model's turn back as it came (thinking included), and tool_result blocks (stream %s)",
    async (stream) => {
      const fake = await startAnthropicFake();
      fake.enqueue(
        messageReply({
          thinking: { thinking: "The user wants the weather.", signature: "sig-123" },
          text: "Let me check.",
          toolUses: [{ id: "toolu_1", name: "get_weather", input: { city: "Paris" } }],
        }),
        messageReply({ text: "Sunny." }),
      );
      const { runtime } = await startToolRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url, stream }), [weatherTool()]);

      const reply = await runtime.bridge.tasksDelegate({ prompt: "Weather in Paris?" });

      expect(reply.text).toBe("Let me check.\n\nSunny.");
      expect(fake.requests[0]?.body.tools).toEqual([{ name: "get_weather", description: "The current weather in a city", input_schema: WEATHER.inputSchema }]);
      expect(fake.requests[0]?.body).not.toHaveProperty("tool_choice");
      expect(fake.requests[1]?.body.messages).toEqual([
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "The user wants the weather.", signature: "sig-123" },
            { type: "text", text: "Let me check." },
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
          ],
        },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: '{"city":"Paris","sky":"sunny"}' }] },
      ]);
    },
  );

  it("marks a failed call's tool_result with is_error, and sends tool_choice none in the last call", async () => {
    const fake = await startAnthropicFake();
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url });
    const tools: ToolRequest = {
      tools: [WEATHER],
      choice: "none",
      rounds: [
        {
          text: "",
          calls: [{ callId: "toolu_1", name: "get_weather", argumentsJson: '{"city":"Paris"}' }],
          results: [{ callId: "toolu_1", name: "get_weather", content: "the service is down", isError: true }],
        },
      ],
    };

    await provider.complete(promptContext({ prompt: "Weather?" }).ctx, tools);

    expect(fake.lastRequest.body).toMatchObject({
      tool_choice: { type: "none" },
      messages: [
        { role: "user", content: "Weather?" },
        // A round it did not get from the model (no modelTurn) is rebuilt from its text and calls.
        { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "the service is down", is_error: true }] },
      ],
    });
  });

  it("assembles a streamed tool_use input from its input_json_delta pieces", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(messageReply({ toolUses: [{ id: "toolu_1", name: "get_weather", input: {}, partialJson: ['{"ci', 'ty": "Os', 'lo"}'] }] }));
    const provider = anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url });

    const reply = await provider.complete(promptContext().ctx, { tools: [WEATHER], choice: "auto", rounds: [] });

    expect(reply).toMatchObject({
      text: "",
      stopReason: "tool_use",
      toolCalls: [{ callId: "toolu_1", name: "get_weather", argumentsJson: '{"city": "Oslo"}' }],
    });
  });

  it("tells the model its streamed input is not JSON, and sends that tool_use back with an empty input", async () => {
    const fake = await startAnthropicFake();
    fake.enqueue(
      messageReply({ toolUses: [{ id: "toolu_1", name: "get_weather", input: {}, partialJson: ['{"city": "Pa'] }] }),
      messageReply({ text: "Sorry." }),
    );
    const { runtime } = await startToolRuntime(anthropic({ credentials: { apiKey: API_KEY }, baseURL: fake.url }), [weatherTool()]);

    await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    const [assistant, results] = fake.lastRequest.body.messages.slice(-2);
    expect(assistant).toEqual({ role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: {} }] });
    expect(results.content).toEqual([
      {
        type: "tool_result",
        tool_use_id: "toolu_1",
        content: expect.stringMatching(/^Invalid arguments for get_weather: the arguments are not JSON/),
        is_error: true,
      },
    ]);
  });
});
