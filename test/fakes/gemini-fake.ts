/**
 * A fake Gemini API: `POST /v1beta/models/<model>:generateContent` (JSON) and
 * `POST /v1beta/models/<model>:streamGenerateContent?alt=sse` (SSE `data:` frames separated by CRLF pairs,
 * each a whole GenerateContentResponse; the last carries `finishReason` and the final `usageMetadata`).
 * Function calls come whole, as `functionCall` parts of the last chunk (the Gemini API does not stream
 * arguments), with no `id` unless one is scripted (the Gemini API gives none).
 */
import { FakeServer, type FakeResponse, type FakeScript, type RecordedRequest, type SseFrame } from "./fake-server.js";

/** A `functionCall` part of the fake model, with the `thoughtSignature` Gemini's thinking models attach. */
export interface ContentFunctionCall {
  name: string;
  args: Record<string, unknown>;
  id?: string;
  thoughtSignature?: string;
}

/** One scripted answer, rendered as JSON or SSE to match the request. */
export interface ContentReply {
  /** Default: a greeting, or no text when the answer calls functions. */
  text?: string;
  functionCalls?: ContentFunctionCall[];
  /** Streamed pieces; default: `text` in two halves. */
  deltas?: string[];
  finishReason?: string;
  usage?: { promptTokenCount: number; candidatesTokenCount: number };
  /** Pause before each streamed chunk. */
  delayMs?: number;
  /** Stream the deltas, then neither finish nor close: wait for the client to disconnect. */
  hangAfterDeltas?: boolean;
}

const DEFAULT_USAGE = { promptTokenCount: 17, candidatesTokenCount: 5 };
const ROUTE = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)$/;

function halves(text: string): string[] {
  const middle = Math.ceil(text.length / 2);
  return [text.slice(0, middle), text.slice(middle)].filter((piece) => piece !== "");
}

/** The model named in a request's path. */
export function modelOf(request: RecordedRequest): string | undefined {
  return ROUTE.exec(request.path)?.[1];
}

/** Whether a request is `streamGenerateContent`. */
export function isStreamRequest(request: RecordedRequest): boolean {
  return ROUTE.exec(request.path)?.[2] === "streamGenerateContent";
}

/** A Gemini answer: JSON for generateContent, SSE chunks for streamGenerateContent. */
export function contentReply(reply: ContentReply = {}): FakeScript {
  const functionCalls = reply.functionCalls ?? [];
  const callParts = functionCalls.map(({ name, args, id, thoughtSignature }) => ({
    functionCall: { name, args, ...(id === undefined ? {} : { id }) },
    ...(thoughtSignature === undefined ? {} : { thoughtSignature }),
  }));
  const text = reply.text ?? (functionCalls.length > 0 ? "" : "Hello from the Gemini fake");
  const finishReason = reply.finishReason ?? "STOP";
  const usage = reply.usage ?? DEFAULT_USAGE;
  const usageMetadata = { ...usage, totalTokenCount: usage.promptTokenCount + usage.candidatesTokenCount };
  return (request): FakeResponse => {
    const modelVersion = modelOf(request) ?? "gemini-2.5-flash";
    if (!isStreamRequest(request)) {
      return {
        kind: "json",
        body: {
          candidates: [{ content: { role: "model", parts: [...(text === "" ? [] : [{ text }]), ...callParts] }, finishReason, index: 0 }],
          usageMetadata,
          modelVersion,
          responseId: "resp-fake",
        },
      };
    }
    const chunk = (part: string, last: boolean): SseFrame => ({
      data: {
        candidates: [
          {
            content: { role: "model", parts: [...(part === "" ? [] : [{ text: part }]), ...(last ? callParts : [])] },
            index: 0,
            ...(last ? { finishReason } : {}),
          },
        ],
        usageMetadata: last ? usageMetadata : { promptTokenCount: usage.promptTokenCount, totalTokenCount: usage.promptTokenCount },
        modelVersion,
        responseId: "resp-fake",
      },
      ...(reply.delayMs !== undefined ? { delayMs: reply.delayMs } : {}),
    });
    const deltas = reply.deltas ?? (text === "" ? [""] : halves(text));
    if (reply.hangAfterDeltas) return { kind: "sse", separator: "\r\n\r\n", frames: deltas.map((delta) => chunk(delta, false)), hang: true };
    return { kind: "sse", separator: "\r\n\r\n", frames: deltas.map((delta, index) => chunk(delta, index === deltas.length - 1)) };
  };
}

/** A Google API error answer: `{ error: { code, message, status, details } }`. */
export function googleError(status: number, message: string, statusName: string, details: unknown[] = [], headers: Record<string, string> = {}): FakeResponse {
  return { kind: "json", status, headers, body: { error: { code: status, message, status: statusName, details } } };
}

/** Starts a fake Gemini API; point the SDK's `httpOptions.baseUrl` at `url`. */
export async function startGeminiFake(): Promise<FakeServer> {
  return new FakeServer((request) => request.method === "POST" && ROUTE.test(request.path), contentReply()).listen();
}
