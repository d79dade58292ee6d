/**
 * Counters behind `GET /metrics`: messages by status and in total, acknowledgement latency percentiles over
 * the most recent messages, and uptime.
 */
import type { DeliveryStatus } from "../../machines/delivery.machine.js";

/** Latency samples kept: the percentiles describe the most recent acknowledged messages. */
export const LATENCY_SAMPLES = 4_096;

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
  agents: { known: number; online: number; connections: number };
  latency_ms: { accepted_to_acknowledged: LatencyPercentiles };
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
  }

  /** The counters, with what the bus knows of the moment. */
  snapshot(now: {
    uptimeSeconds: number;
    byStatus: Record<DeliveryStatus, number>;
    sessions: BusMetricsSnapshot["sessions"];
    agents: BusMetricsSnapshot["agents"];
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
      agents: now.agents,
      latency_ms: {
        accepted_to_acknowledged: {
          samples: sorted.length,
          p50: percentile(sorted, 0.5),
          p95: percentile(sorted, 0.95),
          p99: percentile(sorted, 0.99),
          max: sorted.length === 0 ? 0 : (sorted[sorted.length - 1] ?? 0),
        },
      },
    };
  }
}
