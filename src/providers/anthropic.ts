/**
 * `AnthropicProvider` ("anthropic"): the Messages API through the official `@anthropic-ai/sdk`.
 */
import Anthropic, { APIConnectionError, APIConnectionTimeoutError, APIError } from "@anthropic-ai/sdk";
import type { AgentReply, StopReason } from "../agents/agent.js";
import { BridgeError } from "../errors.js";
import { BaseProvider, type ProviderCall } from "./base-provider.js";
import { conversationOf } from "./conversation.js";
import { readProviderEnv } from "./env.js";
import { configError } from "./params.js";
import type { ProviderOptions, ResolvedRuntimeParams } from "./provider.js";
import { redactingLogger } from "./redact.js";
import { classifyStainlessError } from "./stainless-errors.js";
import type { UpstreamFailure } from "./upstream-errors.js";

type MessageRequest = Anthropic.Messages.MessageCreateParamsNonStreaming;

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

function reply(text: string, stopReason: string | null | undefined, inputTokens: number | undefined, outputTokens: number | undefined): AgentReply {
  const usage = inputTokens !== undefined && outputTokens !== undefined ? { usage: { inputTokens, outputTokens } } : {};
  return { text, stopReason: anthropicStopReason(stopReason), ...usage };
}

/** Answers with the Anthropic Messages API (SPEC §2.4 mapping). */
export class AnthropicProvider extends BaseProvider {
  private readonly client: Anthropic;

  constructor(options: AnthropicProviderOptions = {}) {
    const apiKey = options.credentials?.apiKey ?? readProviderEnv("ANTHROPIC_API_KEY");
    super({ kind: "anthropic", defaultModel: "claude-sonnet-4-6", secrets: [apiKey] }, options);
    if (apiKey === undefined) {
      throw new BridgeError("CONFIG", `${this.id}: no API key: pass credentials.apiKey or set ANTHROPIC_API_KEY`, { field: "credentials.apiKey" });
    }
    this.client = new Anthropic({
      apiKey,
      baseURL: options.baseURL ?? ANTHROPIC_BASE_URL,
      maxRetries: 0,
      timeout: this.timeoutMs,
      logger: redactingLogger(console, this.redact),
    });
  }

  protected override checkParams(params: ResolvedRuntimeParams, field: string): void {
    if (params.temperature !== undefined && params.temperature > MAX_TEMPERATURE) {
      configError(`${field}.temperature`, `${this.id} accepts 0–${MAX_TEMPERATURE}, got ${params.temperature}`);
    }
  }

  protected override classify(error: unknown): UpstreamFailure {
    return classifyStainlessError(error, { APIError, APIConnectionError, APIConnectionTimeoutError }, this.clock.now());
  }

  protected override async send({ ctx, params, signal, emit }: ProviderCall): Promise<AgentReply> {
    const body = this.requestBody(params, ctx.history, ctx.prompt);
    const options = { signal, timeout: this.timeoutMs };
    if (!this.streaming) {
      const message = await this.client.messages.create({ ...body, stream: false }, options);
      const text = message.content.map((block) => (block.type === "text" ? block.text : "")).join("");
      emit(text);
      return reply(text, message.stop_reason, message.usage.input_tokens, message.usage.output_tokens);
    }
    const stream = await this.client.messages.create({ ...body, stream: true }, options);
    let text = "";
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
        case "content_block_delta":
          if (event.delta.type === "text_delta") {
            text += event.delta.text;
            emit(event.delta.text);
          }
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
    return reply(text, stopReason, inputTokens, outputTokens);
  }

  /** The Messages body: `providerSpecific` first, so that the mapped fields win over it. */
  private requestBody(params: ResolvedRuntimeParams, history: ProviderCall["ctx"]["history"], prompt: string): Omit<MessageRequest, "stream"> {
    return {
      ...params.providerSpecific,
      model: params.model,
      max_tokens: params.maxTokens ?? ANTHROPIC_DEFAULT_MAX_TOKENS,
      messages: conversationOf(history, prompt).map((turn) => ({ role: turn.role, content: turn.content })),
      ...(params.systemPrompt !== undefined ? { system: params.systemPrompt } : {}),
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.topP !== undefined ? { top_p: params.topP } : {}),
      ...(params.topK !== undefined ? { top_k: params.topK } : {}),
      ...(params.stopSequences !== undefined ? { stop_sequences: params.stopSequences } : {}),
    };
  }
}

/** An `AnthropicProvider`, as `createMultiProviderAgent({ providers: [anthropic({...})] })` takes it. */
export function anthropic(options: AnthropicProviderOptions = {}): AnthropicProvider {
  return new AnthropicProvider(options);
}
