/**
 * The mock provider's engine: deterministic, offline, scriptable answers that honour cancellation.
 */
import type { Usage } from "../../machines/session.machine.js";
import type { PromptContext, StopReason } from "../agents/agent.js";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, promptCancelled, type BridgeErrorDetails, type BridgeErrorType } from "../errors.js";
import { fallbackCallId, type ToolCall, type ToolRequest } from "../tools/tool-call.js";
import type { ProviderReply } from "./provider.js";

/** A tool call the mock model makes. */
export interface MockToolCall {
  /** The tool's name (a name no tool has tests the model's mistake). */
  name: string;
  /** The arguments, sent as JSON; default `{}`. */
  args?: unknown;
  /** The call's id; default `call_<round>_<n>` (both from 1). */
  id?: string;
}

/** One scripted answer. Every field is optional; an empty step echoes the prompt. */
export interface MockStep {
  /** The answer; default `Echo: <prompt>`, or nothing when the step calls tools. */
  text?: string;
  /**
   * Tools the model calls in this step (in a `MultiProviderCompanionAgent` with `tools`, the loop runs them
   * and calls the mock again with their results: the next step answers). `stopReason` defaults to `tool_use`.
   */
  toolCalls?: MockToolCall[];
  /** Pieces streamed as deltas before the answer; default the words of `text`. */
  deltas?: string[];
  /** Wait this long (on the clock) before answering. */
  delayMs?: number;
  /** Never answer: wait until the prompt is cancelled. */
  hang?: boolean;
  /** Fail with this error instead of answering. */
  error?: { type: BridgeErrorType; message?: string; details?: Partial<BridgeErrorDetails> };
  usage?: Usage;
  stopReason?: StopReason;
}

/**
 * A script: steps used in order (then echo), or a function choosing a step per call. In a tool loop each
 * round is a call; the function gets the tool request too, with the rounds so far and their results.
 */
export type MockScript = MockStep[] | ((ctx: PromptContext, tools?: ToolRequest) => MockStep | undefined);

function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : trimmed.split(/\s+/).length;
}

function splitIntoDeltas(text: string): string[] {
  return text.match(/\S+\s*/g) ?? [];
}

/** Resolves after `delayMs` on `clock`, or rejects with CANCELLED as soon as `signal` aborts. */
export function waitOrAbort(clock: Clock, delayMs: number | undefined, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(promptCancelled());
    const onAbort = (): void => {
      if (handle !== undefined) clock.clearTimeout(handle);
      reject(promptCancelled());
    };
    const handle =
      delayMs === undefined
        ? undefined
        : clock.setTimeout(() => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          }, delayMs);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The step's calls with their ids and arguments as JSON. */
function toolCallsOf(calls: readonly MockToolCall[], tools: ToolRequest | undefined): ToolCall[] {
  const round = (tools?.rounds.length ?? 0) + 1;
  return calls.map((call, index) => ({ callId: call.id ?? fallbackCallId(round, index), name: call.name, argumentsJson: JSON.stringify(call.args ?? {}) }));
}

/** Words the mock model reads: the history, the prompt, and the earlier rounds' texts and results. */
function inputWords(ctx: PromptContext, tools: ToolRequest | undefined): number {
  const rounds = tools?.rounds ?? [];
  const texts = [
    ...ctx.history.map((message) => message.content),
    ctx.prompt,
    ...rounds.flatMap((round) => [round.text, ...round.results.map((result) => result.content)]),
  ];
  return texts.reduce((sum, text) => sum + countWords(text), 0);
}

/** Plays one step for one prompt (one round of it, with `tools`). */
export async function playMockStep(step: MockStep, ctx: PromptContext, clock: Clock = systemClock, tools?: ToolRequest): Promise<ProviderReply> {
  if (step.hang) await waitOrAbort(clock, undefined, ctx.signal);
  if (step.delayMs !== undefined && step.delayMs > 0) await waitOrAbort(clock, step.delayMs, ctx.signal);
  if (ctx.signal.aborted) throw promptCancelled();
  if (step.error) throw new BridgeError(step.error.type, step.error.message ?? `Mock ${step.error.type} error`, step.error.details);
  const toolCalls = toolCallsOf(step.toolCalls ?? [], tools);
  const text = step.text ?? (toolCalls.length > 0 ? "" : `Echo: ${ctx.prompt}`);
  for (const delta of step.deltas ?? splitIntoDeltas(text)) ctx.emit(delta);
  return {
    text,
    stopReason: step.stopReason ?? (toolCalls.length > 0 ? "tool_use" : "end_turn"),
    usage: step.usage ?? { inputTokens: inputWords(ctx, tools), outputTokens: countWords(text) },
    ...(toolCalls.length > 0 ? { toolCalls } : {}),
  };
}

/** Turns a script into a function that picks the step for each call. */
export function mockStepPicker(script: MockScript | undefined): (ctx: PromptContext, tools?: ToolRequest) => MockStep {
  if (typeof script === "function") return (ctx, tools) => script(ctx, tools) ?? {};
  const steps = [...(script ?? [])];
  return () => steps.shift() ?? {};
}
