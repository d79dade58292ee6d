/**
 * `GET /metrics` in the Prometheus text format: what asks for it, that every line is valid exposition
 * format, and that the series carry the values of what happened.
 */
import { describe, expect, it } from "vitest";
import { createMockAgent } from "../../src/index.js";
import { wantsPrometheus } from "../../src/bus/prometheus.js";
import { startRuntimeBus } from "../e2e/support.js";
import { call, connect, envelope, register, TEST_KEY, until } from "./support.js";

/** A metric name, then optional labels, then a value (Prometheus text format 0.0.4). */
const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$/;
const HELP_LINE = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$/;
const TYPE_LINE = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/;

/** Parses exposition text strictly: every line must be a HELP, a TYPE, a sample of the declared family, or blank. */
function parseExposition(text: string): { types: Map<string, string>; samples: Map<string, number> } {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const help = HELP_LINE.exec(line);
    if (help) continue;
    const type = TYPE_LINE.exec(line);
    if (type) {
      expect(types.has(type[1]!), `${type[1]} declared twice`).toBe(false);
      types.set(type[1]!, type[2]!);
      continue;
    }
    const sample = SAMPLE_LINE.exec(line);
    expect(sample, `not a valid exposition line: ${JSON.stringify(line)}`).not.toBeNull();
    const name = sample![1]!;
    const family = name.replace(/_(bucket|sum|count)$/, "");
    expect(types.has(name) || types.get(family) === "histogram", `${name} has no TYPE line before it`).toBe(true);
    samples.set(`${name}${sample![2] ?? ""}`, Number(sample![sample!.length - 1]));
  }
  return { types, samples };
}

async function prometheusOf(
  url: string,
  headers: Record<string, string> = { accept: "text/plain" },
  query = "",
): Promise<{ contentType: string | null; text: string }> {
  const response = await fetch(`${url}/metrics${query}`, { headers: { "x-agent-api-key": TEST_KEY, ...headers } });
  expect(response.status).toBe(200);
  return { contentType: response.headers.get("content-type"), text: await response.text() };
}

describe("GET /metrics in Prometheus text", () => {
  it("answers valid exposition text carrying sessions, prompts, deltas, messages, latency, workflows and agents", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [createMockAgent({ id: "echo" })] });
    // Two prompts answered (the mock streams its reply in pieces); one session is left idle.
    const kept = await runtime.bridge.sessionsCreate({ agentId: "echo" });
    await runtime.bridge.sessionsPrompt({ sessionId: kept.sessionId, prompt: "one two three" });
    await runtime.bridge.tasksDelegate({ agentId: "echo", prompt: "four" });
    const deltas = bus.metricsSnapshot().bridge.prompts.deltas_total;
    expect(deltas).toBeGreaterThan(1);
    // Messages: three acknowledged by a connected agent, one queued for an agent that is not connected.
    await register(bus, "codex://a", "codex://b", "codex://c");
    await connect(bus, "codex://b");
    for (let index = 0; index < 3; index += 1) await bus.send(envelope("codex://a", "codex://b"));
    await bus.send(envelope("codex://a", "codex://c"));
    await until(() => bus.metricsSnapshot().messages.acknowledged_total === 3);
    // Workflows: two at "design", one moved on to "review", one completed.
    const steps = [
      { name: "design", required_agents: [] },
      { name: "review", required_agents: [] },
    ];
    const manager = bus.sessionManager;
    manager.createSession("codex://a", [], steps);
    manager.createSession("codex://a", [], steps);
    manager.updateWorkflow(manager.createSession("codex://a", [], steps), { current_step: "review" });
    manager.completeSession(manager.createSession("codex://a", [], steps), { summary: "done" });

    const { contentType, text } = await prometheusOf(bus.url);
    expect(contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const { types, samples } = parseExposition(text);
    expect(types.get("troupe_prompts_total")).toBe("counter");
    expect(types.get("troupe_message_delivery_seconds")).toBe("histogram");
    expect(Object.fromEntries(samples)).toMatchObject({
      'troupe_bridge_sessions{state="idle"}': 1,
      'troupe_bridge_sessions{state="busy"}': 0,
      troupe_prompts_started_total: 2,
      'troupe_prompts_total{outcome="completed"}': 2,
      'troupe_prompts_total{outcome="failed"}': 0,
      troupe_prompt_deltas_total: deltas,
      'troupe_messages{status="acknowledged"}': 3,
      'troupe_messages{status="queued"}': 1,
      troupe_messages_accepted_total: 4,
      troupe_messages_acknowledged_total: 3,
      'troupe_message_delivery_seconds_bucket{le="+Inf"}': 3,
      troupe_message_delivery_seconds_count: 3,
      'troupe_workflows{step="design"}': 2,
      'troupe_workflows{step="review"}': 1,
      'troupe_workflows{step="completed"}': 1,
      'troupe_workflow_sessions{status="active"}': 3,
      troupe_agents_known: bus.metricsSnapshot().agents.known,
      troupe_agents_online: bus.metricsSnapshot().agents.online,
    });
    // Histogram buckets are cumulative and end at the count.
    const buckets = [...samples].filter(([key]) => key.startsWith("troupe_message_delivery_seconds_bucket")).map(([, value]) => value);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    expect(buckets.at(-1)).toBe(3);
  });

  it("moves a workflow's count from step to step and drops it when it is evicted", async () => {
    const { bus } = await startRuntimeBus();
    const manager = bus.sessionManager;
    // Workflow events go out once their change is durable (docs/durability.md): the counts follow them.
    const sessionId = manager.createSession(
      "codex://a",
      [],
      [
        { name: "plan", required_agents: [] },
        { name: "build", required_agents: [] },
      ],
    );
    await manager.whenSettled();
    expect(bus.metricsSnapshot().workflows_by_step).toEqual({ plan: 1 });
    manager.updateWorkflow(sessionId, { current_step: "build" });
    await manager.whenSettled();
    expect(bus.metricsSnapshot().workflows_by_step).toEqual({ build: 1 });
    manager.terminateSession(sessionId, { reason: "stopped" });
    await manager.whenSettled();
    expect(bus.metricsSnapshot().workflows_by_step).toEqual({ terminated: 1 });
    manager.deleteSession(sessionId);
    await until(() => Object.keys(bus.metricsSnapshot().workflows_by_step).length === 0);
    const { samples } = parseExposition((await prometheusOf(bus.url, {}, "?format=prometheus")).text);
    expect([...samples.keys()].filter((key) => key.startsWith("troupe_workflows{"))).toEqual([]);
  });

  it("answers JSON as before without a preference, and for ?format=json; a bad format is 400", async () => {
    const { bus } = await startRuntimeBus();
    expect((await call(bus, "GET", "/metrics")).body).toMatchObject({ messages: { accepted_total: 0 }, bridge: { prompts: { completed_total: 0 } } });
    expect((await call(bus, "GET", "/metrics?format=json", undefined, { accept: "text/plain" })).body).toMatchObject({ uptime: expect.any(Number) });
    const bad = await call(bus, "GET", "/metrics?format=xml");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ type: "CONFIG", details: { field: "format" } });
  });
});

describe("wantsPrometheus", () => {
  it.each([
    [null, "text/plain", true],
    [null, "text/plain;version=0.0.4", true],
    // What Prometheus itself sends.
    [null, "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", true],
    [null, "application/json, text/plain;q=0.5", false],
    [null, "*/*", false],
    [null, undefined, false],
    ["prometheus", "application/json", true],
    ["json", "text/plain", false],
  ] as const)("format %s with Accept %s → %s", (format, accept, expected) => {
    expect(wantsPrometheus(format, accept)).toBe(expected);
  });
});
