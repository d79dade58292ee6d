/**
 * `GET /metrics` in the Prometheus text format (SPEC §6.1), rendered by prom-client from the bus's metrics
 * snapshot: every series is read from counters kept as things happen, never by listing actors. prom-client
 * is loaded on the first such request only: a runtime that is never scraped never pays for it.
 */
import type { Metric } from "prom-client";
import type { BusMetricsSnapshot } from "./metrics.js";

/** One sample of a series: its labels and value (`metricName` for a histogram's `_bucket`, `_sum`, `_count`). */
interface Sample {
  value: number;
  labels?: Record<string, string>;
  metricName?: string;
}

/** What prom-client's registry reads of a metric: its name, help, type and values. */
interface SnapshotMetric {
  name: string;
  help: string;
  type: "gauge" | "counter" | "histogram";
  aggregator: "sum";
  get(): Promise<{ name: string; help: string; type: string; aggregator: "sum"; values: Sample[] }>;
}

function series(name: string, help: string, type: SnapshotMetric["type"], samples: Sample[]): SnapshotMetric {
  const values = samples.map(({ value, labels = {}, metricName }) => ({ value, labels, ...(metricName === undefined ? {} : { metricName }) }));
  return { name, help, type, aggregator: "sum", get: () => Promise.resolve({ name, help, type, aggregator: "sum" as const, values }) };
}

function byLabel(label: string, counts: Record<string, number>): Sample[] {
  return Object.entries(counts).map(([value, count]) => ({ value: count, labels: { [label]: value } }));
}

/** The series of a snapshot. Names follow Prometheus conventions: base units (seconds), `_total` on counters. */
function seriesOf(snapshot: BusMetricsSnapshot): SnapshotMetric[] {
  const { messages, bridge, agents, sessions } = snapshot;
  const histogram = snapshot.latency_ms.accepted_to_acknowledged_histogram;
  const latency = "troupe_message_delivery_seconds";
  return [
    series("troupe_uptime_seconds", "Seconds since the bus started.", "gauge", [{ value: snapshot.uptime }]),
    series("troupe_bridge_sessions", "Bridge sessions alive, by state.", "gauge", byLabel("state", bridge.sessions)),
    series("troupe_prompts_started_total", "Prompts that started running.", "counter", [{ value: bridge.prompts.started_total }]),
    series("troupe_prompts_total", "Prompts that ended, by outcome.", "counter", [
      { value: bridge.prompts.completed_total, labels: { outcome: "completed" } },
      { value: bridge.prompts.failed_total, labels: { outcome: "failed" } },
      { value: bridge.prompts.cancelled_total, labels: { outcome: "cancelled" } },
    ]),
    series("troupe_prompt_deltas_total", "Streamed pieces of answers (prompt.delta events).", "counter", [{ value: bridge.prompts.deltas_total }]),
    series("troupe_messages", "Messages remembered, by current status.", "gauge", byLabel("status", messages.by_status)),
    series("troupe_messages_accepted_total", "Messages accepted.", "counter", [{ value: messages.accepted_total }]),
    series("troupe_messages_acknowledged_total", "Messages acknowledged by their recipient.", "counter", [{ value: messages.acknowledged_total }]),
    series("troupe_messages_dead_total", "Messages that could not be delivered.", "counter", [{ value: messages.dead_total }]),
    series("troupe_message_retries_total", "Delivery attempts that failed and were retried.", "counter", [{ value: messages.retries_total }]),
    series("troupe_messages_duplicate_total", "Messages refused as a repeated message_id.", "counter", [{ value: messages.duplicates_total }]),
    series(latency, "Time from a message's acceptance to its acknowledgement.", "histogram", [
      ...histogram.bucketsMs.map((boundMs, index) => ({
        metricName: `${latency}_bucket`,
        labels: { le: String(boundMs / 1000) },
        value: histogram.counts[index] ?? 0,
      })),
      { metricName: `${latency}_bucket`, labels: { le: "+Inf" }, value: histogram.count },
      { metricName: `${latency}_sum`, value: histogram.sumMs / 1000 },
      { metricName: `${latency}_count`, value: histogram.count },
    ]),
    series("troupe_workflow_sessions", "Workflow sessions alive (ended ones until evicted), by status.", "gauge", [
      { value: sessions.active, labels: { status: "active" } },
      { value: sessions.completed, labels: { status: "completed" } },
      { value: sessions.terminated, labels: { status: "terminated" } },
    ]),
    series("troupe_workflows", "Workflow sessions alive, by current step (or completed, terminated).", "gauge", byLabel("step", snapshot.workflows_by_step)),
    series("troupe_agents_online", "Agents online: the runtime's own while it runs, and registered ones with a socket.", "gauge", [{ value: agents.online }]),
    series("troupe_agents_known", "Agents known to the bus.", "gauge", [{ value: agents.known }]),
    series("troupe_agent_connections", "Agent WebSocket connections open.", "gauge", [{ value: agents.connections }]),
  ];
}

/** The media types `GET /metrics` answers, by preference order in which they may be asked for. */
const PROMETHEUS_TYPES = new Set(["text/plain", "application/openmetrics-text"]);

/**
 * Whether a `GET /metrics` asks for the Prometheus text format: `?format=prometheus`, or an `Accept` header that
 * prefers `text/plain` (or OpenMetrics, which Prometheus asks for first) to `application/json`. `?format=json`
 * and no preference answer JSON.
 */
export function wantsPrometheus(format: string | null, accept: string | undefined): boolean {
  if (format !== null) return format === "prometheus";
  let textQuality = 0;
  let jsonQuality = 0;
  for (const range of (accept ?? "").split(",")) {
    const [type = "", ...parameters] = range.split(";").map((part) => part.trim().toLowerCase());
    const qualityParameter = parameters.find((parameter) => parameter.startsWith("q="));
    const quality = qualityParameter === undefined ? 1 : Number(qualityParameter.slice(2)) || 0;
    if (PROMETHEUS_TYPES.has(type)) textQuality = Math.max(textQuality, quality);
    else if (type === "application/json") jsonQuality = Math.max(jsonQuality, quality);
  }
  return textQuality > jsonQuality;
}

/** The snapshot in the Prometheus text exposition format (0.0.4), and its content type. */
export async function prometheusText(snapshot: BusMetricsSnapshot): Promise<{ text: string; contentType: string }> {
  const { Registry } = await import("prom-client");
  const registry = new Registry();
  // The registry reads only name, help, type and get() of a metric; its types name its own classes.
  for (const metric of seriesOf(snapshot)) registry.registerMetric(metric as unknown as Metric);
  return { text: await registry.metrics(), contentType: Registry.PROMETHEUS_CONTENT_TYPE };
}
