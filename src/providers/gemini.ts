/**
 * `GeminiProvider` ("gemini"): the Gemini API's generateContent / streamGenerateContent through the
 * official `@google/genai` SDK.
 */
import { ApiError, GoogleGenAI, type Content, type GenerateContentConfig, type GenerateContentResponse } from "@google/genai";
import type { AgentReply, StopReason } from "../agents/agent.js";
import { BridgeError } from "../errors.js";
import { BaseProvider, type ProviderCall } from "./base-provider.js";
import { conversationOf } from "./conversation.js";
import { readProviderEnv } from "./env.js";
import type { ProviderOptions, ResolvedRuntimeParams } from "./provider.js";
import { isConnectionError, messageOf, type UpstreamFailure } from "./upstream-errors.js";

/** The Gemini API's own address (the SDK adds the API version, `v1beta`). */
export const GEMINI_BASE_URL = "https://generativelanguage.googleapis.com";

/** Options of `GeminiProvider`: the common ones. The key defaults to `GEMINI_API_KEY`. */
export type GeminiProviderOptions = ProviderOptions;

const CONTENT_FILTERS = new Set(["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "LANGUAGE"]);

/** Gemini `finishReason` → troupe `stopReason`; a function call in the answer is `tool_use`. */
export function geminiStopReason(finishReason: string | undefined, calledFunction: boolean): StopReason {
  if (calledFunction) return "tool_use";
  if (finishReason === "MAX_TOKENS") return "max_tokens";
  if (finishReason !== undefined && CONTENT_FILTERS.has(finishReason)) return "content_filter";
  return "end_turn";
}

/** What one response (or one streamed chunk) adds to the answer. */
interface ResponsePiece {
  text: string;
  finishReason: string | undefined;
  calledFunction: boolean;
  blocked: boolean;
  usage: AgentReply["usage"];
}

function pieceOf(response: GenerateContentResponse): ResponsePiece {
  const candidate = response.candidates?.[0];
  const parts = candidate?.content?.parts ?? [];
  const metadata = response.usageMetadata;
  return {
    text: parts.map((part) => (typeof part.text === "string" && !part.thought ? part.text : "")).join(""),
    finishReason: candidate?.finishReason,
    calledFunction: parts.some((part) => part.functionCall !== undefined),
    blocked: response.promptFeedback?.blockReason !== undefined,
    usage: metadata ? { inputTokens: metadata.promptTokenCount ?? 0, outputTokens: metadata.candidatesTokenCount ?? 0 } : undefined,
  };
}

/** The parts of a Google API error body troupe reads. */
interface GoogleErrorBody {
  error?: {
    message?: string;
    details?: Array<{ "@type"?: string; reason?: string; retryDelay?: string }>;
  };
}

/** Reads the JSON body that `ApiError.message` carries: the message, `RetryInfo.retryDelay`, `API_KEY_INVALID`. */
function classifyApiError(error: ApiError): UpstreamFailure {
  let body: GoogleErrorBody | undefined;
  try {
    body = JSON.parse(error.message) as GoogleErrorBody;
  } catch {
    body = undefined;
  }
  const details = body?.error?.details ?? [];
  const retryDelay = details.find((detail) => detail["@type"]?.endsWith("google.rpc.RetryInfo"))?.retryDelay;
  const retrySeconds = retryDelay === undefined ? Number.NaN : Number.parseFloat(retryDelay);
  return {
    kind: "status",
    status: error.status,
    message: body?.error?.message ?? error.message,
    ...(Number.isFinite(retrySeconds) ? { retryAfterMs: retrySeconds * 1000 } : {}),
    ...(details.some((detail) => detail.reason === "API_KEY_INVALID") ? { invalidKey: true } : {}),
  };
}

/** Answers with the Gemini API (SPEC §2.4 mapping). */
export class GeminiProvider extends BaseProvider {
  private readonly client: GoogleGenAI;

  constructor(options: GeminiProviderOptions = {}) {
    const apiKey = options.credentials?.apiKey ?? readProviderEnv("GEMINI_API_KEY");
    super({ kind: "gemini", defaultModel: "gemini-2.5-flash", secrets: [apiKey] }, options);
    if (apiKey === undefined) {
      throw new BridgeError("CONFIG", `${this.id}: no API key: pass credentials.apiKey or set GEMINI_API_KEY`, { field: "credentials.apiKey" });
    }
    this.client = new GoogleGenAI({ apiKey, vertexai: false, httpOptions: { baseUrl: options.baseURL ?? GEMINI_BASE_URL } });
  }

  protected override classify(error: unknown): UpstreamFailure {
    if (error instanceof ApiError) return classifyApiError(error);
    if (isConnectionError(error)) return { kind: "connection", message: messageOf(error) };
    return { kind: "other", message: messageOf(error) };
  }

  protected override async send({ ctx, params, signal, emit }: ProviderCall): Promise<AgentReply> {
    const request = { model: params.model, contents: this.contents(ctx.history, ctx.prompt), config: this.config(params, signal) };
    if (!this.streaming) {
      const piece = pieceOf(await this.client.models.generateContent(request));
      emit(piece.text);
      return this.reply(piece.text, piece);
    }
    let text = "";
    let last: ResponsePiece | undefined;
    let calledFunction = false;
    let usage: AgentReply["usage"];
    for await (const chunk of await this.client.models.generateContentStream(request)) {
      const piece = pieceOf(chunk);
      text += piece.text;
      emit(piece.text);
      calledFunction ||= piece.calledFunction;
      usage = piece.usage ?? usage;
      last = piece;
    }
    if (last?.finishReason === undefined && !last?.blocked) {
      throw new BridgeError("TRANSPORT", `${this.id}: the stream ended before a finishReason`, { provider: this.id });
    }
    return this.reply(text, { ...last, calledFunction, usage });
  }

  private reply(text: string, piece: ResponsePiece): AgentReply {
    const stopReason = piece.blocked ? "content_filter" : geminiStopReason(piece.finishReason, piece.calledFunction);
    return { text, stopReason, ...(piece.usage ? { usage: piece.usage } : {}) };
  }

  private contents(history: ProviderCall["ctx"]["history"], prompt: string): Content[] {
    return conversationOf(history, prompt).map((turn) => ({ role: turn.role === "assistant" ? "model" : "user", parts: [{ text: turn.content }] }));
  }

  /** The request `config`: `providerSpecific` first, so that the mapped fields win over it. */
  private config(params: ResolvedRuntimeParams, signal: AbortSignal): GenerateContentConfig {
    return {
      ...params.providerSpecific,
      ...(params.systemPrompt !== undefined ? { systemInstruction: params.systemPrompt } : {}),
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.maxTokens !== undefined ? { maxOutputTokens: params.maxTokens } : {}),
      ...(params.topP !== undefined ? { topP: params.topP } : {}),
      ...(params.topK !== undefined ? { topK: params.topK } : {}),
      ...(params.stopSequences !== undefined ? { stopSequences: params.stopSequences } : {}),
      abortSignal: signal,
    };
  }
}

/** A `GeminiProvider`, as `createMultiProviderAgent({ providers: [gemini({...})] })` takes it. */
export function gemini(options: GeminiProviderOptions = {}): GeminiProvider {
  return new GeminiProvider(options);
}
