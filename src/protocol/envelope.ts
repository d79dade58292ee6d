/**
 * The message envelope of SPEC §3.2: its zod schema (validated once, at the edge), its types and its defaults.
 *
 * Every message goes through `parseEnvelope`, so it first tries a hand check that accepts only what the schema
 * accepts and builds what the schema outputs (same fields, same order, same defaults); anything it is not sure
 * of, every bad envelope included, goes to the schema, whose errors are the answer. The schema stays the one
 * definition of a valid envelope: the hand check only recognises the common shape, and a test compares the two.
 */
import { z } from "zod";
import type { BackoffKind } from "../../machines/delivery.machine.js";
import { formatDuration, isDuration } from "./durations.js";
import { parseWith } from "../validation.js";

/** What a message is for. */
export const MESSAGE_TYPES = ["task_request", "task_response", "status_update", "error", "heartbeat"] as const;
/** Priorities, most urgent first: the order a recipient's queue is served in. */
export const PRIORITIES = ["critical", "high", "medium", "low"] as const;
/** `async`: answered 202 once accepted; `sync`: answered with the recipient's response. */
export const DELIVERY_MODES = ["async", "sync"] as const;
/** Backoff between retries. */
export const BACKOFF_KINDS = ["linear", "exponential"] as const satisfies readonly BackoffKind[];

/** One message type. */
export type MessageType = (typeof MESSAGE_TYPES)[number];
/** One priority. */
export type Priority = (typeof PRIORITIES)[number];

/** Retries per target when `retry_policy` is omitted. */
export const DEFAULT_MAX_RETRIES = 3;
/** Backoff when `retry_policy` is omitted. */
export const DEFAULT_BACKOFF: BackoffKind = "exponential";
/** Largest `max_retries` accepted. */
export const MAX_RETRIES_LIMIT = 100;
/** Longest `message_id`, agent id or session id accepted. */
export const MAX_ID_LENGTH = 256;

/** Agent ids look like `claude-code://orchestrator`: a framework, `://`, a name. */
// eslint-disable-next-line no-control-regex -- control characters are what these patterns refuse
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*:\/\/[^\s\u0000-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]+$/;

/** Control characters and bidirectional overrides: refused in every id, where they would disguise one id as another in logs and listings. */
// eslint-disable-next-line no-control-regex -- control characters are what these patterns refuse
export const DISGUISING_CHARACTERS = /[\u0000-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/;

/** A UTF-16 surrogate without its pair: no store keeps it (an id must read back as it was written). */
const LONE_SURROGATE = /\p{Cs}/u;

const id = z
  .string()
  .min(1)
  .max(MAX_ID_LENGTH)
  .refine((value) => !DISGUISING_CHARACTERS.test(value), "must not contain control characters or bidirectional overrides")
  .refine((value) => !LONE_SURROGATE.test(value), "must be well-formed Unicode (an unpaired surrogate is not)");
/** An agent id (`framework://name`). */
export const agentIdSchema = id.regex(AGENT_ID_PATTERN, 'expected an agent id such as "claude-code://orchestrator"');
const framework = z.string().min(1).max(MAX_ID_LENGTH);
/** A duration as envelopes write it (`"1500ms"`, `"300s"`, `"5m"`). */
export const durationSchema = z.string().refine(isDuration, 'expected a duration such as "1500ms", "300s" or "5m"');

const routingSchema = z.strictObject({
  timeout: durationSchema.optional(),
  retry_policy: z
    .strictObject({
      max_retries: z.number().int().min(0).max(MAX_RETRIES_LIMIT).default(DEFAULT_MAX_RETRIES),
      backoff: z.enum(BACKOFF_KINDS).default(DEFAULT_BACKOFF),
    })
    .default({ max_retries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF }),
  fallback_agents: z.array(agentIdSchema).max(16).optional(),
  delivery_mode: z.enum(DELIVERY_MODES).default("async"),
});

const timestampSchema = z.iso.datetime({ offset: true });

/** The envelope schema; `routing` and `priority` get their defaults (the timeout's comes from the bus). */
export const envelopeSchema = z.strictObject({
  message_id: id,
  timestamp: timestampSchema,
  sender: z.strictObject({ agent_id: agentIdSchema, framework, session_id: id.optional() }),
  // The seed project's adapters name the session of a reply on its recipient (SPEC §3.9).
  recipient: z.strictObject({ agent_id: agentIdSchema, framework, session_id: id.optional() }),
  message_type: z.enum(MESSAGE_TYPES),
  priority: z.enum(PRIORITIES).default("medium"),
  payload: z.record(z.string(), z.unknown()),
  routing: routingSchema.default({
    retry_policy: { max_retries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF },
    delivery_mode: "async",
  }),
  metadata: z.record(z.string(), z.unknown()).optional(),
});

/** An envelope as senders write it (defaults may be omitted). */
export type EnvelopeInput = z.input<typeof envelopeSchema>;

/** A validated envelope, every default filled in: what recipients receive. */
export type MessageEnvelope = Omit<z.output<typeof envelopeSchema>, "routing"> & {
  routing: Omit<z.output<typeof routingSchema>, "timeout"> & { timeout: string };
};

/** Validates an envelope; a bad one is CONFIG with the failing paths. The timeout defaults to `defaultTimeoutMs`. */
export function parseEnvelope(value: unknown, defaultTimeoutMs: number): MessageEnvelope {
  const defaultTimeout = defaultTimeoutText(defaultTimeoutMs);
  const checked = checkedEnvelope(value, defaultTimeout);
  if (checked !== undefined) return checked;
  const parsed = parseWith(envelopeSchema, value);
  return { ...parsed, routing: { ...parsed.routing, timeout: parsed.routing.timeout ?? defaultTimeout } };
}

/** The default timeout's text: one string for every message of a bus. */
let lastDefaultTimeout = { ms: Number.NaN, text: "" };

function defaultTimeoutText(ms: number): string {
  if (lastDefaultTimeout.ms !== ms) lastDefaultTimeout = { ms, text: formatDuration(ms) };
  return lastDefaultTimeout.text;
}

// ---- the hand check: the schema's checks, in code, for the envelope as senders usually write it ----

const ENVELOPE_FIELDS: ReadonlySet<string> = new Set([
  "message_id",
  "timestamp",
  "sender",
  "recipient",
  "message_type",
  "priority",
  "payload",
  "routing",
  "metadata",
]);
const PARTY_FIELDS: ReadonlySet<string> = new Set(["agent_id", "framework", "session_id"]);
const ROUTING_FIELDS: ReadonlySet<string> = new Set(["timeout", "retry_policy", "fallback_agents", "delivery_mode"]);
const RETRY_POLICY_FIELDS: ReadonlySet<string> = new Set(["max_retries", "backoff"]);
const MESSAGE_TYPE_SET: ReadonlySet<unknown> = new Set(MESSAGE_TYPES);
const PRIORITY_SET: ReadonlySet<unknown> = new Set(PRIORITIES);
const DELIVERY_MODE_SET: ReadonlySet<unknown> = new Set(DELIVERY_MODES);
const BACKOFF_SET: ReadonlySet<unknown> = new Set(BACKOFF_KINDS);
/** The very pattern the schema's timestamp check tests. */
const TIMESTAMP_PATTERN = timestampSchema._zod.def.pattern as RegExp;

type Fields = Record<string, unknown>;

/** A plain object (as JSON makes them) whose keys are all `allowed` and whose values are all defined. */
function isPlainWith(value: unknown, allowed: ReadonlySet<string>): value is Fields {
  if (typeof value !== "object" || value === null || Object.getPrototypeOf(value) !== Object.prototype) return false;
  for (const key in value) if (!allowed.has(key) || (value as Fields)[key] === undefined) return false;
  return true;
}

function isId(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= MAX_ID_LENGTH && !DISGUISING_CHARACTERS.test(value) && !LONE_SURROGATE.test(value);
}

/** Whether a value is an agent id the envelope's schema would take (`framework://name`, at most 256 characters). */
export function isAgentId(value: unknown): value is string {
  return isId(value) && AGENT_ID_PATTERN.test(value);
}

/** `payload` and `metadata`: a plain object with string keys, copied as the schema copies a record (without `__proto__`). */
function recordCopy(value: unknown): Fields | undefined {
  if (typeof value !== "object" || value === null || Object.getPrototypeOf(value) !== Object.prototype || Object.getOwnPropertySymbols(value).length > 0)
    return undefined;
  const copy: Fields = {};
  for (const key in value) if (key !== "__proto__") copy[key] = (value as Fields)[key];
  return copy;
}

function partyOf(value: unknown): MessageEnvelope["sender"] | undefined {
  if (!isPlainWith(value, PARTY_FIELDS)) return undefined;
  const { agent_id, framework, session_id } = value;
  if (!isAgentId(agent_id) || typeof framework !== "string" || framework.length < 1 || framework.length > MAX_ID_LENGTH) return undefined;
  if (session_id === undefined) return { agent_id, framework };
  return isId(session_id) ? { agent_id, framework, session_id } : undefined;
}

function routingOf(value: unknown, defaultTimeout: string): MessageEnvelope["routing"] | undefined {
  if (value === undefined)
    return { retry_policy: { max_retries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF }, delivery_mode: "async", timeout: defaultTimeout };
  if (!isPlainWith(value, ROUTING_FIELDS)) return undefined;
  const { timeout, retry_policy: policy, fallback_agents: fallbacks, delivery_mode = "async" } = value;
  if (timeout !== undefined && (typeof timeout !== "string" || !isDuration(timeout))) return undefined;
  if (!DELIVERY_MODE_SET.has(delivery_mode)) return undefined;
  let retry_policy: MessageEnvelope["routing"]["retry_policy"] = { max_retries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF };
  if (policy !== undefined) {
    if (!isPlainWith(policy, RETRY_POLICY_FIELDS)) return undefined;
    const { max_retries = DEFAULT_MAX_RETRIES, backoff = DEFAULT_BACKOFF } = policy;
    if (
      typeof max_retries !== "number" ||
      !Number.isSafeInteger(max_retries) ||
      max_retries < 0 ||
      max_retries > MAX_RETRIES_LIMIT ||
      !BACKOFF_SET.has(backoff)
    )
      return undefined;
    retry_policy = { max_retries, backoff: backoff as BackoffKind };
  }
  let fallback_agents: string[] | undefined;
  if (fallbacks !== undefined) {
    if (!Array.isArray(fallbacks) || fallbacks.length > 16) return undefined;
    // Indexes, not `every`: a hole is an undefined entry to the schema, and fails.
    for (let index = 0; index < fallbacks.length; index += 1) if (!isAgentId(fallbacks[index])) return undefined;
    fallback_agents = [...(fallbacks as string[])];
  }
  const mode = delivery_mode as MessageEnvelope["routing"]["delivery_mode"];
  // The schema's order (`timeout` first when given), then a default timeout last, as `{ ...routing, timeout }` puts it.
  if (timeout !== undefined)
    return fallback_agents === undefined ? { timeout, retry_policy, delivery_mode: mode } : { timeout, retry_policy, fallback_agents, delivery_mode: mode };
  return fallback_agents === undefined
    ? { retry_policy, delivery_mode: mode, timeout: defaultTimeout }
    : { retry_policy, fallback_agents, delivery_mode: mode, timeout: defaultTimeout };
}

/** The envelope the schema would output for `value`, or undefined when the hand check is not sure it is valid. */
function checkedEnvelope(value: unknown, defaultTimeout: string): MessageEnvelope | undefined {
  if (!isPlainWith(value, ENVELOPE_FIELDS)) return undefined;
  const { message_id, timestamp, message_type, priority = "medium" } = value;
  if (!isId(message_id) || typeof timestamp !== "string" || !MESSAGE_TYPE_SET.has(message_type) || !PRIORITY_SET.has(priority)) return undefined;
  TIMESTAMP_PATTERN.lastIndex = 0;
  if (!TIMESTAMP_PATTERN.test(timestamp)) return undefined;
  const sender = partyOf(value["sender"]);
  const recipient = partyOf(value["recipient"]);
  const payload = recordCopy(value["payload"]);
  const routing = routingOf(value["routing"], defaultTimeout);
  const metadata = value["metadata"] === undefined ? null : recordCopy(value["metadata"]);
  if (sender === undefined || recipient === undefined || payload === undefined || routing === undefined || metadata === undefined) return undefined;
  const type = message_type as MessageType;
  const rank = priority as Priority;
  if (metadata === null) return { message_id, timestamp, sender, recipient, message_type: type, priority: rank, payload, routing };
  return { message_id, timestamp, sender, recipient, message_type: type, priority: rank, payload, routing, metadata };
}

/** Token usage an envelope reports (`payload.usage`, `metadata.usage`), in either spelling agents use: `input_tokens` or `inputTokens`. */
export function usageOf(value: unknown): { inputTokens: number; outputTokens: number } | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const usage = value as Record<string, unknown>;
  const inputTokens = usage["input_tokens"] ?? usage["inputTokens"];
  const outputTokens = usage["output_tokens"] ?? usage["outputTokens"];
  return typeof inputTokens === "number" && typeof outputTokens === "number" ? { inputTokens, outputTokens } : undefined;
}

/** The framework part of an agent id (`claude-code` of `claude-code://orchestrator`). */
export function frameworkOf(agentId: string): string {
  return agentId.slice(0, Math.max(0, agentId.indexOf("://")));
}

/** The message an envelope answers: `metadata.in_reply_to`, when it is a string. */
export function inReplyToOf(envelope: MessageEnvelope): string | undefined {
  const inReplyTo = envelope.metadata?.["in_reply_to"];
  return typeof inReplyTo === "string" ? inReplyTo : undefined;
}

/** The task an envelope belongs to: `metadata.task_id`, when it is a string. */
export function taskIdOf(envelope: MessageEnvelope): string | undefined {
  const taskId = envelope.metadata?.["task_id"];
  return typeof taskId === "string" ? taskId : undefined;
}

/** Between the sender and the `message_id` in a message key: refused in every id, so keys never collide. */
export const MESSAGE_KEY_SEPARATOR = "\u001f";

/**
 * What names a message on the bus: its sender and its `message_id` (de-duplication is per sender, so one sender
 * cannot squat an id another will use). The separator, U+001F, is refused in every id: no two pairs collide.
 */
export function messageKey(senderId: string, messageId: string): string {
  return `${senderId}${MESSAGE_KEY_SEPARATOR}${messageId}`;
}

/** The key of an envelope: its sender's id and its `message_id`. */
export function messageKeyOf(envelope: MessageEnvelope): string {
  return messageKey(envelope.sender.agent_id, envelope.message_id);
}
