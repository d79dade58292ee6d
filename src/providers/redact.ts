/**
 * Keeps API keys out of everything troupe writes: error messages, events and SDK logs.
 */

/** What replaces a secret. */
export const REDACTED = "[REDACTED]";

/** Replaces every occurrence of each secret in a text. */
export type Redactor = (text: string) => string;

/** A redactor for these secrets; empty ones are ignored. */
export function createRedactor(secrets: ReadonlyArray<string | undefined>): Redactor {
  const present = secrets.filter((secret): secret is string => secret !== undefined && secret !== "");
  if (present.length === 0) return (text) => text;
  return (text) => present.reduce((redacted, secret) => redacted.split(secret).join(REDACTED), text);
}

/** The logger shape both the OpenAI and the Anthropic SDK accept. */
export interface SdkLogger {
  error(message: string, ...rest: unknown[]): void;
  warn(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
  debug(message: string, ...rest: unknown[]): void;
}

function redactValue(value: unknown, redact: Redactor): unknown {
  if (typeof value === "string") return redact(value);
  if (value instanceof Error) return redact(`${value.name}: ${value.message}`);
  if (typeof value !== "object" || value === null) return value;
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch {
    return "[unserializable]";
  }
  return json === undefined || redact(json) === json ? value : redact(json);
}

/**
 * Wraps a logger so that nothing an SDK logs (request details, response bodies) can carry a key. The SDKs
 * already mask auth headers; this also covers a body that echoes a key.
 */
export function redactingLogger(logger: SdkLogger, redact: Redactor): SdkLogger {
  const wrap =
    (level: keyof SdkLogger) =>
    (message: string, ...rest: unknown[]): void =>
      logger[level](redact(message), ...rest.map((value) => redactValue(value, redact)));
  return { error: wrap("error"), warn: wrap("warn"), info: wrap("info"), debug: wrap("debug") };
}
