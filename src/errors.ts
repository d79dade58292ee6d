/**
 * `BridgeError`: the one error type of troupe, its one mapping to HTTP, and the one way a schema error
 * becomes CONFIG.
 */
import type { z } from "zod";

/** Every error category of the bridge (SPEC §2.3). */
export const BRIDGE_ERROR_TYPES = ["CONFIG", "AUTH", "UPSTREAM", "TRANSPORT", "TIMEOUT", "NOT_FOUND", "CAPACITY", "BUSY", "CANCELLED", "INTERNAL"] as const;

/** One error category. */
export type BridgeErrorType = (typeof BRIDGE_ERROR_TYPES)[number];

/** What every error carries besides its type and message. */
export interface BridgeErrorDetails {
  /** Trying the same call again later may succeed. */
  retryable: boolean;
  /** The session named in the call can still be used. */
  sessionValid: boolean;
  [key: string]: unknown;
}

const DEFAULTS: Record<BridgeErrorType, Pick<BridgeErrorDetails, "retryable" | "sessionValid">> = {
  CONFIG: { retryable: false, sessionValid: true },
  AUTH: { retryable: false, sessionValid: false },
  UPSTREAM: { retryable: true, sessionValid: true },
  TRANSPORT: { retryable: true, sessionValid: true },
  TIMEOUT: { retryable: true, sessionValid: true },
  NOT_FOUND: { retryable: false, sessionValid: false },
  CAPACITY: { retryable: true, sessionValid: true },
  BUSY: { retryable: true, sessionValid: true },
  CANCELLED: { retryable: false, sessionValid: true },
  INTERNAL: { retryable: false, sessionValid: true },
};

/** The error every bridge tool throws. `type` is the category; `details` says whether to retry. */
export class BridgeError extends Error {
  override readonly name = "BridgeError";
  readonly type: BridgeErrorType;
  readonly details: BridgeErrorDetails;

  constructor(type: BridgeErrorType, message: string, details: Partial<BridgeErrorDetails> = {}) {
    super(message);
    this.type = type;
    this.details = { ...DEFAULTS[type], ...details };
  }

  /** The JSON shape used on the wire: `{ type, message, details }`. */
  toJSON(): { type: BridgeErrorType; message: string; details: BridgeErrorDetails } {
    return { type: this.type, message: this.message, details: this.details };
  }
}

/** Whether a value names an error category. */
export function isBridgeErrorType(value: unknown): value is BridgeErrorType {
  return typeof value === "string" && (BRIDGE_ERROR_TYPES as readonly string[]).includes(value);
}

/** The message of a missing session, exactly as the seed words it. */
export const SESSION_NOT_FOUND = "Session not found";

/** A NOT_FOUND for a session id. */
export function sessionNotFound(sessionId: string): BridgeError {
  return new BridgeError("NOT_FOUND", SESSION_NOT_FOUND, { sessionId });
}

/** A prompt aborted by its signal: what every provider, tool and remote agent throws then. */
export function promptCancelled(): BridgeError {
  return new BridgeError("CANCELLED", "Prompt cancelled");
}

/** The message of anything thrown (an object whose `toString` throws gives its tag). */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  try {
    return String(error);
  } catch {
    return Object.prototype.toString.call(error);
  }
}

/** Turns anything thrown into a BridgeError; unknown errors become `fallback` with their message. */
export function toBridgeError(error: unknown, fallback: BridgeErrorType = "INTERNAL"): BridgeError {
  if (error instanceof BridgeError) return error;
  if (error instanceof Error) return new BridgeError(fallback, error.message);
  return new BridgeError(fallback, String(error));
}

/**
 * A CONFIG error from a zod validation failure: `<field>: <message>` for the first issue, with `details.field`
 * and every issue in `details.issues`. `prefix` names where the validated value sits (`runtimeParams`);
 * `root` names the whole value when an issue has no path (`(arguments)`, `(body)`).
 */
export function configErrorFromZod(
  error: z.ZodError,
  { prefix = [], root = "(arguments)", details = {} }: { prefix?: string[]; root?: string; details?: Record<string, unknown> } = {},
): BridgeError {
  // An object with several unknown keys is one zod issue; each key is its own failing field.
  const issues = error.issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path.map(String)];
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [undefined];
    return keys.map((key) => {
      const field = (key === undefined ? path : [...path, key]).join(".");
      return { field: field || root, message: key === undefined ? issue.message : `unrecognized key ${JSON.stringify(key)}` };
    });
  });
  return configErrorFromIssues(issues, { root: prefix.join(".") || root, details });
}

/** One failing field of a validated value: a dotted path and what is wrong there. */
export interface ValidationIssue {
  field: string;
  message: string;
}

/**
 * A CONFIG error from validation issues, whatever validated them (zod, ajv): `<field>: <message>` for the
 * first issue, with `details.field` and every issue in `details.issues`; `root` names the failing field when
 * there is no issue.
 */
export function configErrorFromIssues(
  issues: ValidationIssue[],
  { root = "(arguments)", details = {} }: { root?: string; details?: Record<string, unknown> } = {},
): BridgeError {
  const first = issues[0] ?? { field: root, message: "invalid" };
  return new BridgeError("CONFIG", `${first.field}: ${first.message}`, { ...details, field: first.field, issues });
}

const HTTP_STATUS: Record<BridgeErrorType, number> = {
  CONFIG: 400,
  AUTH: 401,
  NOT_FOUND: 404,
  CANCELLED: 409,
  CAPACITY: 429,
  BUSY: 429,
  UPSTREAM: 502,
  TRANSPORT: 502,
  TIMEOUT: 504,
  INTERNAL: 500,
};

/**
 * The HTTP status of an error: by type; 413 for an argument over a size limit; 403 for an AUTH error whose
 * caller is known but may not act on what it names (`details.forbidden`); 409 for a CONFIG error about a
 * resource that has ended (`details.conflict`).
 */
/**
 * A refusal for now (503, ask again): a cluster node cut from NATS or its store, a workflow's or a session's node
 * dead and not yet taken over.
 */
export function isServiceUnavailable(error: unknown): boolean {
  return error instanceof BridgeError && error.type === "TRANSPORT" && error.details.unavailable === true;
}

export function httpStatusOf(error: BridgeError): number {
  if (error.type === "CONFIG" && typeof error.details.limitBytes === "number") return 413;
  if (error.type === "TIMEOUT" && typeof error.details.bodyTimeoutMs === "number") return 408;
  if (error.type === "AUTH" && error.details.forbidden === true) return 403;
  if (error.type === "CONFIG" && error.details.conflict === true) return 409;
  // A cluster node cut from NATS or its store: not a bad gateway, a service unavailable for now.
  if (isServiceUnavailable(error)) return 503;
  return HTTP_STATUS[error.type];
}
