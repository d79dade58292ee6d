import { describe, expect, it } from "vitest";
import { gemini, type ToolRequest } from "../../src/index.js";
import { contentReply, startGeminiFake } from "../fakes/gemini-fake.js";
import { promptContext } from "../support/prompt-context.js";
import { failingTool, startToolRuntime, timeTool, weatherTool } from "./support.js";

const API_KEY = "AIzaSy-test-0123456789abcdef";

const WEATHER = {
  name: "get_weather",
  description: "The current weather in a city",
  inputSchema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

describe("GeminiProvider tool calling (functionDeclarations, functionCall, functionResponse)", () => {
  it.each([false, true])(
    "declares the tools with parametersJsonSchema and sends the model's parts back, thought signatures included (stream %s)",
    async (stream) => {
      const fake = await startGeminiFake();
      fake.enqueue(
        contentReply({
          functionCalls: [
            { name: "get_weather", args: { city: "Oslo" }, thoughtSignature: "c2lnLTE=" },
            { name: "get_time", args: { zone: "Europe/Oslo" } },
          ],
        }),
        contentReply({ text: "Snow, at noon." }),
      );
      const { runtime, eventsOf } = await startToolRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, stream }), [
        weatherTool(),
        timeTool(),
      ]);

      const reply = await runtime.bridge.tasksDelegate({ prompt: "Oslo?" });

      expect(reply.text).toBe("Snow, at noon.");
      expect(fake.requests[0]?.body.tools).toEqual([
        {
          functionDeclarations: [
            { name: "get_weather", description: "The current weather in a city", parametersJsonSchema: WEATHER.inputSchema },
            {
              name: "get_time",
              description: "The local time in a timezone",
              parametersJsonSchema: { type: "object", properties: { zone: { type: "string" } }, required: ["zone"] },
            },
          ],
        },
      ]);
      expect(fake.requests[0]?.body).not.toHaveProperty("toolConfig");
      expect(fake.requests[1]?.body.contents).toEqual([
        { role: "user", parts: [{ text: "Oslo?" }] },
        {
          role: "model",
          parts: [
            { functionCall: { name: "get_weather", args: { city: "Oslo" } }, thoughtSignature: "c2lnLTE=" },
            { functionCall: { name: "get_time", args: { zone: "Europe/Oslo" } } },
          ],
        },
        {
          role: "user",
          parts: [
            { functionResponse: { name: "get_weather", response: { output: '{"city":"Oslo","sky":"sunny"}' } } },
            { functionResponse: { name: "get_time", response: { output: "12:00 in Europe/Oslo" } } },
          ],
        },
      ]);
      // Gemini gives its calls no id: troupe numbers them by round and position.
      expect(eventsOf("tool.called").map((event) => event.callId)).toEqual(["call_1_1", "call_1_2"]);
    },
  );

  it("answers a call that has an id with a functionResponse of that id, and an error as { error }", async () => {
    const fake = await startGeminiFake();
    fake.enqueue(contentReply({ functionCalls: [{ id: "fc-7", name: "get_weather", args: { city: "Rome" } }] }), contentReply({ text: "Down." }));
    const { runtime, eventsOf } = await startToolRuntime(gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url }), [failingTool("the service is down")]);

    await runtime.bridge.tasksDelegate({ prompt: "Rome?" });

    expect(fake.lastRequest.body.contents.at(-1)).toEqual({
      role: "user",
      parts: [{ functionResponse: { id: "fc-7", name: "get_weather", response: { error: "the service is down" } } }],
    });
    expect(eventsOf("tool.called").map((event) => event.callId)).toEqual(["fc-7"]);
  });

  it("sends mode NONE in the last call, and rebuilds a round it did not get from the model from its calls", async () => {
    const fake = await startGeminiFake();
    const provider = gemini({ credentials: { apiKey: API_KEY }, baseURL: fake.url, stream: false });
    const tools: ToolRequest = {
      tools: [WEATHER],
      choice: "none",
      rounds: [
        {
          text: "Checking.",
          calls: [{ callId: "c1", name: "get_weather", argumentsJson: '{"city":"Rome"}' }],
          results: [{ callId: "c1", name: "get_weather", content: "sunny", isError: false }],
        },
      ],
    };

    await provider.complete(promptContext({ prompt: "Rome?" }).ctx, tools);

    expect(fake.lastRequest.body).toMatchObject({
      toolConfig: { functionCallingConfig: { mode: "NONE" } },
      contents: [
        { role: "user", parts: [{ text: "Rome?" }] },
        { role: "model", parts: [{ text: "Checking." }, { functionCall: { id: "c1", name: "get_weather", args: { city: "Rome" } } }] },
        { role: "user", parts: [{ functionResponse: { id: "c1", name: "get_weather", response: { output: "sunny" } } }] },
      ],
    });
  });
});
