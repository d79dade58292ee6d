/**
 * A failure as the machines keep it (`PromptError`, plain data that can be emitted and stored) and as callers
 * get it (`BridgeError`): the one conversion each way.
 */
import type { PromptError, RunPromptFailure } from "../../machines/session.machine.js";
import { BridgeError } from "../errors.js";

/** A `BridgeError` as a machine's failure at `at` (epoch ms). */
export function failure(error: BridgeError, at: number): RunPromptFailure {
  const { retryable, sessionValid, ...details } = error.details;
  return { type: error.type, message: error.message, retryable, sessionValid, details, at };
}

/** A machine's failure as the `BridgeError` a caller gets. */
export function bridgeErrorOf(error: PromptError): BridgeError {
  return new BridgeError(error.type as BridgeError["type"], error.message, {
    ...error.details,
    retryable: error.retryable,
    sessionValid: error.sessionValid,
  });
}
