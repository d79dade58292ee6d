/**
 * A fake OpenAI Chat Completions API: `POST /v1/chat/completions`, answering JSON or, for `stream: true`,
 * SSE `data:` chunks (usage in the last one when `stream_options.include_usage`) ending in `data: [DONE]`.
 * Tool calls come as `message.tool_calls`, or streamed as the API streams them: per call, a first delta with
 * its `index`, `id`, `type` and name, then its `arguments` in pieces.
 */
import { FakeServer, type FakeResponse, type FakeScript, type SseFrame } from "./fake-server.js";

/** A function call the fake model makes; `arguments` is the JSON text as the API sends it (it may be broken). */
export interface ChatToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** One scripted answer, rendered as JSON or SSE to match the request. */
export interface ChatReply {
  /** Default: a greeting, or no content when the answer calls tools. */
  text?: string;
  /** Function calls; `finishReason` then defaults to `tool_calls`. */
  toolCalls?: ChatToolCall[];
  /** Streamed pieces; default: `text` in two halves. */
  deltas?: string[];
  finishReason?: string;
  usage?: { prompt_tokens: number; completion_tokens: number };
  /** Pause before each streamed chunk. */
  delayMs?: number;
  /** Stream the deltas, then neither finish nor close: wait for the client to disconnect. */
  hangAfterDeltas?: boolean;
}

const DEFAULT_USAGE = { prompt_tokens: 11, completion_tokens: 7 };

function halves(text: string): string[] {
  const middle = Math.ceil(text.length / 2);
  return [text.slice(0, middle), text.slice(middle)].filter((piece) => piece !== "");
}

function usageOf(usage: ChatReply["usage"]): Record<string, number> {
  const { prompt_tokens, completion_tokens } = usage ?? DEFAULT_USAGE;
  return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
}

/** A Chat Completions answer: JSON for a plain request, SSE chunks for `stream: true`. */
export function chatReply(reply: ChatReply = {}): FakeScript {
  const toolCalls = reply.toolCalls ?? [];
  const text = reply.text ?? (toolCalls.length > 0 ? "" : "Hello from the OpenAI fake");
  const finishReason = reply.finishReason ?? (toolCalls.length > 0 ? "tool_calls" : "stop");
  return (request): FakeResponse => {
    const model = request.body?.model ?? "gpt-4o";
    const base = { id: "chatcmpl-fake", created: 1_700_000_000, model, system_fingerprint: "fp_fake" };
    if (request.body?.stream !== true) {
      return {
        kind: "json",
        body: {
          ...base,
          object: "chat.completion",
          choices: [
            {
              index: 0,
              message: {
                role: "assistant",
                content: text === "" && toolCalls.length > 0 ? null : text,
                refusal: null,
                ...(toolCalls.length > 0
                  ? { tool_calls: toolCalls.map(({ id, name, arguments: args }) => ({ id, type: "function", function: { name, arguments: args } })) }
                  : {}),
              },
              logprobs: null,
              finish_reason: finishReason,
            },
          ],
          usage: usageOf(reply.usage),
        },
      };
    }
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}): SseFrame => ({
      data: { ...base, object: "chat.completion.chunk", choices, ...extra },
      ...(reply.delayMs !== undefined ? { delayMs: reply.delayMs } : {}),
    });
    const frames: SseFrame[] = [
      chunk([{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]),
      ...(reply.deltas ?? halves(text)).map((delta) => chunk([{ index: 0, delta: { content: delta }, logprobs: null, finish_reason: null }])),
      ...toolCalls.flatMap((call, index) => [
        chunk([
          {
            index: 0,
            delta: { tool_calls: [{ index, id: call.id, type: "function", function: { name: call.name, arguments: "" } }] },
            logprobs: null,
            finish_reason: null,
          },
        ]),
        ...halves(call.arguments).map((piece) =>
          chunk([{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, logprobs: null, finish_reason: null }]),
        ),
      ]),
    ];
    if (reply.hangAfterDeltas) return { kind: "sse", frames, hang: true };
    frames.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }]));
    if (request.body?.stream_options?.include_usage === true) frames.push(chunk([], { usage: usageOf(reply.usage) }));
    frames.push({ data: "[DONE]" });
    return { kind: "sse", frames };
  };
}

/** An OpenAI error answer: `{ error: { message, type, param, code } }` with this status. */
export function chatError(
  status: number,
  message: string,
  headers: Record<string, string> = {},
  type = "invalid_request_error",
  code: string | null = null,
): FakeResponse {
  return { kind: "json", status, headers, body: { error: { message, type, param: null, code } } };
}

/** Starts a fake OpenAI API; point the SDK at `baseURL` (it includes `/v1`). */
export async function startOpenAIFake(): Promise<FakeServer & { baseURL: string }> {
  const server = await new FakeServer((request) => request.method === "POST" && request.path === "/v1/chat/completions", chatReply()).listen();
  return Object.assign(server, { baseURL: `${server.url}/v1` });
}
