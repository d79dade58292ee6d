/**
 * The message envelope of SPEC §3.2: its zod schema (validated once, at the edge), its types and its defaults.
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
export const AGENT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]*:\/\/[^\s\u0000-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]+$/;

/** Control characters and bidirectional overrides: refused in every id, where they would disguise one id as another in logs and listings. */
export const DISGUISING_CHARACTERS = /[\u0000-\u001F\u007F-\u009F\u200E\u200F\u202A-\u202E\u2066-\u2069]/;

const id = z
  .string()
  .min(1)
  .max(MAX_ID_LENGTH)
  .refine((value) => !DISGUISING_CHARACTERS.test(value), "must not contain control characters or bidirectional overrides");
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

/** The envelope schema; `routing` and `priority` get their defaults (the timeout's comes from the bus). */
export const envelopeSchema = z.strictObject({
  message_id: id,
  timestamp: z.iso.datetime({ offset: true }),
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
  const parsed = parseWith(envelopeSchema, value);
  return { ...parsed, routing: { ...parsed.routing, timeout: parsed.routing.timeout ?? formatDuration(defaultTimeoutMs) } };
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
