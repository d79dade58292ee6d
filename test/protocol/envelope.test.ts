/**
 * `parseEnvelope` checks the usual envelope by hand before it falls back to the zod schema: for any input, it
 * must answer exactly what the schema alone answers (the same envelope, fields in the same order, or the same
 * CONFIG error). Generated envelopes near the valid shape, valid and not, are compared with the schema's answer.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BridgeError } from "../../src/errors.js";
import { envelopeSchema, parseEnvelope } from "../../src/protocol/envelope.js";
import { formatDuration } from "../../src/protocol/durations.js";
import { parseWith } from "../../src/validation.js";

const SEED = 20_261_130;
const DEFAULT_TIMEOUT_MS = 300_000;

/** Every object's prototype, depth first: a field given as `__proto__` must not become one. */
function prototypesOf(value: unknown): string[] {
  if (typeof value !== "object" || value === null) return [];
  const own = Array.isArray(value) ? "array" : Object.getPrototypeOf(value) === Object.prototype ? "object" : "other";
  return [own, ...Object.values(value).flatMap(prototypesOf)];
}

/** An envelope as compared: its JSON (fields in order) and the prototypes of its objects. */
function shapeOf(envelope: unknown): unknown {
  return { json: JSON.stringify(envelope), prototypes: prototypesOf(envelope) };
}

/** What the schema alone answers: the envelope it outputs with the default timeout, or the error it throws. */
function bySchema(value: unknown): unknown {
  try {
    const parsed = parseWith(envelopeSchema, value);
    return shapeOf({ ...parsed, routing: { ...parsed.routing, timeout: parsed.routing.timeout ?? formatDuration(DEFAULT_TIMEOUT_MS) } });
  } catch (error) {
    return error instanceof BridgeError ? { error: error.toJSON() } : { thrown: String(error) };
  }
}

function byParseEnvelope(value: unknown): unknown {
  try {
    return shapeOf(parseEnvelope(value, DEFAULT_TIMEOUT_MS));
  } catch (error) {
    return error instanceof BridgeError ? { error: error.toJSON() } : { thrown: String(error) };
  }
}

/** Either a field's valid values or values the schema refuses (or `undefined`, which removes it). */
const agentId = fc.constantFrom("claude-code://lead", "opencode://backend", "a://b", "not an id", "cc://\u202Eevil", "", "x".repeat(300), 7);
const id = fc.oneof(fc.constantFrom("m1", "sess_1", "", "m\u0000", "x".repeat(256), "x".repeat(257), "é", 42), fc.string({ maxLength: 8 }));
const framework = fc.constantFrom("claude-code", "", "x".repeat(257), 3);
const party = fc.record(
  { agent_id: agentId, framework, session_id: fc.option(id, { nil: undefined }), extra: fc.constantFrom(undefined, 1) },
  { requiredKeys: ["agent_id", "framework"] },
);
const record = fc.oneof(
  fc.dictionary(fc.constantFrom("text", "n", "__proto__", "constructor", "nested", "toString"), fc.jsonValue({ maxDepth: 2 })),
  fc.constantFrom([], null, "text", 1, undefined),
);
const routing = fc.record(
  {
    timeout: fc.constantFrom("30s", "1500ms", "5m", "0s", "forever", "10000h", 30, undefined),
    retry_policy: fc.oneof(
      fc.record(
        {
          max_retries: fc.constantFrom(0, 1, 3, 100, 101, -1, 1.5, Number.NaN, "3", undefined),
          backoff: fc.constantFrom("linear", "exponential", "random", undefined),
        },
        { requiredKeys: [] },
      ),
      fc.constantFrom(null, [], "linear"),
    ),
    fallback_agents: fc.oneof(
      fc.array(agentId, { maxLength: 3 }),
      fc.constant(Array.from({ length: 17 }, () => "a://b")),
      // eslint-disable-next-line no-sparse-arrays -- a hole on purpose: the hand check and the schema must both refuse it
      fc.constantFrom(["a://b", , "c://d"], "a://b"),
    ),
    delivery_mode: fc.constantFrom("async", "sync", "later", undefined),
    hop: fc.constantFrom(undefined, 1),
  },
  { requiredKeys: [] },
);
const envelopeLike = fc.record(
  {
    message_id: id,
    timestamp: fc.constantFrom("2025-02-02T11:00:00Z", "2025-02-02T11:00:00.123+02:00", "2025-02-02T11:00:00", "2025-13-02T11:00:00Z", "yesterday", 0),
    sender: fc.oneof(party, fc.constantFrom(null, "a://b")),
    recipient: fc.oneof(party, fc.constantFrom(null, [])),
    message_type: fc.constantFrom("task_request", "task_response", "status_update", "error", "heartbeat", "nope", undefined),
    priority: fc.constantFrom("critical", "high", "medium", "low", "urgent", undefined),
    payload: record,
    routing: fc.oneof(routing, fc.constantFrom(undefined, null)),
    metadata: record,
    unknown: fc.constantFrom(undefined, "x"),
  },
  { requiredKeys: ["message_id", "timestamp", "sender", "recipient", "message_type", "payload"] },
);

/** Envelopes whose every field is valid, with optional fields present or not. */
const validEnvelope = fc.record(
  {
    message_id: fc.constantFrom("m1", "x".repeat(256), "é", "id with spaces"),
    timestamp: fc.constantFrom("2025-02-02T11:00:00Z", "2025-02-02T11:00:00.123+02:00"),
    sender: fc.record(
      { agent_id: fc.constantFrom("claude-code://lead", "a://b"), framework: fc.constantFrom("claude-code", "x"), session_id: fc.constantFrom("sess_1", "m1") },
      { requiredKeys: ["agent_id", "framework"] },
    ),
    recipient: fc.record(
      { agent_id: fc.constantFrom("opencode://backend", "c://d"), framework: fc.constantFrom("opencode", "c") },
      { requiredKeys: ["agent_id", "framework"] },
    ),
    message_type: fc.constantFrom("task_request", "task_response", "status_update", "error", "heartbeat"),
    priority: fc.constantFrom("critical", "high", "medium", "low"),
    payload: fc.dictionary(fc.constantFrom("text", "n", "__proto__", "constructor", "nested"), fc.jsonValue({ maxDepth: 2 })),
    routing: fc.record(
      {
        timeout: fc.constantFrom("30s", "1500ms", "5m"),
        retry_policy: fc.record({ max_retries: fc.constantFrom(0, 3, 100), backoff: fc.constantFrom("linear", "exponential") }, { requiredKeys: [] }),
        fallback_agents: fc.array(fc.constantFrom("a://b", "e://f"), { maxLength: 2 }),
        delivery_mode: fc.constantFrom("async", "sync"),
      },
      { requiredKeys: [] },
    ),
    metadata: fc.dictionary(fc.constantFrom("task_id", "in_reply_to", "__proto__"), fc.string({ maxLength: 4 })),
  },
  { requiredKeys: ["message_id", "timestamp", "sender", "recipient", "message_type", "payload"] },
);

/** One field of a valid envelope made invalid (or an unknown one added): each check on its own. */
const BAD_FIELDS: Array<[string[], unknown[]]> = [
  [["message_id"], ["", "x".repeat(257), "m\u0000", "m\u202E", 1, null]],
  [["timestamp"], ["2025-02-02T11:00:00", "2025-13-02T11:00:00Z", "", 0]],
  [["sender"], [null, [], "a://b", { agent_id: "a://b" }]],
  [
    ["sender", "agent_id"],
    ["not an id", "a://", "", "a://b\u0007"],
  ],
  [
    ["sender", "framework"],
    ["", "x".repeat(257), 1],
  ],
  [
    ["sender", "session_id"],
    ["", "s\u2066", 1, null],
  ],
  [["sender", "extra"], [1]],
  [
    ["recipient", "agent_id"],
    ["nobody", null],
  ],
  [["message_type"], ["nope", null]],
  [["priority"], ["urgent", null, 1]],
  [["payload"], [[], null, "text", 1, undefined]],
  [["routing"], [null, [], "fast"]],
  [
    ["routing", "timeout"],
    ["forever", "0s", "10000h", 30, null],
  ],
  [
    ["routing", "retry_policy"],
    [null, [], "linear"],
  ],
  [
    ["routing", "retry_policy", "max_retries"],
    [101, -1, 1.5, Number.NaN, "3", null],
  ],
  [
    ["routing", "retry_policy", "backoff"],
    ["random", null],
  ],
  [["routing", "retry_policy", "jitter"], [true]],
  [
    ["routing", "fallback_agents"],
    ["a://b", [1], ["nobody"], Array.from({ length: 17 }, () => "a://b"), [null]],
  ],
  [
    ["routing", "delivery_mode"],
    ["later", null],
  ],
  [["routing", "hop"], [1]],
  [["metadata"], [[], null, "x", 1]],
  [["extra"], [1, null]],
];

const invalidEnvelope = fc
  .tuple(validEnvelope, fc.constantFrom(...BAD_FIELDS.flatMap(([path, values]) => values.map((bad) => [path, bad] as const))))
  .map(([valid, [path, bad]]) => {
    const envelope = structuredClone(valid) as Record<string, unknown>;
    let parent = envelope;
    for (const key of path.slice(0, -1)) {
      if (typeof parent[key] !== "object" || parent[key] === null) parent[key] = {};
      parent = parent[key] as Record<string, unknown>;
    }
    parent[path.at(-1)!] = bad;
    return envelope;
  });

describe("parseEnvelope", () => {
  it("answers every generated envelope, valid or not, exactly as the schema alone does", () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(validEnvelope, invalidEnvelope, envelopeLike), (value) => {
        // Through JSON, as every envelope arrives (a body or a frame), and as code hands it over.
        for (const input of [JSON.parse(JSON.stringify(value)) as unknown, value]) {
          const expected = bySchema(input);
          expect(byParseEnvelope(input)).toEqual(expected);
          if (!(expected as { error?: unknown }).error) accepted += 1;
        }
      }),
      { seed: SEED, numRuns: 5_000 },
    );
    // The generator reaches both sides: enough valid envelopes to exercise the hand check's output.
    expect(accepted).toBeGreaterThan(2_000);
    expect(accepted).toBeLessThan(8_000);
  });

  it("fills the defaults in the schema's order: routing's timeout last when it was not given", () => {
    const envelope = parseEnvelope(
      {
        message_id: "m1",
        timestamp: "2025-02-02T11:00:00Z",
        sender: { agent_id: "a://b", framework: "a" },
        recipient: { agent_id: "c://d", framework: "c" },
        message_type: "task_request",
        payload: { __proto__: 1, text: "hi" },
        routing: { delivery_mode: "sync" },
      },
      DEFAULT_TIMEOUT_MS,
    );
    expect(JSON.stringify(envelope)).toBe(
      '{"message_id":"m1","timestamp":"2025-02-02T11:00:00Z","sender":{"agent_id":"a://b","framework":"a"},"recipient":{"agent_id":"c://d","framework":"c"},' +
        '"message_type":"task_request","priority":"medium","payload":{"text":"hi"},"routing":{"retry_policy":{"max_retries":3,"backoff":"exponential"},"delivery_mode":"sync","timeout":"300000ms"}}',
    );
  });
});
