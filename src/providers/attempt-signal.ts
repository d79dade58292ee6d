/**
 * One attempt's abort signal: it fires when the prompt is cancelled or when the attempt runs out of time.
 */
import type { Clock } from "../clock.js";

/** The signal to hand an SDK for one attempt, and why it fired. */
export interface AttemptSignal {
  signal: AbortSignal;
  /** Whether the attempt's `timeoutMs` passed (as opposed to the prompt being cancelled). */
  timedOut(): boolean;
  /** Clears the timer and the link to the prompt's signal; call it when the attempt is over. */
  dispose(): void;
}

/** Links an attempt to the prompt's `signal` and arms its `timeoutMs` on `clock`. */
export function attemptSignal(promptSignal: AbortSignal, timeoutMs: number, clock: Clock): AttemptSignal {
  const controller = new AbortController();
  let timedOut = false;
  const onPromptAbort = (): void => controller.abort(promptSignal.reason);
  if (promptSignal.aborted) onPromptAbort();
  else promptSignal.addEventListener("abort", onPromptAbort, { once: true });
  const timer = clock.setTimeout(() => {
    timedOut = true;
    controller.abort(new Error(`Attempt timed out after ${timeoutMs} ms`));
  }, timeoutMs);
  return {
    signal: controller.signal,
    timedOut: () => timedOut,
    dispose: () => {
      clock.clearTimeout(timer);
      promptSignal.removeEventListener("abort", onPromptAbort);
    },
  };
}
