/**
 * The three fake model APIs behind one shape, so that the tool loop's behaviour is tested the same way over
 * each provider's own wire format (the exact bodies are checked per provider, in `<provider>-tools.test.ts`).
 */
import type { Usage } from "../../machines/index.js";
import { anthropic, gemini, openAI, type Provider } from "../../src/index.js";
import { messageReply, startAnthropicFake } from "../fakes/anthropic-fake.js";
import type { FakeScript, FakeServer, RecordedRequest } from "../fakes/fake-server.js";
import { contentReply, startGeminiFake } from "../fakes/gemini-fake.js";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";

/** A call the fake model makes. */
export interface WireCall {
  id: string;
  name: string;
  args: Record<string, unknown>;
}

/** A tool result as a request carries it, in a form common to the three APIs. */
export interface WireResult {
  content: string;
  isError: boolean;
}

/** One fake API and how to read and script it. */
export interface WireCase {
  name: "openai" | "anthropic" | "gemini";
  start(): Promise<FakeServer>;
  provider(fake: FakeServer, stream: boolean): Provider;
  /** An answer that calls these tools, after `text` when given. */
  calling(calls: WireCall[], text?: string): FakeScript;
  /** An answer in text. */
  answering(text: string): FakeScript;
  /** The usage each scripted answer reports. */
  usage: Usage;
  /** The names of the tools a request declares. */
  declared(request: RecordedRequest): string[];
  /** Whether a request forbids tool calls (the loop's last call). */
  forbidsTools(request: RecordedRequest): boolean;
  /** The results a request sends after the model's last turn. */
  results(request: RecordedRequest): WireResult[];
}

/** What the tests use as the OpenAI, Anthropic and Gemini keys. */
const KEY = "test-key-0123456789abcdef";

/** The three APIs. */
export const WIRE_CASES: WireCase[] = [
  {
    name: "openai",
    start: startOpenAIFake,
    provider: (fake, stream) => openAI({ credentials: { apiKey: KEY }, baseURL: `${fake.url}/v1`, stream, maxRetries: 0 }),
    calling: (calls, text) =>
      chatReply({ ...(text === undefined ? {} : { text }), toolCalls: calls.map(({ id, name, args }) => ({ id, name, arguments: JSON.stringify(args) })) }),
    answering: (text) => chatReply({ text }),
    usage: { inputTokens: 11, outputTokens: 7 },
    declared: (request) => (request.body.tools ?? []).map((tool: { function: { name: string } }) => tool.function.name),
    forbidsTools: (request) => request.body.tool_choice === "none",
    results: (request) => {
      const messages: Array<{ role: string; content: string }> = request.body.messages;
      const lastAssistant = messages.map((message) => message.role).lastIndexOf("assistant");
      return messages
        .slice(lastAssistant + 1)
        .filter((message) => message.role === "tool")
        .map(({ content }) => (content.startsWith("Error: ") ? { content: content.slice("Error: ".length), isError: true } : { content, isError: false }));
    },
  },
  {
    name: "anthropic",
    start: startAnthropicFake,
    provider: (fake, stream) => anthropic({ credentials: { apiKey: KEY }, baseURL: fake.url, stream, maxRetries: 0 }),
    calling: (calls, text) =>
      messageReply({ ...(text === undefined ? {} : { text }), toolUses: calls.map(({ id, name, args }) => ({ id, name, input: args })) }),
    answering: (text) => messageReply({ text }),
    usage: { inputTokens: 13, outputTokens: 9 },
    declared: (request) => (request.body.tools ?? []).map((tool: { name: string }) => tool.name),
    forbidsTools: (request) => request.body.tool_choice?.type === "none",
    results: (request) => {
      const last = request.body.messages.at(-1) as { role: string; content: unknown };
      if (last.role !== "user" || !Array.isArray(last.content)) return [];
      return (last.content as Array<{ type: string; content?: string; is_error?: boolean }>)
        .filter((block) => block.type === "tool_result")
        .map((block) => ({ content: block.content ?? "", isError: block.is_error === true }));
    },
  },
  {
    name: "gemini",
    start: startGeminiFake,
    provider: (fake, stream) => gemini({ credentials: { apiKey: KEY }, baseURL: fake.url, stream, maxRetries: 0 }),
    // The Gemini API gives function calls no id: the fake leaves the scripted one out.
    calling: (calls, text) => contentReply({ ...(text === undefined ? {} : { text }), functionCalls: calls.map(({ name, args }) => ({ name, args })) }),
    answering: (text) => contentReply({ text }),
    usage: { inputTokens: 17, outputTokens: 5 },
    declared: (request) =>
      (request.body.tools ?? []).flatMap((tool: { functionDeclarations?: Array<{ name: string }> }) =>
        (tool.functionDeclarations ?? []).map(({ name }) => name),
      ),
    forbidsTools: (request) => request.body.toolConfig?.functionCallingConfig?.mode === "NONE",
    results: (request) => {
      const last = request.body.contents.at(-1) as { role: string; parts: Array<{ functionResponse?: { response: { output?: string; error?: string } } }> };
      return last.parts.flatMap((part) =>
        part.functionResponse === undefined
          ? []
          : [
              part.functionResponse.response.error === undefined
                ? { content: part.functionResponse.response.output ?? "", isError: false }
                : { content: part.functionResponse.response.error, isError: true },
            ],
      );
    },
  },
];

/** Each API, streamed and not: `[label, case, stream]` for `describe.each`. */
export const WIRE_MODES: Array<[string, WireCase, boolean]> = WIRE_CASES.flatMap((wire): Array<[string, WireCase, boolean]> => [
  [`${wire.name} (JSON)`, wire, false],
  [`${wire.name} (streamed)`, wire, true],
]);
