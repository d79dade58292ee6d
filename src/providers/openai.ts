/**
 * `OpenAIProvider` ("openai"): the Chat Completions API through the official `openai` SDK. With `baseURL` it
 * talks to any OpenAI-compatible server (Ollama, vLLM, LM Studio). The SDK loads at the first request.
 */
import type OpenAI from "openai";
import type { ClientOptions } from "openai";
import type { StopReason } from "../agents/agent.js";
import { BridgeError } from "../errors.js";
import type { ToolCall, ToolRequest } from "../tools/tool-call.js";
import { lazyImport } from "../lazy-modules.js";
import { BaseProvider, type ProviderCall } from "./base-provider.js";
import { conversationOf } from "./conversation.js";
import { readProviderEnv } from "./env.js";
import type { ProviderOptions, ProviderReply, ResolvedRuntimeParams } from "./provider.js";
import { redactingLogger } from "./redact.js";
import { classifyStainlessError } from "./stainless-errors.js";
import type { UpstreamFailure } from "./upstream-errors.js";

type ChatMessage = OpenAI.Chat.Completions.ChatCompletionMessageParam;
type ChatRequest = OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming;
type ChatStreamRequest = OpenAI.Chat.Completions.ChatCompletionCreateParamsStreaming;
type ChatTool = OpenAI.Chat.Completions.ChatCompletionFunctionTool;
type StreamedToolCall = OpenAI.Chat.Completions.ChatCompletionChunk.Choice.Delta.ToolCall;

const openAISdk = lazyImport("openai", "The OpenAI provider", () => import("openai"));

/** The OpenAI API's own address. */
export const OPENAI_BASE_URL = "https://api.openai.com/v1";

/**
 * Sent as the key to a custom `baseURL` when none is configured: local servers need none, but the SDK
 * refuses to start without one.
 */
const NO_KEY_FOR_LOCAL_SERVER = "no-key";

/** Options of `OpenAIProvider`: the common ones. The key defaults to `OPENAI_API_KEY`, `baseURL` to `OPENAI_BASE_URL`. */
export type OpenAIProviderOptions = ProviderOptions;

const STOP_REASONS: Record<string, StopReason> = {
  stop: "end_turn",
  length: "max_tokens",
  content_filter: "content_filter",
  tool_calls: "tool_use",
  function_call: "tool_use",
};

/** OpenAI `finish_reason` → troupe `stopReason`. */
export function openAIStopReason(finishReason: string | null | undefined): StopReason {
  return (finishReason && STOP_REASONS[finishReason]) || "end_turn";
}

function usageOf(usage: OpenAI.CompletionUsage | null | undefined): ProviderReply["usage"] {
  return usage ? { inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens } : undefined;
}

function reply(text: string, finishReason: string | null | undefined, usage: OpenAI.CompletionUsage | null | undefined, toolCalls: ToolCall[]): ProviderReply {
  const tokens = usageOf(usage);
  return { text, stopReason: openAIStopReason(finishReason), ...(tokens ? { usage: tokens } : {}), ...(toolCalls.length > 0 ? { toolCalls } : {}) };
}

/** The function calls of a whole answer (custom tool calls, which troupe never declares, are left out). */
function toolCallsOf(calls: OpenAI.Chat.Completions.ChatCompletionMessageToolCall[] | undefined): ToolCall[] {
  return (calls ?? []).flatMap((call) =>
    call.type === "function" ? [{ callId: call.id, name: call.function.name, argumentsJson: call.function.arguments }] : [],
  );
}

/** Streamed tool calls, assembled by `index`: the first delta of a call has its id and name, later ones add to its arguments. */
class StreamedToolCalls {
  private readonly calls = new Map<number, ToolCall>();

  add(deltas: StreamedToolCall[] | undefined): void {
    for (const delta of deltas ?? []) {
      const call = this.calls.get(delta.index) ?? { callId: "", name: "", argumentsJson: "" };
      if (delta.id) call.callId = delta.id;
      if (delta.function?.name) call.name = delta.function.name;
      call.argumentsJson += delta.function?.arguments ?? "";
      this.calls.set(delta.index, call);
    }
  }

  /** The calls in index order; a call a compatible server sent without an id gets `call_<index>`. */
  list(): ToolCall[] {
    return [...this.calls.entries()].sort(([a], [b]) => a - b).map(([index, call]) => ({ ...call, callId: call.callId || `call_${index}` }));
  }
}

/** The tools as Chat Completions `tools`, and `tool_choice: "none"` for the loop's last call. */
function toolFields(tools: ToolRequest | undefined): Pick<ChatRequest, "tools" | "tool_choice"> {
  if (tools === undefined) return {};
  const declared: ChatTool[] = tools.tools.map((tool) => ({
    type: "function",
    function: { name: tool.name, description: tool.description, parameters: tool.inputSchema },
  }));
  return { tools: declared, ...(tools.choice === "none" ? { tool_choice: "none" as const } : {}) };
}

/** Each round as an assistant message with its `tool_calls`, then one `tool` message per result. */
function roundMessages(tools: ToolRequest | undefined): ChatMessage[] {
  return (tools?.rounds ?? []).flatMap((round): ChatMessage[] => [
    {
      role: "assistant",
      content: round.text === "" ? null : round.text,
      tool_calls: round.calls.map((call) => ({ id: call.callId, type: "function", function: { name: call.name, arguments: call.argumentsJson } })),
    },
    // Chat Completions has no error flag on a tool message: the text says it.
    ...round.results.map((result): ChatMessage => ({
      role: "tool",
      tool_call_id: result.callId,
      content: result.isError ? `Error: ${result.content}` : result.content,
    })),
  ]);
}

/** Answers with OpenAI Chat Completions (SPEC §2.4 mapping). */
export class OpenAIProvider extends BaseProvider {
  private readonly clientOptions: ClientOptions;
  /** Made at the first request, when the SDK has loaded. */
  private client: OpenAI | undefined;

  constructor(options: OpenAIProviderOptions = {}) {
    const apiKey = options.credentials?.apiKey ?? readProviderEnv("OPENAI_API_KEY");
    const baseURL = options.baseURL ?? readProviderEnv("OPENAI_BASE_URL");
    super({ kind: "openai", defaultModel: "gpt-4o", secrets: [apiKey] }, options);
    if (apiKey === undefined && baseURL === undefined) {
      throw new BridgeError("CONFIG", `${this.id}: no API key: pass credentials.apiKey or set OPENAI_API_KEY`, { field: "credentials.apiKey" });
    }
    this.clientOptions = {
      apiKey: apiKey ?? NO_KEY_FOR_LOCAL_SERVER,
      baseURL: baseURL ?? OPENAI_BASE_URL,
      maxRetries: 0,
      timeout: this.timeoutMs,
      logger: redactingLogger(console, this.redact),
    };
  }

  protected override checkParams(params: ResolvedRuntimeParams, _field: string, warn: (field: string, message: string) => void): void {
    if (params.topK !== undefined) warn("topK", "Chat Completions has no top_k: topK is not sent");
  }

  protected override classify(error: unknown): UpstreamFailure {
    // Before the SDK has loaded, no error can be one of its own.
    return classifyStainlessError(error, openAISdk.loaded, this.clock.now());
  }

  protected override async send({ ctx, params, signal, emit, tools }: ProviderCall): Promise<ProviderReply> {
    const body = this.requestBody(params, ctx.history, ctx.prompt, tools);
    const options = { signal, timeout: this.timeoutMs };
    // The SDK loads at the first request, so that importing troupe does not load it.
    const { default: OpenAIClient } = openAISdk.loaded ?? (await openAISdk());
    const client = (this.client ??= new OpenAIClient(this.clientOptions));
    if (!this.streaming) {
      const completion = await client.chat.completions.create({ ...body, stream: false }, options);
      const choice = completion.choices[0];
      const text = choice?.message.content ?? choice?.message.refusal ?? "";
      emit(text);
      return reply(text, choice?.finish_reason, completion.usage, toolCallsOf(choice?.message.tool_calls));
    }
    const request: ChatStreamRequest = { ...body, stream: true, stream_options: { include_usage: true } };
    const stream = await client.chat.completions.create(request, options);
    let text = "";
    let finishReason: string | null | undefined;
    let usage: OpenAI.CompletionUsage | null | undefined;
    const toolCalls = new StreamedToolCalls();
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      const delta = choice?.delta.content ?? "";
      text += delta;
      emit(delta);
      toolCalls.add(choice?.delta.tool_calls);
      finishReason = choice?.finish_reason ?? finishReason;
      usage = chunk.usage ?? usage;
    }
    if (finishReason === undefined || finishReason === null) {
      throw new BridgeError("TRANSPORT", `${this.id}: the stream ended before a finish_reason`, { provider: this.id });
    }
    return reply(text, finishReason, usage, toolCalls.list());
  }

  /** The Chat Completions body: `providerSpecific` first, so that the mapped fields win over it. */
  private requestBody(
    params: ResolvedRuntimeParams,
    history: ProviderCall["ctx"]["history"],
    prompt: string,
    tools: ToolRequest | undefined,
  ): Omit<ChatRequest, "stream"> {
    const messages: ChatMessage[] = [
      ...(params.systemPrompt !== undefined ? [{ role: "system" as const, content: params.systemPrompt }] : []),
      ...conversationOf(history, prompt).map((turn) => ({ role: turn.role, content: turn.content })),
      ...roundMessages(tools),
    ];
    return {
      ...params.providerSpecific,
      model: params.model,
      messages,
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.maxTokens !== undefined ? { max_tokens: params.maxTokens } : {}),
      ...(params.topP !== undefined ? { top_p: params.topP } : {}),
      ...(params.stopSequences !== undefined ? { stop: params.stopSequences } : {}),
      ...toolFields(tools),
    };
  }
}

/** An `OpenAIProvider`, as `createMultiProviderAgent({ providers: [openAI({...})] })` takes it. */
export function openAI(options: OpenAIProviderOptions = {}): OpenAIProvider {
  return new OpenAIProvider(options);
}
