/**
 * `BaseProvider`: what every provider does around its API call — defaults and checks of RuntimeParams,
 * a timeout per attempt, retries, cancellation, and errors mapped to `BridgeError` with keys redacted.
 */
import { z } from "zod";
import type { PromptContext, ProviderInfo } from "../agents/agent.js";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, promptCancelled } from "../errors.js";
import { attemptSignal } from "./attempt-signal.js";
import { mergeRuntimeParams, parseRuntimeParams, type RuntimeParams } from "./params.js";
import type { ToolRequest } from "../tools/tool-call.js";
import type { Provider, ProviderOptions, ProviderReply, ProviderWarning, ResolvedRuntimeParams } from "./provider.js";
import { createRedactor, type Redactor } from "./redact.js";
import { runWithRetries, type RetryPolicy } from "./retry.js";
import { parseWith } from "../validation.js";
import { upstreamError, type UpstreamFailure } from "./upstream-errors.js";

/** What a provider class tells its base: its kind, its fallbacks, and the secrets to keep out of messages. */
export interface ProviderIdentity {
  /** The default id, e.g. `openai`. */
  kind: string;
  /** Listed and used when the options name no model. */
  defaultModel: string;
  /** Values that must never appear in an error message. */
  secrets: ReadonlyArray<string | undefined>;
  /** Default of `maxRetries` (2 for real APIs). */
  defaultMaxRetries?: number;
}

/** One attempt at an API call, as a provider class receives it. */
export interface ProviderCall {
  ctx: PromptContext;
  params: ResolvedRuntimeParams;
  /** Aborted on cancel and when the attempt's time is up: hand it to the SDK. */
  signal: AbortSignal;
  /** Streams a piece of the answer. */
  emit: (delta: string) => void;
  /** The tools the model may call and the prompt's earlier rounds; absent when the agent has no tools. */
  tools: ToolRequest | undefined;
}

const DEFAULT_TIMEOUT_MS = 600_000;
const DEFAULT_RETRY_BASE_DELAY_MS = 500;
const DEFAULT_RETRY_MAX_DELAY_MS = 60_000;

const optionsSchema = z.object({
  id: z.string().min(1).optional(),
  baseURL: z.url().optional(),
  models: z.array(z.string().min(1)).min(1).optional(),
  timeoutMs: z.number().int().positive().optional(),
  maxRetries: z.number().int().nonnegative().optional(),
  retryBaseDelayMs: z.number().nonnegative().optional(),
  retryMaxDelayMs: z.number().nonnegative().optional(),
  stream: z.boolean().optional(),
});

function checkOptions(options: ProviderOptions): void {
  parseWith(optionsSchema, options, "(options)");
}

function defaultWarningSink(): (warning: ProviderWarning) => void {
  const warned = new Set<string>();
  return ({ providerId, field, message }) => {
    if (warned.has(field)) return;
    warned.add(field);
    process.emitWarning(`troupe: ${providerId}: ${message}`, { code: "TROUPE_PROVIDER_PARAM" });
  };
}

/** The shared half of every provider; a subclass supplies `send` (one API call) and `classify` (its SDK's errors). */
export abstract class BaseProvider implements Provider {
  readonly id: string;
  readonly models: readonly string[];
  /** Whether answers are streamed; a non-streaming answer is emitted as one delta. */
  protected readonly streaming: boolean;
  protected readonly timeoutMs: number;
  protected readonly clock: Clock;
  protected readonly redact: Redactor;
  private readonly defaults: RuntimeParams;
  private readonly retryPolicy: RetryPolicy;
  private readonly onWarning: (warning: ProviderWarning) => void;

  protected constructor(identity: ProviderIdentity, options: ProviderOptions) {
    checkOptions(options);
    this.id = options.id ?? identity.kind;
    this.models = options.models ?? [identity.defaultModel];
    this.streaming = options.stream ?? true;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.clock = options.clock ?? systemClock;
    this.redact = createRedactor(identity.secrets);
    this.retryPolicy = {
      maxRetries: options.maxRetries ?? identity.defaultMaxRetries ?? 2,
      baseDelayMs: options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS,
      maxDelayMs: options.retryMaxDelayMs ?? DEFAULT_RETRY_MAX_DELAY_MS,
    };
    this.onWarning = options.onWarning ?? defaultWarningSink();
    this.defaults = parseRuntimeParams(options.defaults, "defaults");
    // Defaults this API refuses (an Anthropic temperature of 1.5) fail at construction, not at the first prompt.
    this.resolveParams({}, "defaults");
  }

  /** `{ id, models }` for `agents_discover`. */
  describe(): ProviderInfo {
    return { id: this.id, models: [...this.models] };
  }

  /**
   * This provider's defaults under `params`, the model filled in, checked against the API's limits; what it
   * cannot send goes to `report` (default: the `onWarning` option).
   */
  resolveParams(params: RuntimeParams, field = "runtimeParams", report: (warning: ProviderWarning) => void = this.onWarning): ResolvedRuntimeParams {
    const merged = mergeRuntimeParams(this.defaults, params);
    const resolved = { ...merged, model: merged.model ?? this.models[0] ?? "" };
    this.checkParams(resolved, field, (warnedField, message) => report({ providerId: this.id, field: warnedField, message }));
    return resolved;
  }

  /** Answers one prompt (one round of it) with retries; see `Provider.complete`. */
  async complete(ctx: PromptContext, tools?: ToolRequest): Promise<ProviderReply> {
    // A prompt's warnings become its `prompt.warning` events.
    const params = this.resolveParams(ctx.runtimeParams, "runtimeParams", ({ providerId, message }) => ctx.warn(`${providerId}: ${message}`));
    let streamed = false;
    const emit = (delta: string): void => {
      if (delta === "") return;
      streamed = true;
      ctx.emit(delta);
    };
    return runWithRetries(() => this.attempt({ ctx, params, signal: ctx.signal, emit, tools }), {
      policy: this.retryPolicy,
      clock: this.clock,
      signal: ctx.signal,
      mayRetry: () => !streamed,
    });
  }

  /**
   * Throws CONFIG for a value this API refuses. The default accepts everything the schema does. The base
   * constructor calls it (to check `defaults`), so it must not read fields of the subclass.
   */
  protected checkParams(_params: ResolvedRuntimeParams, _field: string, _warn: (field: string, message: string) => void): void {}

  /** One call of the API. Errors may be anything the SDK throws; `classify` reads them. */
  protected abstract send(call: ProviderCall): Promise<ProviderReply>;

  /** Reads an SDK error that is not a cancellation or this base's timeout. */
  protected abstract classify(error: unknown): UpstreamFailure;

  private async attempt(call: ProviderCall): Promise<ProviderReply> {
    const attempt = attemptSignal(call.ctx.signal, this.timeoutMs, this.clock);
    try {
      const reply = await this.send({ ...call, signal: attempt.signal });
      // The SDKs end a stream quietly when its signal aborts: a reply after an abort is incomplete.
      if (attempt.signal.aborted) throw attempt.signal.reason;
      return reply;
    } catch (error) {
      if (call.ctx.signal.aborted) throw promptCancelled();
      if (attempt.timedOut()) {
        throw new BridgeError("TIMEOUT", `${this.id}: no answer within timeoutMs ${this.timeoutMs}`, {
          provider: this.id,
          timeoutMs: this.timeoutMs,
        });
      }
      if (error instanceof BridgeError) throw new BridgeError(error.type, this.redact(error.message), error.details);
      throw upstreamError(this.id, this.classify(error), this.redact);
    } finally {
      attempt.dispose();
    }
  }
}
