/**
 * `GeminiProvider` ("gemini"): the Gemini API's generateContent / streamGenerateContent through the
 * official `@google/genai` SDK, which loads at the first request.
 */
import type {
  ApiError,
  Content,
  FunctionCallingConfigMode,
  GenerateContentConfig,
  GenerateContentResponse,
  GoogleGenAI,
  GoogleGenAIOptions,
  Part,
} from "@google/genai";
import type { AgentReply, StopReason } from "../agents/agent.js";
import { BridgeError, messageOf } from "../errors.js";
import { argumentsObjectOf, fallbackCallId, type ToolCall, type ToolRequest, type ToolRound } from "../tools/tool-call.js";
import { lazyImport } from "../lazy-modules.js";
import { BaseProvider, type ProviderCall } from "./base-provider.js";
import { conversationOf } from "./conversation.js";
import { readProviderEnv } from "./env.js";
import type { ProviderOptions, ProviderReply, ResolvedRuntimeParams } from "./provider.js";
import { isConnectionError, type UpstreamFailure } from "./upstream-errors.js";

const geminiSdk = lazyImport("@google/genai", "The Gemini provider", () => import("@google/genai"));

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
  /** The candidate's parts as they came (function calls, thought signatures and all), for the next round. */
  parts: Part[];
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
    parts,
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

/** The function calls among the model's parts; a call without an id (the Gemini API gives none) gets `call_<round>_<n>`. */
function toolCallsOf(parts: readonly Part[], round: number): ToolCall[] {
  return parts
    .flatMap((part) => (part.functionCall === undefined ? [] : [part.functionCall]))
    .map((call, index) => ({ callId: call.id ?? fallbackCallId(round, index), name: call.name ?? "", argumentsJson: JSON.stringify(call.args ?? {}) }));
}

/** The model's turn of a round: the one it sent (`modelTurn`), or, for rounds troupe did not get from it, its text and calls. */
function modelContentOf(round: ToolRound): Content {
  if (typeof round.modelTurn === "object" && round.modelTurn !== null) return round.modelTurn;
  return {
    role: "model",
    parts: [
      ...(round.text === "" ? [] : [{ text: round.text }]),
      ...round.calls.map((call) => ({ functionCall: { id: call.callId, name: call.name, args: argumentsObjectOf(call) } })),
    ],
  };
}

/**
 * Each round as the model's turn (its parts as they came: Gemini wants thought signatures back), then a user
 * turn of `functionResponse` parts: `{ output }` or `{ error }`, with the call's id when the model gave one.
 */
function roundContents(tools: ToolRequest | undefined): Content[] {
  return (tools?.rounds ?? []).flatMap((round): Content[] => {
    const model = modelContentOf(round);
    const modelIds = new Set((model.parts ?? []).flatMap((part) => (part.functionCall?.id === undefined ? [] : [part.functionCall.id])));
    return [
      model,
      {
        role: "user",
        parts: round.results.map((result) => ({
          functionResponse: {
            ...(modelIds.has(result.callId) ? { id: result.callId } : {}),
            name: result.name,
            response: result.isError ? { error: result.content } : { output: result.content },
          },
        })),
      },
    ];
  });
}

/**
 * The tools as one `functionDeclarations` tool (parameters as JSON Schema), and mode `NONE` for the loop's
 * last call (`modes`: the SDK's enum, which exists once the SDK has loaded).
 */
function toolConfigOf(tools: ToolRequest | undefined, modes: typeof FunctionCallingConfigMode): Pick<GenerateContentConfig, "tools" | "toolConfig"> {
  if (tools === undefined) return {};
  return {
    tools: [{ functionDeclarations: tools.tools.map((tool) => ({ name: tool.name, description: tool.description, parametersJsonSchema: tool.inputSchema })) }],
    ...(tools.choice === "none" ? { toolConfig: { functionCallingConfig: { mode: modes.NONE } } } : {}),
  };
}

/** Answers with the Gemini API (SPEC §2.4 mapping). */
export class GeminiProvider extends BaseProvider {
  private readonly clientOptions: GoogleGenAIOptions;
  /** Made at the first request, when the SDK has loaded. */
  private client: GoogleGenAI | undefined;

  constructor(options: GeminiProviderOptions = {}) {
    const apiKey = options.credentials?.apiKey ?? readProviderEnv("GEMINI_API_KEY");
    super({ kind: "gemini", defaultModel: "gemini-2.5-flash", secrets: [apiKey] }, options);
    if (apiKey === undefined) {
      throw new BridgeError("CONFIG", `${this.id}: no API key: pass credentials.apiKey or set GEMINI_API_KEY`, { field: "credentials.apiKey" });
    }
    this.clientOptions = { apiKey, vertexai: false, httpOptions: { baseUrl: options.baseURL ?? GEMINI_BASE_URL } };
  }

  protected override classify(error: unknown): UpstreamFailure {
    // Before the SDK has loaded, no error can be one of its own.
    const sdk = geminiSdk.loaded;
    if (sdk !== undefined && error instanceof sdk.ApiError) return classifyApiError(error);
    if (isConnectionError(error)) return { kind: "connection", message: messageOf(error) };
    return { kind: "other", message: messageOf(error) };
  }

  protected override async send({ ctx, params, signal, emit, tools }: ProviderCall): Promise<ProviderReply> {
    // The SDK loads at the first request, so that importing troupe does not load it.
    const sdk = geminiSdk.loaded ?? (await geminiSdk());
    const client = (this.client ??= new sdk.GoogleGenAI(this.clientOptions));
    const config = this.config(params, signal, toolConfigOf(tools, sdk.FunctionCallingConfigMode));
    const request = { model: params.model, contents: [...this.contents(ctx.history, ctx.prompt), ...roundContents(tools)], config };
    const round = (tools?.rounds.length ?? 0) + 1;
    if (!this.streaming) {
      const piece = pieceOf(await client.models.generateContent(request));
      emit(piece.text);
      return this.reply(piece.text, piece, round);
    }
    let text = "";
    const parts: Part[] = [];
    let last: ResponsePiece | undefined;
    let calledFunction = false;
    let usage: AgentReply["usage"];
    for await (const chunk of await client.models.generateContentStream(request)) {
      const piece = pieceOf(chunk);
      text += piece.text;
      parts.push(...piece.parts);
      emit(piece.text);
      calledFunction ||= piece.calledFunction;
      usage = piece.usage ?? usage;
      last = piece;
    }
    if (last?.finishReason === undefined && !last?.blocked) {
      throw new BridgeError("TRANSPORT", `${this.id}: the stream ended before a finishReason`, { provider: this.id });
    }
    return this.reply(text, { ...last, parts, calledFunction, usage }, round);
  }

  private reply(text: string, piece: ResponsePiece, round: number): ProviderReply {
    const stopReason = piece.blocked ? "content_filter" : geminiStopReason(piece.finishReason, piece.calledFunction);
    const toolCalls = toolCallsOf(piece.parts, round);
    return {
      text,
      stopReason,
      ...(piece.usage ? { usage: piece.usage } : {}),
      ...(toolCalls.length > 0 ? { toolCalls, modelTurn: { role: "model", parts: piece.parts } satisfies Content } : {}),
    };
  }

  private contents(history: ProviderCall["ctx"]["history"], prompt: string): Content[] {
    return conversationOf(history, prompt).map((turn) => ({ role: turn.role === "assistant" ? "model" : "user", parts: [{ text: turn.content }] }));
  }

  /** The request `config`: `providerSpecific` first, so that the mapped fields win over it. */
  private config(params: ResolvedRuntimeParams, signal: AbortSignal, toolConfig: Pick<GenerateContentConfig, "tools" | "toolConfig">): GenerateContentConfig {
    return {
      ...params.providerSpecific,
      ...(params.systemPrompt !== undefined ? { systemInstruction: params.systemPrompt } : {}),
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.maxTokens !== undefined ? { maxOutputTokens: params.maxTokens } : {}),
      ...(params.topP !== undefined ? { topP: params.topP } : {}),
      ...(params.topK !== undefined ? { topK: params.topK } : {}),
      ...(params.stopSequences !== undefined ? { stopSequences: params.stopSequences } : {}),
      ...toolConfig,
      abortSignal: signal,
    };
  }
}

/** A `GeminiProvider`, as `createMultiProviderAgent({ providers: [gemini({...})] })` takes it. */
export function gemini(options: GeminiProviderOptions = {}): GeminiProvider {
  return new GeminiProvider(options);
}
