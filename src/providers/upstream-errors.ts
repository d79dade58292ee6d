/**
 * Provider failures → `BridgeError`: the one table from HTTP status and connection failure to error type.
 */
import { BridgeError, type BridgeErrorDetails, type BridgeErrorType } from "../errors.js";
import type { Redactor } from "./redact.js";

/** A failed provider call, as a provider reads it off its SDK's error. */
export type UpstreamFailure =
  | {
      kind: "status";
      status: number;
      /** The API's own message, without the status. */
      message: string;
      /** From `retry-after-ms` / `retry-after` or the API's own retry hint. */
      retryAfterMs?: number;
      /** The server's `x-should-retry`, which overrides the status. */
      shouldRetry?: boolean;
      /** The API reports a bad key with a status other than 401/403 (Gemini: 400 `API_KEY_INVALID`). */
      invalidKey?: boolean;
    }
  /** No HTTP answer: refused, reset, DNS, a stream cut short. */
  | { kind: "connection"; message: string }
  /** The SDK's own timer fired. */
  | { kind: "timeout" }
  /** Anything else the SDK threw, e.g. a body it could not parse. */
  | { kind: "other"; message: string };

type Classification = { type: BridgeErrorType } & Pick<BridgeErrorDetails, "retryable" | "sessionValid">;

/**
 * SPEC §2.2/§2.4: a bad key fails the session (AUTH); an unknown model (404) too (CONFIG); a request the API
 * refuses as malformed is CONFIG but the session stays usable; rate limits, lock timeouts and server errors
 * are transient (UPSTREAM, retried).
 */
function classifyStatus(status: number): Classification {
  if (status === 401 || status === 403) return { type: "AUTH", retryable: false, sessionValid: false };
  if (status === 404) return { type: "CONFIG", retryable: false, sessionValid: false };
  if (status === 400 || status === 413 || status === 422) return { type: "CONFIG", retryable: false, sessionValid: true };
  if (status === 408 || status === 409 || status === 429 || status >= 500) return { type: "UPSTREAM", retryable: true, sessionValid: true };
  return { type: "UPSTREAM", retryable: false, sessionValid: true };
}

/** The `BridgeError` of a provider failure; every message goes through `redact`. */
export function upstreamError(providerId: string, failure: UpstreamFailure, redact: Redactor): BridgeError {
  switch (failure.kind) {
    case "status": {
      const classified = failure.invalidKey ? classifyStatus(401) : classifyStatus(failure.status);
      const retryable = failure.shouldRetry ?? classified.retryable;
      return new BridgeError(classified.type, redact(`${providerId}: ${failure.status} ${failure.message}`), {
        retryable,
        sessionValid: classified.sessionValid,
        provider: providerId,
        status: failure.status,
        ...(failure.retryAfterMs !== undefined ? { retryAfterMs: failure.retryAfterMs } : {}),
      });
    }
    case "connection":
      return new BridgeError("TRANSPORT", redact(`${providerId}: connection failed: ${failure.message}`), { provider: providerId });
    case "timeout":
      return new BridgeError("TIMEOUT", `${providerId}: the request timed out`, { provider: providerId });
    case "other":
      return new BridgeError("UPSTREAM", redact(`${providerId}: ${failure.message}`), { retryable: false, provider: providerId });
  }
}

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"]);

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/**
 * Whether `fetch` (undici) failed below HTTP: `fetch failed` / `terminated` TypeErrors, socket error codes,
 * or such an error as the `cause`.
 */
export function isConnectionError(error: unknown): boolean {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 4; current = current.cause, depth += 1) {
    const code = codeOf(current);
    if (code !== undefined && (CONNECTION_CODES.has(code) || code.startsWith("UND_ERR_"))) return true;
    if (current instanceof TypeError && (current.message === "fetch failed" || current.message === "terminated")) return true;
  }
  return false;
}

/** Reads `x-should-retry: true|false`, which the OpenAI and Anthropic APIs may send to override the status. */
export function shouldRetryHeader(headers: Headers | undefined): boolean | undefined {
  const value = headers?.get("x-should-retry");
  return value === "true" ? true : value === "false" ? false : undefined;
}
