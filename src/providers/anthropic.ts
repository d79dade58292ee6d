/**
 * `AnthropicProvider` ("anthropic"): the Messages API through the official `@anthropic-ai/sdk`, which loads at
 * the first request.
 */
import type Anthropic from "@anthropic-ai/sdk";
import type { ClientOptions } from "@anthropic-ai/sdk";
import type { StopReason } from "../agents/agent.js";
import { BridgeError } from "../errors.js";
import { argumentsObjectOf, type ToolCall, type ToolRequest } from "../tools/tool-call.js";
import { lazyImport } from "../lazy-modules.js";
import { BaseProvider, type ProviderCall } from "./base-provider.js";
import { conversationOf } from "./conversation.js";
import { readProviderEnv } from "./env.js";
import { configError } from "./params.js";
import type { ProviderOptions, ProviderReply, ResolvedRuntimeParams } from "./provider.js";
import { redactingLogger } from "./redact.js";
import { classifyStainlessError } from "./stainless-errors.js";
import type { UpstreamFailure } from "./upstream-errors.js";

type MessageRequest = Anthropic.Messages.MessageCreateParamsNonStreaming;
type MessageParam = Anthropic.Messages.MessageParam;
type ContentBlockParam = Anthropic.Messages.ContentBlockParam;
type ContentBlock = Anthropic.Messages.ContentBlock;

const anthropicSdk = lazyImport("@anthropic-ai/sdk", "The Anthropic provider", () => import("@anthropic-ai/sdk"));

/** The Anthropic API's own address. */
export const ANTHROPIC_BASE_URL = "https://api.anthropic.com";

/** `max_tokens` when no RuntimeParams sets `maxTokens`: the Messages API requires one. */
export const ANTHROPIC_DEFAULT_MAX_TOKENS = 1024;

/** The Messages API's highest temperature (the common schema allows up to 2). */
const MAX_TEMPERATURE = 1;

/** Options of `AnthropicProvider`: the common ones. The key defaults to `ANTHROPIC_API_KEY`. */
export type AnthropicProviderOptions = ProviderOptions;

const STOP_REASONS: Record<string, StopReason> = {
  end_turn: "end_turn",
  max_tokens: "max_tokens",
  stop_sequence: "stop_sequence",
  tool_use: "tool_use",
  refusal: "content_filter",
  model_context_window_exceeded: "max_tokens",
  pause_turn: "end_turn",
};

/** Anthropic `stop_reason` → troupe `stopReason`: the four common ones pass through. */
export function anthropicStopReason(stopReason: string | null | undefined): StopReason {
  return (stopReason && STOP_REASONS[stopReason]) || "end_turn";
}

/** One block of the model's turn, as troupe keeps it: a `tool_use` keeps its input as JSON text while it streams. */
type TurnBlock =
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; inputJson: string }
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "redacted_thinking"; data: string };

/**
 * The model's turn, block by block (`index`), from a whole message or from its stream: its text, its
 * `tool_use` calls, and the turn to send back in the next round (thinking blocks included: the API wants
 * them back with tool results).
 */
class AnthropicTurn {
  private readonly blocks = new Map<number, TurnBlock>();

  /** A block as the API gave it (whole, or as `content_block_start`); kinds troupe does not use are left out. */
  start(index: number, block: ContentBlock): void {
    switch (block.type) {
      case "text":
        this.blocks.set(index, { type: "text", text: block.text });
        return;
      case "tool_use": {
        // A streamed tool_use starts with `input: {}` and its JSON follows in input_json_delta events.
        const input = block.input as Record<string, unknown> | undefined;
        const whole = input !== undefined && Object.keys(input).length > 0;
        this.blocks.set(index, { type: "tool_use", id: block.id, name: block.name, inputJson: whole ? JSON.stringify(input) : "" });
        return;
      }
      case "thinking":
        this.blocks.set(index, { type: "thinking", thinking: block.thinking, signature: block.signature });
        return;
      case "redacted_thinking":
        this.blocks.set(index, { type: "redacted_thinking", data: block.data });
        return;
      default:
        return;
    }
  }

  /** A streamed piece of block `index`. */
  delta(index: number, delta: Anthropic.Messages.RawContentBlockDelta): void {
    const block = this.blocks.get(index);
    if (block === undefined) return;
    if (delta.type === "text_delta" && block.type === "text") block.text += delta.text;
    else if (delta.type === "input_json_delta" && block.type === "tool_use") block.inputJson += delta.partial_json;
    else if (delta.type === "thinking_delta" && block.type === "thinking") block.thinking += delta.thinking;
    else if (delta.type === "signature_delta" && block.type === "thinking") block.signature += delta.signature;
  }

  private ordered(): TurnBlock[] {
    return [...this.blocks.entries()].sort(([a], [b]) => a - b).map(([, block]) => block);
  }

  /** The reply: the text blocks joined, the calls, and the turn for the next round. */
  reply(stopReason: string | null | undefined, inputTokens: number | undefined, outputTokens: number | undefined): ProviderReply {
    const blocks = this.ordered();
    const text = blocks.map((block) => (block.type === "text" ? block.text : "")).join("");
    const toolCalls: ToolCall[] = blocks.flatMap((block) =>
      block.type === "tool_use" ? [{ callId: block.id, name: block.name, argumentsJson: block.inputJson }] : [],
    );
    const usage = inputTokens !== undefined && outputTokens !== undefined ? { usage: { inputTokens, outputTokens } } : {};
    return {
      text,
      stopReason: anthropicStopReason(stopReason),
      ...usage,
      ...(toolCalls.length > 0 ? { toolCalls, modelTurn: blocks.flatMap(blockParamOf) } : {}),
    };
  }
}

/** A block of the model's turn as a request block; empty text is left out (the API refuses it). */
function blockParamOf(block: TurnBlock): ContentBlockParam[] {
  switch (block.type) {
    case "text":
      return block.text === "" ? [] : [{ type: "text", text: block.text }];
    case "tool_use":
      return [{ type: "tool_use", id: block.id, name: block.name, input: argumentsObjectOf({ argumentsJson: block.inputJson }) }];
    case "thinking":
      return [{ type: "thinking", thinking: block.thinking, signature: block.signature }];
    case "redacted_thinking":
      return [{ type: "redacted_thinking", data: block.data }];
  }
}

/** The model's turn of a round: the one it sent (`modelTurn`), or, for rounds troupe did not get from it, its text and calls. */
function assistantContentOf(round: ToolRequest["rounds"][number]): ContentBlockParam[] {
  if (Array.isArray(round.modelTurn)) return round.modelTurn as ContentBlockParam[];
  return [
    ...(round.text === "" ? [] : [{ type: "text" as const, text: round.text }]),
    ...round.calls.map((call): ContentBlockParam => ({ type: "tool_use", id: call.callId, name: call.name, input: argumentsObjectOf(call) })),
  ];
}

/** Each round as the assistant's turn with its `tool_use` blocks, then a user turn of `tool_result` blocks. */
function roundMessages(tools: ToolRequest | undefined): MessageParam[] {
  return (tools?.rounds ?? []).flatMap((round): MessageParam[] => [
    { role: "assistant", content: assistantContentOf(round) },
    {
      role: "user",
      content: round.results.map((result) => ({
        type: "tool_result" as const,
        tool_use_id: result.callId,
        // An empty content is left out rather than sent as an empty text.
        ...(result.content === "" ? {} : { content: result.content }),
        ...(result.isError ? { is_error: true } : {}),
      })),
    },
  ]);
}

/** The tools as Messages `tools` (`input_schema`), and `tool_choice: { type: "none" }` for the loop's last call. */
function toolFields(tools: ToolRequest | undefined): Pick<MessageRequest, "tools" | "tool_choice"> {
  if (tools === undefined) return {};
  return {
    tools: tools.tools.map((tool) => ({
      name: tool.name,
      description: tool.description,
      input_schema: tool.inputSchema as Anthropic.Messages.Tool.InputSchema,
    })),
    ...(tools.choice === "none" ? { tool_choice: { type: "none" as const } } : {}),
  };
}

/** Answers with the Anthropic Messages API (SPEC §2.4 mapping). */
export class AnthropicProvider extends BaseProvider {
  private readonly clientOptions: ClientOptions;
  /** Made at the first request, when the SDK has loaded. */
  private client: Anthropic | undefined;

  constructor(options: AnthropicProviderOptions = {}) {
    const apiKey = options.credentials?.apiKey ?? readProviderEnv("ANTHROPIC_API_KEY");
    super({ kind: "anthropic", defaultModel: "claude-sonnet-4-6", secrets: [apiKey] }, options);
    if (apiKey === undefined) {
      throw new BridgeError("CONFIG", `${this.id}: no API key: pass credentials.apiKey or set ANTHROPIC_API_KEY`, { field: "credentials.apiKey" });
    }
    this.clientOptions = {
      apiKey,
      baseURL: options.baseURL ?? ANTHROPIC_BASE_URL,
      maxRetries: 0,
      timeout: this.timeoutMs,
      logger: redactingLogger(console, this.redact),
    };
  }

  protected override checkParams(params: ResolvedRuntimeParams, field: string): void {
    if (params.temperature !== undefined && params.temperature > MAX_TEMPERATURE) {
      configError(`${field}.temperature`, `${this.id} accepts 0–${MAX_TEMPERATURE}, got ${params.temperature}`);
    }
  }

  protected override classify(error: unknown): UpstreamFailure {
    // Before the SDK has loaded, no error can be one of its own.
    return classifyStainlessError(error, anthropicSdk.loaded, this.clock.now());
  }

  protected override async send({ ctx, params, signal, emit, tools }: ProviderCall): Promise<ProviderReply> {
    const body = this.requestBody(params, ctx.history, ctx.prompt, tools);
    const options = { signal, timeout: this.timeoutMs };
    const turn = new AnthropicTurn();
    // The SDK loads at the first request, so that importing troupe does not load it.
    const { default: AnthropicClient } = anthropicSdk.loaded ?? (await anthropicSdk());
    const client = (this.client ??= new AnthropicClient(this.clientOptions));
    if (!this.streaming) {
      const message = await client.messages.create({ ...body, stream: false }, options);
      message.content.forEach((block, index) => turn.start(index, block));
      const answer = turn.reply(message.stop_reason, message.usage.input_tokens, message.usage.output_tokens);
      emit(answer.text);
      return answer;
    }
    const stream = await client.messages.create({ ...body, stream: true }, options);
    let stopReason: string | null | undefined;
    let inputTokens: number | undefined;
    let outputTokens: number | undefined;
    let stopped = false;
    for await (const event of stream) {
      switch (event.type) {
        case "message_start":
          inputTokens = event.message.usage.input_tokens;
          outputTokens = event.message.usage.output_tokens;
          break;
        case "content_block_start":
          turn.start(event.index, event.content_block);
          break;
        case "content_block_delta":
          turn.delta(event.index, event.delta);
          if (event.delta.type === "text_delta") emit(event.delta.text);
          break;
        case "message_delta":
          stopReason = event.delta.stop_reason ?? stopReason;
          inputTokens = event.usage.input_tokens ?? inputTokens;
          outputTokens = event.usage.output_tokens;
          break;
        case "message_stop":
          stopped = true;
          break;
        default:
          break;
      }
    }
    if (!stopped) throw new BridgeError("TRANSPORT", `${this.id}: the stream ended before message_stop`, { provider: this.id });
    return turn.reply(stopReason, inputTokens, outputTokens);
  }

  /** The Messages body: `providerSpecific` first, so that the mapped fields win over it. */
  private requestBody(
    params: ResolvedRuntimeParams,
    history: ProviderCall["ctx"]["history"],
    prompt: string,
    tools: ToolRequest | undefined,
  ): Omit<MessageRequest, "stream"> {
    return {
      ...params.providerSpecific,
      model: params.model,
      max_tokens: params.maxTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS,
      messages: [...conversationOf(history, prompt).map((turn): MessageParam => ({ role: turn.role, content: turn.content })), ...roundMessages(tools)],
      ...(params.systemPrompt !== undefined ? { system: params.systemPrompt } : {}),
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.topP !== undefined ? { top_p: params.topP } : {}),
      ...(params.topK !== undefined ? { top_k: params.topK } : {}),
      ...(params.stopSequences !== undefined ? { stop_sequences: params.stopSequences } : {}),
      ...toolFields(tools),
    };
  }
}

/** An `AnthropicProvider`, as `createMultiProviderAgent({ providers: [anthropic({...})] })` takes it. */
export function anthropic(options: AnthropicProviderOptions = {}): AnthropicProvider {
  return new AnthropicProvider(options);
}
