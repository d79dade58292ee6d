/**
 * `RuntimeOptions`: what `createRuntime` accepts, their defaults (SPEC §2.1), and their validation.
 */
import type { InspectionEvent } from "xstate";
import { z } from "zod";
import type { A2aAgentConfig } from "../a2a/config.js";
import type { Agent } from "../agents/agent.js";
import type { Clock } from "../clock.js";
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import { parseWith } from "../validation.js";
import type { Executor } from "../executors/executor.js";
import type { WorkerConfig } from "../executors/worker.js";
import type { Store } from "../store/store.js";

/** Options of `createRuntime`. Every limit has the default of SPEC §2.1. */
export interface RuntimeOptions {
  /** Agents run in this process by the `InProcessExecutor`. */
  agents?: Agent[];
  /** The agent used when a call names none. */
  defaultAgentId?: string;
  /** A further executor (its agents lose to in-process ones with the same id). */
  executor?: Executor;
  /** Agents run as ACP worker processes (SPEC §2.5); more with `runtime.registerWorker`. */
  workers?: WorkerConfig[];
  /** Remote A2A agents used as agents of this runtime (docs/a2a.md): their cards are fetched at `start()`. */
  a2aAgents?: A2aAgentConfig[];
  /** How long a worker process gets after SIGTERM before SIGKILL at shutdown. Default 2000. */
  workerKillGraceMs?: number;
  /** How long `sessions_create` waits for a (re)starting worker. Default 15000. */
  workerStartTimeoutMs?: number;
  /** Lifetime of a session from its creation; 0 disables. Default 3,600,000. */
  sessionTtlMs?: number;
  /** Idle time after which a session expires; 0 disables. Default 600,000. */
  sessionIdleMs?: number;
  /** Sessions alive at once. Default 1000. */
  maxSessions?: number;
  /** Prompts waiting behind the in-flight one, per session. Default 8. */
  maxQueuedPrompts?: number;
  /** Bridge calls in progress at once. Default 50. */
  maxConcurrentRequests?: number;
  /** Largest prompt in UTF-8 bytes. Default 1 MiB. */
  maxPromptBytes?: number;
  /** Largest session metadata as JSON, in UTF-8 bytes. Default 64 KiB. */
  maxMetadataBytes?: number;
  /** Messages of history a session keeps for its agent. Default 30. */
  historyWindow?: number;
  /** The clock for timers and timestamps; XState's `SimulatedClock` works. Default: the system clock. */
  clock?: Clock;
  /** Observes XState's inspection stream of every actor of the runtime (devtools, coverage). */
  inspect?: (event: InspectionEvent) => void;
  /** Sessions per supervisor shard, and children per pool shard (tuning; see docs/architecture.md). Default 128. */
  shardSize?: number;
  /** Bus workflow sessions alive at once, ended ones still retained included; past it CAPACITY. Default 10,000. */
  maxWorkflowSessions?: number;
  /**
   * Where the runtime keeps what must outlive the process (docs/durability.md): a store, or a function that
   * opens one at `start()` (e.g. `() => openSqliteStore({ dir })`). A store given here is flushed by `stop()`
   * and left open for its owner; one the runtime opened (or its default, an in-memory store) it closes.
   */
  store?: Store | (() => Promise<Store>);
}

const positiveInt = z.number().int().positive();
const nonNegativeInt = z.number().int().nonnegative();

const limitsSchema = z.object({
  defaultAgentId: z.string().min(1).optional(),
  sessionTtlMs: nonNegativeInt.max(MAX_TIMER_DELAY_MS).default(3_600_000),
  sessionIdleMs: nonNegativeInt.max(MAX_TIMER_DELAY_MS).default(600_000),
  maxSessions: positiveInt.default(1000),
  maxQueuedPrompts: nonNegativeInt.default(8),
  maxConcurrentRequests: positiveInt.default(50),
  maxPromptBytes: positiveInt.default(1024 * 1024),
  maxMetadataBytes: positiveInt.default(64 * 1024),
  historyWindow: nonNegativeInt.default(30),
  shardSize: positiveInt.default(128),
  maxWorkflowSessions: positiveInt.default(10_000),
  workerKillGraceMs: nonNegativeInt.default(2_000),
  workerStartTimeoutMs: positiveInt.default(15_000),
});

/** The options after defaults were applied. */
export type ResolvedLimits = z.infer<typeof limitsSchema>;

/** Applies defaults and validates; a bad option is CONFIG naming it. */
export function resolveLimits(options: RuntimeOptions): ResolvedLimits {
  const { agents: _agents, executor: _executor, clock: _clock, inspect: _inspect, workers: _workers, a2aAgents: _a2aAgents, ...limits } = options;
  return parseWith(limitsSchema, limits, "(arguments)");
}
