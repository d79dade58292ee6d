/**
 * What a `pg` error means to troupe. A connection that cannot be made, breaks or times out, and a server
 * shutting down or out of resources, are TRANSPORT (trying again later may work); a server that refuses the
 * user or the database is CONFIG at open; anything else PostgreSQL answers is INTERNAL (a bug of the store, or
 * a database changed under it).
 */
import { BridgeError, toBridgeError } from "../errors.js";

/** SQLSTATE classes and codes of a server that cannot serve now: connection exceptions, shutdowns, resources. */
const UNAVAILABLE_SQLSTATE = /^(08|53|57P0[1-4]|58)/;
/** SQLSTATE codes of a server that refuses who or where the client is: authentication, unknown database or role. */
const REFUSED_SQLSTATE = /^(28|3D000)/;
/** Node's codes of a connection that could not be made or broke. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNABORTED"]);

function codeOf(error: unknown): string | undefined {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : undefined;
}

/** Whether `error` comes from a server answer (a `pg` DatabaseError carries its severity). */
function isServerAnswer(error: unknown): boolean {
  return error instanceof Error && "severity" in error;
}

/**
 * Whether `error` says the server could not be reached or used: a network failure, a broken or timed-out
 * connection (which `pg` reports without a code), or a server that cannot serve now.
 */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof BridgeError) return error.type === "TRANSPORT";
  const code = codeOf(error);
  if (isServerAnswer(error)) return code !== undefined && UNAVAILABLE_SQLSTATE.test(code);
  if (code !== undefined && NETWORK_CODES.has(code)) return true;
  return error instanceof Error && /Connection terminated|timeout|timed out|Client has encountered a connection error|not queryable/i.test(error.message);
}

/** The BridgeError of a failure to use the store at `where`: TRANSPORT (`unavailable`: 503) when the server was unavailable, INTERNAL otherwise. */
export function postgresError(error: unknown, where: string, doing: string): BridgeError {
  if (error instanceof BridgeError) return error;
  const code = codeOf(error);
  const details = code === undefined ? {} : { code };
  const message = `${where}: ${doing} failed: ${toBridgeError(error).message}`;
  // A server away for now: a service unavailable (503), to be asked again, as a cluster's other outages are.
  return isUnavailable(error)
    ? new BridgeError("TRANSPORT", message, { ...details, unavailable: true, retryable: true })
    : new BridgeError("INTERNAL", message, details);
}

/** The BridgeError of a failure to open the store: CONFIG when the server refuses the user or the database, TRANSPORT when unreachable. */
export function postgresOpenError(error: unknown, where: string): BridgeError {
  if (error instanceof BridgeError) return error;
  const code = codeOf(error);
  if (isServerAnswer(error) && code !== undefined && REFUSED_SQLSTATE.test(code)) {
    return new BridgeError("CONFIG", `Cannot open ${where}: ${toBridgeError(error).message}`, { code });
  }
  if (isUnavailable(error)) {
    return new BridgeError("TRANSPORT", `Cannot reach ${where}: ${toBridgeError(error).message}`, {
      ...(code === undefined ? {} : { code }),
      unavailable: true,
      retryable: true,
    });
  }
  return new BridgeError("CONFIG", `Cannot open ${where}: ${toBridgeError(error).message}`, code === undefined ? {} : { code });
}
