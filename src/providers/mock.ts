/**
 * The mock provider's engine: deterministic, offline, scriptable answers that honour cancellation.
 */
import type { Usage } from "../../machines/session.machine.js";
import type { AgentReply, PromptContext, StopReason } from "../agents/agent.js";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, type BridgeErrorDetails, type BridgeErrorType } from "../errors.js";

/** One scripted answer. Every field is optional; an empty step echoes the prompt. */
export interface MockStep {
  /** The answer; default `Echo: <prompt>`. */
  text?: string;
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

/** A script: steps used in order (then echo), or a function choosing a step per prompt. */
export type MockScript = MockStep[] | ((ctx: PromptContext) => MockStep | undefined);

function countWords(text: string): number {
  const trimmed = text.trim();
  return trimmed === "" ? 0 : trimmed.split(/\s+/).length;
}

function splitIntoDeltas(text: string): string[] {
  return text.match(/\S+\s*/g) ?? [];
}

function cancelled(): BridgeError {
  return new BridgeError("CANCELLED", "Prompt cancelled");
}

/** Resolves after `delayMs` on `clock`, or rejects with CANCELLED as soon as `signal` aborts. */
export function waitOrAbort(clock: Clock, delayMs: number | undefined, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(cancelled());
    const onAbort = (): void => {
      if (handle !== undefined) clock.clearTimeout(handle);
      reject(cancelled());
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

/** Plays one step for one prompt. */
export async function playMockStep(step: MockStep, ctx: PromptContext, clock: Clock = systemClock): Promise<AgentReply> {
  if (step.hang) await waitOrAbort(clock, undefined, ctx.signal);
  if (step.delayMs !== undefined && step.delayMs > 0) await waitOrAbort(clock, step.delayMs, ctx.signal);
  if (ctx.signal.aborted) throw cancelled();
  if (step.error) throw new BridgeError(step.error.type, step.error.message ?? `Mock ${step.error.type} error`, step.error.details);
  const text = step.text ?? `Echo: ${ctx.prompt}`;
  for (const delta of step.deltas ?? splitIntoDeltas(text)) ctx.emit(delta);
  const inputTokens = countWords(ctx.prompt) + ctx.history.reduce((sum, message) => sum + countWords(message.content), 0);
  return {
    text,
    stopReason: step.stopReason ?? "end_turn",
    usage: step.usage ?? { inputTokens, outputTokens: countWords(text) },
  };
}

/** Turns a script into a function that picks the step for each prompt. */
export function mockStepPicker(script: MockScript | undefined): (ctx: PromptContext) => MockStep {
  if (typeof script === "function") return (ctx) => script(ctx) ?? {};
  const steps = [...(script ?? [])];
  return () => steps.shift() ?? {};
}
