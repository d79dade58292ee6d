/**
 * Reading the errors of the OpenAI and Anthropic SDKs, which share one generated shape (Stainless):
 * `APIError` with `status`, `headers` and the parsed body in `error`; connection, timeout and abort subclasses.
 */
import { retryAfterMsOf } from "./retry.js";
import { isConnectionError, shouldRetryHeader, type UpstreamFailure } from "./upstream-errors.js";
import { messageOf } from "../errors.js";

/** The fields of a Stainless `APIError` this module reads. */
export interface StainlessApiError extends Error {
  status: number | undefined;
  headers: Headers | undefined;
  error: unknown;
}

/** The error classes of one Stainless SDK. */
export interface StainlessErrorClasses {
  APIError: abstract new (...args: never[]) => StainlessApiError;
  APIConnectionError: abstract new (...args: never[]) => Error;
  APIConnectionTimeoutError: abstract new (...args: never[]) => Error;
}

/** The API's own message: `error.message` in OpenAI's body, `error.error.message` in Anthropic's. */
function apiMessageOf(error: StainlessApiError): string {
  const body = error.error as { message?: unknown; error?: { message?: unknown } } | undefined;
  if (typeof body?.message === "string") return body.message;
  if (typeof body?.error?.message === "string") return body.error.message;
  return error.message.replace(/^\d{3}\s+/, "");
}

/** Reads an error that is one of the SDK's own; undefined for anything else. */
function classifySdkError(error: unknown, classes: StainlessErrorClasses, now: number): UpstreamFailure | undefined {
  if (error instanceof classes.APIConnectionTimeoutError) return { kind: "timeout" };
  if (error instanceof classes.APIConnectionError) return { kind: "connection", message: messageOf(error.cause ?? error) };
  if (error instanceof classes.APIError && error.status !== undefined) {
    const retryAfterMs = retryAfterMsOf(error.headers, now);
    const shouldRetry = shouldRetryHeader(error.headers);
    return {
      kind: "status",
      status: error.status,
      message: apiMessageOf(error),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(shouldRetry !== undefined ? { shouldRetry } : {}),
    };
  }
  return undefined;
}

/**
 * Classifies anything a Stainless SDK threw (after cancellation and troupe's own timeout were ruled out);
 * `classes` is undefined while the SDK is not loaded, when nothing thrown can be one of its errors.
 */
export function classifyStainlessError(error: unknown, classes: StainlessErrorClasses | undefined, now: number): UpstreamFailure {
  const sdkFailure = classes === undefined ? undefined : classifySdkError(error, classes, now);
  if (sdkFailure !== undefined) return sdkFailure;
  if (isConnectionError(error)) return { kind: "connection", message: messageOf(error) };
  return { kind: "other", message: messageOf(error) };
}
