/**
 * A fake Anthropic Messages API: `POST /v1/messages`, answering JSON or, for `stream: true`, the SSE event
 * sequence message_start, content_block_start, ping, content_block_delta…, content_block_stop,
 * message_delta, message_stop — each with its `event:` line, as the SDK requires. A thinking block streams
 * as `thinking_delta` and `signature_delta`, a `tool_use` block as `input_json_delta` pieces.
 */
import { FakeServer, type FakeResponse, type FakeScript, type SseFrame } from "./fake-server.js";

/** A `tool_use` block of the fake model. `partialJson` replaces the streamed JSON of `input` (to send broken JSON). */
export interface MessageToolUse {
  id: string;
  name: string;
  input: Record<string, unknown>;
  partialJson?: string[];
}

/** One scripted answer, rendered as JSON or SSE to match the request. */
export interface MessageReply {
  /** Default: a greeting, or no text block when the answer uses tools. */
  text?: string;
  /** A thinking block before the text. */
  thinking?: { thinking: string; signature: string };
  /** `tool_use` blocks after the text; `stopReason` then defaults to `tool_use`. */
  toolUses?: MessageToolUse[];
  /** Streamed pieces; default: `text` in two halves. */
  deltas?: string[];
  stopReason?: string;
  usage?: { input_tokens: number; output_tokens: number };
  /** Pause before each streamed event. */
  delayMs?: number;
  /** Stream the deltas, then neither stop nor close: wait for the client to disconnect. */
  hangAfterDeltas?: boolean;
}

const DEFAULT_USAGE = { input_tokens: 13, output_tokens: 9 };

function halves(text: string): string[] {
  const middle = Math.ceil(text.length / 2);
  return [text.slice(0, middle), text.slice(middle)].filter((piece) => piece !== "");
}

/** A Messages answer: JSON for a plain request, the SSE event sequence for `stream: true`. */
export function messageReply(reply: MessageReply = {}): FakeScript {
  const toolUses = reply.toolUses ?? [];
  const text = reply.text ?? (toolUses.length > 0 ? "" : "Hello from the Anthropic fake");
  const stopReason = reply.stopReason ?? (toolUses.length > 0 ? "tool_use" : "end_turn");
  const usage = reply.usage ?? DEFAULT_USAGE;
  return (request): FakeResponse => {
    const model = request.body?.model ?? "claude-sonnet-4-6";
    const message = { id: "msg_fake", type: "message", role: "assistant", model };
    if (request.body?.stream !== true) {
      return {
        kind: "json",
        body: {
          ...message,
          content: [
            ...(reply.thinking ? [{ type: "thinking", ...reply.thinking }] : []),
            ...(text === "" && toolUses.length > 0 ? [] : [{ type: "text", text }]),
            ...toolUses.map(({ id, name, input }) => ({ type: "tool_use", id, name, input })),
          ],
          stop_reason: stopReason,
          stop_sequence: null,
          usage,
        },
      };
    }
    const event = (type: string, data: Record<string, unknown>): SseFrame => ({
      event: type,
      data: { type, ...data },
      ...(reply.delayMs !== undefined ? { delayMs: reply.delayMs } : {}),
    });
    let index = 0;
    const frames: SseFrame[] = [
      event("message_start", {
        message: { ...message, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: usage.input_tokens, output_tokens: 1 } },
      }),
    ];
    if (reply.thinking) {
      frames.push(
        event("content_block_start", { index, content_block: { type: "thinking", thinking: "", signature: "" } }),
        ...halves(reply.thinking.thinking).map((piece) => event("content_block_delta", { index, delta: { type: "thinking_delta", thinking: piece } })),
        event("content_block_delta", { index, delta: { type: "signature_delta", signature: reply.thinking.signature } }),
        event("content_block_stop", { index }),
      );
      index += 1;
    }
    const textIndex = index;
    if (text !== "" || toolUses.length === 0) {
      frames.push(
        event("content_block_start", { index, content_block: { type: "text", text: "" } }),
        event("ping", {}),
        ...(reply.deltas ?? halves(text)).map((delta) => event("content_block_delta", { index: textIndex, delta: { type: "text_delta", text: delta } })),
      );
      if (reply.hangAfterDeltas) return { kind: "sse", frames, hang: true };
      frames.push(event("content_block_stop", { index }));
      index += 1;
    }
    for (const toolUse of toolUses) {
      const blockIndex = index;
      frames.push(
        event("content_block_start", { index: blockIndex, content_block: { type: "tool_use", id: toolUse.id, name: toolUse.name, input: {} } }),
        ...(toolUse.partialJson ?? halves(JSON.stringify(toolUse.input))).map((piece) =>
          event("content_block_delta", { index: blockIndex, delta: { type: "input_json_delta", partial_json: piece } }),
        ),
        event("content_block_stop", { index: blockIndex }),
      );
      index += 1;
    }
    frames.push(
      event("message_delta", { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: usage.output_tokens } }),
      event("message_stop", {}),
    );
    return { kind: "sse", frames };
  };
}

/** An Anthropic error answer: `{ type: "error", error: { type, message } }` with this status. */
export function messageError(status: number, message: string, headers: Record<string, string> = {}, type = "invalid_request_error"): FakeResponse {
  return { kind: "json", status, headers, body: { type: "error", error: { type, message } } };
}

/** Starts a fake Anthropic API; point the SDK at `url` (no `/v1`: the SDK adds it). */
export async function startAnthropicFake(): Promise<FakeServer> {
  return new FakeServer((request) => request.method === "POST" && request.path === "/v1/messages", messageReply()).listen();
}
