/**
 * Retries of transient provider failures: exponential backoff with jitter, honouring `retry-after`.
 */
import type { Clock } from "../clock.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { waitOrAbort } from "./mock.js";

/** How a provider retries a failed attempt. */
export interface RetryPolicy {
  /** Retries after the first attempt. */
  maxRetries: number;
  /** First delay when the server names none; doubles per retry. */
  baseDelayMs: number;
  /** Backoff is capped here; a server asking for a longer wait is not waited for. */
  maxDelayMs: number;
}

/** Share of a backoff delay that jitter may take off, so that clients do not retry in step. */
const JITTER = 0.25;

/**
 * The wait a response asks for: `retry-after-ms` (milliseconds), else `retry-after` in seconds or as an
 * HTTP date. `undefined` when neither is present or parseable.
 */
export function retryAfterMsOf(headers: Headers | undefined, now: number): number | undefined {
  const milliseconds = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(milliseconds) && milliseconds >= 0) return milliseconds;
  const value = headers?.get("retry-after")?.trim();
  if (value === undefined || value === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Number.parseFloat(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * The wait before retry number `retry` (0 for the first): the server's `retryAfterMs` if it gave one, else
 * `baseDelayMs * 2^retry` capped at `maxDelayMs`, less up to 25 % jitter. `undefined` when the server asks
 * for more than `maxDelayMs`: waiting that long inside one prompt is not worth it.
 */
export function retryDelayMs(policy: RetryPolicy, retry: number, retryAfterMs?: number, random: () => number = Math.random): number | undefined {
  if (retryAfterMs !== undefined) return retryAfterMs <= policy.maxDelayMs ? retryAfterMs : undefined;
  const backoff = Math.min(policy.baseDelayMs * 2 ** retry, policy.maxDelayMs);
  return Math.round(backoff * (1 - random() * JITTER));
}

/** What `runWithRetries` needs besides the attempt. */
export interface RetryContext {
  policy: RetryPolicy;
  clock: Clock;
  /** Cancels the waits between attempts (CANCELLED). */
  signal: AbortSignal;
  /** Whether a failed attempt may be tried again at all; false once part of the answer was streamed. */
  mayRetry(): boolean;
}

/**
 * Runs `attempt` until it succeeds, it fails with a non-retryable error (`details.retryable` false), the
 * retries run out, or a wait would exceed the policy. The final error carries `details.attempts`.
 */
export async function runWithRetries<T>(attempt: () => Promise<T>, context: RetryContext): Promise<T> {
  const { policy, clock, signal } = context;
  for (let retry = 0; ; retry += 1) {
    try {
      return await attempt();
    } catch (error) {
      const failure = toBridgeError(error);
      const retryAfterMs = typeof failure.details.retryAfterMs === "number" ? failure.details.retryAfterMs : undefined;
      const delayMs = failure.details.retryable && retry < policy.maxRetries && context.mayRetry() ? retryDelayMs(policy, retry, retryAfterMs) : undefined;
      if (delayMs === undefined) throw new BridgeError(failure.type, failure.message, { ...failure.details, attempts: retry + 1 });
      await waitOrAbort(clock, delayMs, signal);
    }
  }
}
