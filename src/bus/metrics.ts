/**
 * Counters behind `GET /metrics`: messages by status and in total, acknowledgement latency (percentiles over
 * the most recent messages, and a histogram over all), prompts and their deltas, workflows by step, and
 * uptime. Everything is counted as it happens (from the event hub where it can be), so that reading the
 * metrics costs O(1) however many actors there are.
 */
import type { DeliveryStatus } from "../../machines/delivery.machine.js";
import type { SessionStatus } from "../../machines/session.machine.js";
import type { EventSource } from "../events/event-log.js";
import type { WorkflowSession } from "../workflows/session-manager.js";

/** Latency samples kept: the percentiles describe the most recent acknowledged messages. */
export const LATENCY_SAMPLES = 4_096;

/** Upper bounds (milliseconds) of the acknowledgement latency histogram's buckets; the last is +Inf. */
export const LATENCY_BUCKETS_MS = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000];

/** A cumulative histogram: `counts[i]` observations at most `LATENCY_BUCKETS_MS[i]`. */
export interface LatencyHistogram {
  bucketsMs: number[];
  counts: number[];
  sumMs: number;
  count: number;
}

/** Percentiles of a latency in milliseconds. */
export interface LatencyPercentiles {
  samples: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** What `GET /metrics` answers. */
export interface BusMetricsSnapshot {
  /** Seconds since `start()`. */
  uptime: number;
  messages: {
    /** Messages remembered, by their current status. */
    by_status: Record<DeliveryStatus, number>;
    accepted_total: number;
    acknowledged_total: number;
    dead_total: number;
    retries_total: number;
    duplicates_total: number;
  };
  sessions: { total: number; active: number; completed: number; terminated: number };
  /** Workflow sessions alive (ended ones until they are evicted), by their current step or final state. */
  workflows_by_step: Record<string, number>;
  agents: { known: number; online: number; connections: number };
  /** Bridge sessions by state, and the prompts they ran. */
  bridge: {
    sessions: Record<SessionStatus, number>;
    prompts: { started_total: number; completed_total: number; failed_total: number; cancelled_total: number; deltas_total: number };
  };
  latency_ms: { accepted_to_acknowledged: LatencyPercentiles; accepted_to_acknowledged_histogram: LatencyHistogram };
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
  return sorted[Math.max(0, index)] ?? 0;
}

/** The bus's counters. */
export class BusMetrics {
  private accepted = 0;
  private acknowledged = 0;
  private dead = 0;
  private retries = 0;
  private duplicates = 0;
  private readonly latencies = new Float64Array(LATENCY_SAMPLES);
  private latencyCount = 0;
  private readonly latencyBuckets = LATENCY_BUCKETS_MS.map(() => 0);
  private latencySumMs = 0;
  private readonly prompts = { started_total: 0, completed_total: 0, failed_total: 0, cancelled_total: 0, deltas_total: 0 };
  /** Each live workflow's step (or final state), and how many are at each. */
  private readonly workflowSteps = new Map<string, string>();
  private readonly workflowsByStep = new Map<string, number>();

  /** Counts prompts, deltas and workflow steps from the runtime's event hub. Returns the function that stops. */
  observe(source: EventSource): () => void {
    const stops = [
      source.on("prompt.started", () => void (this.prompts.started_total += 1)),
      source.on("prompt.completed", () => void (this.prompts.completed_total += 1)),
      source.on("prompt.failed", () => void (this.prompts.failed_total += 1)),
      source.on("prompt.cancelled", () => void (this.prompts.cancelled_total += 1)),
      source.on("prompt.delta", () => void (this.prompts.deltas_total += 1)),
      source.on("workflow.created", ({ sessionId, session }) => {
        const { status, workflow } = session as WorkflowSession;
        this.moveWorkflow(sessionId, status === "active" ? (workflow.current_step ?? undefined) : status);
      }),
      source.on("workflow.step", ({ sessionId, workflow }) => this.moveWorkflow(sessionId, workflow.current_step ?? undefined)),
      source.on("workflow.completed", ({ sessionId }) => this.moveWorkflow(sessionId, "completed")),
      source.on("workflow.terminated", ({ sessionId }) => this.moveWorkflow(sessionId, "terminated")),
      source.on("workflow.evicted", ({ sessionId }) => this.moveWorkflow(sessionId, undefined)),
    ];
    return () => {
      for (const stop of stops) stop();
    };
  }

  /** A message was accepted. */
  countAccepted(): void {
    this.accepted += 1;
  }

  /** A repeated `message_id` was refused. */
  countDuplicate(): void {
    this.duplicates += 1;
  }

  /** An attempt failed and a retry is scheduled. */
  countRetry(): void {
    this.retries += 1;
  }

  /** A message is dead. */
  countDead(): void {
    this.dead += 1;
  }

  /** A message was acknowledged `latencyMs` after it was accepted. */
  countAcknowledged(latencyMs: number): void {
    this.acknowledged += 1;
    this.latencies[this.latencyCount % LATENCY_SAMPLES] = latencyMs;
    this.latencyCount += 1;
    this.latencySumMs += latencyMs;
    for (let index = LATENCY_BUCKETS_MS.length - 1; index >= 0 && latencyMs <= LATENCY_BUCKETS_MS[index]!; index -= 1) this.latencyBuckets[index]! += 1;
  }

  /** A workflow is now at `step` (undefined: it is gone). */
  private moveWorkflow(sessionId: string, step: string | undefined): void {
    const previous = this.workflowSteps.get(sessionId);
    if (previous !== undefined) {
      const left = (this.workflowsByStep.get(previous) ?? 1) - 1;
      if (left === 0) this.workflowsByStep.delete(previous);
      else this.workflowsByStep.set(previous, left);
    }
    if (step === undefined) {
      this.workflowSteps.delete(sessionId);
      return;
    }
    this.workflowSteps.set(sessionId, step);
    this.workflowsByStep.set(step, (this.workflowsByStep.get(step) ?? 0) + 1);
  }

  /** The counters, with what the bus knows of the moment. */
  snapshot(now: {
    uptimeSeconds: number;
    byStatus: Record<DeliveryStatus, number>;
    sessions: BusMetricsSnapshot["sessions"];
    agents: BusMetricsSnapshot["agents"];
    bridgeSessions: Record<SessionStatus, number>;
  }): BusMetricsSnapshot {
    const sorted = this.latencies.slice(0, Math.min(this.latencyCount, LATENCY_SAMPLES)).sort();
    return {
      uptime: now.uptimeSeconds,
      messages: {
        by_status: now.byStatus,
        accepted_total: this.accepted,
        acknowledged_total: this.acknowledged,
        dead_total: this.dead,
        retries_total: this.retries,
        duplicates_total: this.duplicates,
      },
      sessions: now.sessions,
      workflows_by_step: Object.fromEntries(this.workflowsByStep),
      agents: now.agents,
      bridge: { sessions: now.bridgeSessions, prompts: { ...this.prompts } },
      latency_ms: {
        accepted_to_acknowledged: {
          samples: sorted.length,
          p50: percentile(sorted, 0.5),
          p95: percentile(sorted, 0.95),
          p99: percentile(sorted, 0.99),
          max: sorted.length === 0 ? 0 : (sorted[sorted.length - 1] ?? 0),
        },
        accepted_to_acknowledged_histogram: {
          bucketsMs: LATENCY_BUCKETS_MS,
          counts: [...this.latencyBuckets],
          sumMs: this.latencySumMs,
          count: this.acknowledged,
        },
      },
    };
  }
}
