/**
 * Bad input never crashes the bus or loses other data: a table of malformed requests, each answered with its
 * exact status, error type and (for schema errors) the failing field, with the bus still serving afterwards.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { CommunicationBus } from "../../src/index.js";
import { call, envelope, register, startSuiteBus, until } from "./support.js";

const ORCHESTRATOR = "claude-code://orchestrator";
const BACKEND = "opencode://backend";
const OUTSIDER = "codex://outsider";
const MAX_BODY_BYTES = 8 * 1024;

interface Context {
  active: string;
  completed: string;
  terminated: string;
}

interface Case {
  name: string;
  method?: string;
  path?: string | ((context: Context) => string);
  /** A string is sent as is; a function builds the body from the sessions of the context. */
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  type: string;
  field?: string;
}

/** A valid envelope from the orchestrator to the backend with one field replaced (or removed, with `undefined`). */
function withField(path: string, value: unknown): Record<string, unknown> {
  const message = structuredClone(
    envelope(ORCHESTRATOR, BACKEND, { routing: { timeout: "30s", retry_policy: { max_retries: 1, backoff: "linear" }, delivery_mode: "async" } }),
  ) as Record<string, any>;
  const keys = path.split(".");
  let target = message;
  for (const key of keys.slice(0, -1)) target = target[key];
  const last = keys[keys.length - 1]!;
  if (value === undefined) delete target[last];
  else target[last] = value;
  return message;
}

function inSession(sessionId: (context: Context) => string, sender = ORCHESTRATOR): (context: Context) => Record<string, unknown> {
  return (context) => {
    const message = envelope(sender, BACKEND);
    (message["sender"] as Record<string, unknown>)["session_id"] = sessionId(context);
    return message;
  };
}

const send = "/messages/send";
const steps = [{ name: "design", required_agents: [ORCHESTRATOR] }];

const cases: Case[] = [
  // ---- the body itself ----
  { name: "broken JSON", body: '{"message_id": ', status: 400, type: "CONFIG", field: "(body)" },
  { name: "a JSON array", body: "[]", status: 400, type: "CONFIG", field: "(body)" },
  { name: "a JSON string", body: '"hello"', status: 400, type: "CONFIG", field: "(body)" },
  { name: "JSON null", body: "null", status: 400, type: "CONFIG", field: "(body)" },
  { name: "an empty body", body: "", status: 400, type: "CONFIG", field: "message_id" },
  {
    name: "a body over maxBodyBytes",
    body: JSON.stringify(withField("payload", { blob: "x".repeat(MAX_BODY_BYTES) })),
    status: 413,
    type: "CONFIG",
    field: "(body)",
  },
  // ---- missing fields and wrong types ----
  { name: "no message_id", body: withField("message_id", undefined), status: 400, type: "CONFIG", field: "message_id" },
  { name: "an empty message_id", body: withField("message_id", ""), status: 400, type: "CONFIG", field: "message_id" },
  { name: "a numeric message_id", body: withField("message_id", 42), status: 400, type: "CONFIG", field: "message_id" },
  { name: "a message_id over 256 characters", body: withField("message_id", "m".repeat(257)), status: 400, type: "CONFIG", field: "message_id" },
  { name: "no timestamp", body: withField("timestamp", undefined), status: 400, type: "CONFIG", field: "timestamp" },
  { name: "a timestamp that is not ISO 8601", body: withField("timestamp", "yesterday at noon"), status: 400, type: "CONFIG", field: "timestamp" },
  { name: "no sender", body: withField("sender", undefined), status: 400, type: "CONFIG", field: "sender" },
  { name: "a sender id without a framework", body: withField("sender.agent_id", "orchestrator"), status: 400, type: "CONFIG", field: "sender.agent_id" },
  { name: "a numeric sender id", body: withField("sender.agent_id", 7), status: 400, type: "CONFIG", field: "sender.agent_id" },
  { name: "a recipient without framework", body: withField("recipient.framework", undefined), status: 400, type: "CONFIG", field: "recipient.framework" },
  { name: "an unknown field in recipient", body: withField("recipient.session", "x"), status: 400, type: "CONFIG", field: "recipient.session" },
  { name: "an unknown top-level field", body: withField("recipent", {}), status: 400, type: "CONFIG", field: "recipent" },
  { name: "no payload", body: withField("payload", undefined), status: 400, type: "CONFIG", field: "payload" },
  { name: "a payload that is an array", body: withField("payload", [1, 2]), status: 400, type: "CONFIG", field: "payload" },
  { name: "a payload that is a string", body: withField("payload", "do it"), status: 400, type: "CONFIG", field: "payload" },
  { name: "metadata that is an array", body: withField("metadata", ["a"]), status: 400, type: "CONFIG", field: "metadata" },
  // ---- unknown enum values ----
  { name: "an unknown message_type", body: withField("message_type", "task"), status: 400, type: "CONFIG", field: "message_type" },
  { name: "an unknown priority", body: withField("priority", "urgent"), status: 400, type: "CONFIG", field: "priority" },
  {
    name: "an unknown backoff",
    body: withField("routing.retry_policy.backoff", "fibonacci"),
    status: 400,
    type: "CONFIG",
    field: "routing.retry_policy.backoff",
  },
  { name: "an unknown delivery_mode", body: withField("routing.delivery_mode", "later"), status: 400, type: "CONFIG", field: "routing.delivery_mode" },
  // ---- bad durations and retry policies ----
  { name: "a duration with an unknown unit", body: withField("routing.timeout", "5x"), status: 400, type: "CONFIG", field: "routing.timeout" },
  { name: "a negative duration", body: withField("routing.timeout", "-5s"), status: 400, type: "CONFIG", field: "routing.timeout" },
  { name: "a zero duration", body: withField("routing.timeout", "0s"), status: 400, type: "CONFIG", field: "routing.timeout" },
  { name: "an empty duration", body: withField("routing.timeout", ""), status: 400, type: "CONFIG", field: "routing.timeout" },
  { name: "a duration with a space", body: withField("routing.timeout", "5 m"), status: 400, type: "CONFIG", field: "routing.timeout" },
  { name: "a number as duration", body: withField("routing.timeout", 300), status: 400, type: "CONFIG", field: "routing.timeout" },
  { name: "a duration longer than a timer can wait", body: withField("routing.timeout", "1000h"), status: 400, type: "CONFIG", field: "routing.timeout" },
  {
    name: "a negative max_retries",
    body: withField("routing.retry_policy.max_retries", -1),
    status: 400,
    type: "CONFIG",
    field: "routing.retry_policy.max_retries",
  },
  {
    name: "a fractional max_retries",
    body: withField("routing.retry_policy.max_retries", 1.5),
    status: 400,
    type: "CONFIG",
    field: "routing.retry_policy.max_retries",
  },
  {
    name: "a max_retries given as text",
    body: withField("routing.retry_policy.max_retries", "1"),
    status: 400,
    type: "CONFIG",
    field: "routing.retry_policy.max_retries",
  },
  {
    name: "fallback_agents that is not a list",
    body: withField("routing.fallback_agents", BACKEND),
    status: 400,
    type: "CONFIG",
    field: "routing.fallback_agents",
  },
  {
    name: "a fallback agent id without a framework",
    body: withField("routing.fallback_agents", ["backup"]),
    status: 400,
    type: "CONFIG",
    field: "routing.fallback_agents.0",
  },
  // ---- unknown recipients and sessions ----
  {
    name: "a recipient never registered",
    body: withField("recipient.agent_id", "codex://nobody"),
    status: 404,
    type: "NOT_FOUND",
    field: "recipient.agent_id",
  },
  {
    name: "a fallback agent never registered",
    body: withField("routing.fallback_agents", ["codex://nobody"]),
    status: 404,
    type: "NOT_FOUND",
    field: "routing.fallback_agents.0",
  },
  { name: "a session that does not exist", body: inSession(() => "sess_missing"), status: 404, type: "NOT_FOUND" },
  { name: "a sender that is not a participant of its session", body: inSession((context) => context.active, OUTSIDER), status: 403, type: "AUTH" },
  { name: "a message to a completed session", body: inSession((context) => context.completed), status: 409, type: "CONFIG" },
  { name: "a message to a terminated session", body: inSession((context) => context.terminated), status: 409, type: "CONFIG" },
  // ---- keys ----
  { name: "no key", body: withField("priority", "low"), headers: { "x-agent-api-key": "" }, status: 401, type: "AUTH" },
  { name: "a wrong key", body: withField("priority", "low"), headers: { "x-agent-api-key": "test-kez" }, status: 401, type: "AUTH" },
  { name: "a wrong key on a route that does not exist", method: "GET", path: "/nowhere", headers: { "x-agent-api-key": "nope" }, status: 401, type: "AUTH" },
  // ---- the other routes ----
  {
    name: "a registration without agent_id",
    path: "/agents/register",
    body: { agent_descriptor: { framework: "codex" } },
    status: 400,
    type: "CONFIG",
    field: "agent_descriptor.agent_id",
  },
  { name: "a registration with a bad agent id", path: "/agents/register", body: { agent_id: "backend" }, status: 400, type: "CONFIG", field: "agent_id" },
  {
    name: "a registration with capabilities as text",
    path: "/agents/register",
    body: { agent_id: "codex://x", capabilities: "all" },
    status: 400,
    type: "CONFIG",
    field: "capabilities",
  },
  { name: "deregistering an unknown agent", method: "DELETE", path: `/agents/${encodeURIComponent("codex://nobody")}`, status: 404, type: "NOT_FOUND" },
  { name: "the status of an unknown message", method: "GET", path: "/messages/never-sent", status: 404, type: "NOT_FOUND" },
  { name: "a malformed URL escape", method: "GET", path: "/messages/%E0%A4%A", status: 400, type: "CONFIG", field: "message_id" },
  { name: "a session without steps", path: "/sessions", body: { initiator: ORCHESTRATOR, participants: [] }, status: 400, type: "CONFIG", field: "steps" },
  {
    name: "a session with no step at all",
    path: "/sessions",
    body: { initiator: ORCHESTRATOR, participants: [], steps: [] },
    status: 400,
    type: "CONFIG",
    field: "steps",
  },
  {
    name: "a step name with a dot",
    path: "/sessions",
    body: { initiator: ORCHESTRATOR, participants: [], steps: [{ name: "a.b", required_agents: [] }] },
    status: 400,
    type: "CONFIG",
    field: "steps.0.name",
  },
  {
    name: "a reserved step name",
    path: "/sessions",
    body: { initiator: ORCHESTRATOR, participants: [], steps: [{ name: "completed", required_agents: [] }] },
    status: 400,
    type: "CONFIG",
    field: "steps.0.name",
  },
  {
    name: "a step twice",
    path: "/sessions",
    body: { initiator: ORCHESTRATOR, participants: [], steps: [...steps, ...steps] },
    status: 400,
    type: "CONFIG",
    field: "steps.1.name",
  },
  {
    name: "a required agent that is not a participant",
    path: "/sessions",
    body: { initiator: ORCHESTRATOR, participants: [], steps: [{ name: "build", required_agents: [BACKEND] }] },
    status: 400,
    type: "CONFIG",
    field: "steps.0.required_agents.0",
  },
  {
    name: "a participant without role",
    path: "/sessions",
    body: { initiator: ORCHESTRATOR, participants: [{ agent_id: BACKEND }], steps },
    status: 400,
    type: "CONFIG",
    field: "participants.0.role",
  },
  { name: "an unknown session", method: "GET", path: "/sessions/sess_missing", status: 404, type: "NOT_FOUND" },
  {
    name: "a workflow update to an unknown step",
    method: "PATCH",
    path: (context) => `/sessions/${context.active}/workflow`,
    body: { current_step: "deploy" },
    status: 400,
    type: "CONFIG",
    field: "current_step",
  },
  {
    name: "a workflow update of a completed session",
    method: "PATCH",
    path: (context) => `/sessions/${context.completed}/workflow`,
    body: { current_step: "design" },
    status: 409,
    type: "CONFIG",
  },
  {
    name: "a context update without shared_context",
    method: "PATCH",
    path: (context) => `/sessions/${context.active}/context`,
    body: { branch: "main" },
    status: 400,
    type: "CONFIG",
    field: "shared_context",
  },
  {
    name: "a participant added to a terminated session",
    path: (context) => `/sessions/${context.terminated}/participants`,
    body: { agent_id: OUTSIDER, role: "reviewer" },
    status: 409,
    type: "CONFIG",
  },
  {
    name: "a participant added twice",
    path: (context) => `/sessions/${context.active}/participants`,
    body: { agent_id: BACKEND, role: "reviewer" },
    status: 400,
    type: "CONFIG",
    field: "agent_id",
  },
  {
    name: "removing an agent that is not a participant",
    method: "DELETE",
    path: (context) => `/sessions/${context.active}/participants/${encodeURIComponent(OUTSIDER)}`,
    status: 404,
    type: "NOT_FOUND",
  },
  {
    name: "a termination without reason",
    path: (context) => `/sessions/${context.active}/terminate`,
    body: { details: "why not" },
    status: 400,
    type: "CONFIG",
    field: "reason",
  },
  {
    name: "a summary in an unknown format",
    method: "GET",
    path: (context) => `/sessions/${context.active}/summary?format=pdf`,
    status: 400,
    type: "CONFIG",
    field: "format",
  },
  { name: "the summary of an unknown session", method: "GET", path: "/sessions/sess_missing/summary", status: 404, type: "NOT_FOUND" },
  { name: "a wrong method", method: "PUT", path: send, body: {}, status: 405, type: "CONFIG" },
  { name: "an unknown route", method: "GET", path: "/nowhere", status: 404, type: "NOT_FOUND" },
  { name: "an unknown bridge tool", path: "/bridge/sessions_explode", body: {}, status: 404, type: "NOT_FOUND" },
];

describe("bad input", () => {
  let bus: CommunicationBus;
  const context: Context = { active: "", completed: "", terminated: "" };

  beforeAll(async () => {
    bus = await startSuiteBus({ maxBodyBytes: MAX_BODY_BYTES });
    await register(bus, OUTSIDER);
    const manager = bus.sessionManager;
    const participants = [{ agent_id: BACKEND, role: "implementer" }];
    context.active = manager.createSession(ORCHESTRATOR, participants, steps);
    context.completed = manager.createSession(ORCHESTRATOR, participants, steps);
    manager.completeSession(context.completed, { summary: "done", artifacts: [] });
    context.terminated = manager.createSession(ORCHESTRATOR, participants, steps);
    manager.terminateSession(context.terminated, { reason: "cancelled" });
    return () => bus.stop();
  });

  it(`has at least 40 cases (${cases.length})`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
  });

  it.each(cases.map((each) => [each.name, each] as const))("answers %s with its status and error type", async (_name, each) => {
    const path = typeof each.path === "function" ? each.path(context) : (each.path ?? send);
    const body = typeof each.body === "function" ? (each.body as (context: Context) => unknown)(context) : each.body;
    const answer = await call(bus, each.method ?? "POST", path, body, each.headers);
    expect(answer.status).toBe(each.status);
    expect(answer.body.error.type).toBe(each.type);
    expect(answer.body.error.details).toMatchObject({ retryable: expect.any(Boolean), sessionValid: expect.any(Boolean) });
    if (each.field !== undefined) expect(answer.body.error.details.field).toBe(each.field);
  });

  it("keeps serving, with its sessions and messages intact, after all of them", async () => {
    expect((await call(bus, "GET", "/health")).status).toBe(200);
    const sent = await call(bus, "POST", send, envelope(ORCHESTRATOR, BACKEND, { message_id: "after-the-storm" }));
    expect(sent).toEqual({ status: 202, body: { success: true, message_id: "after-the-storm", status: "accepted" } });
    await until(() => bus.messageStatus("after-the-storm").status === "queued");
    expect((await call(bus, "GET", "/sessions")).body.sessions.map((session: { status: string }) => session.status)).toEqual([
      "active",
      "completed",
      "terminated",
    ]);
    const metrics = (await call(bus, "GET", "/metrics")).body;
    expect(metrics.messages.accepted_total).toBe(1);
  });
});
