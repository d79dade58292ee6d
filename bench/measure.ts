/**
 * What every bench measures with: batches of operations, their median and mean, the heap, progress lines.
 *
 * Benches compare a number with a baseline taken in the same run, never with a fixed time, so a slower or
 * busier machine changes the numbers but not the verdict. Where two sizes are compared, their batches are
 * interleaved (one batch of each in turn, round after round) so that load from other processes and the
 * garbage collector fall on both alike.
 */
import { PerformanceObserver } from "node:perf_hooks";
import { setImmediate as nextMacrotask, setTimeout as sleep } from "node:timers/promises";

/** A ratio to the baseline above this means the cost is not constant (the "about the same"). */
export const CONSTANT_COST_MAX_RATIO = 1.5;

/**
 * `--quick`: every bench at a small fraction of its sizes, in well under a minute, so that a test can check that
 * the benches still run and report every figure. Its numbers say nothing about costs.
 */
export const QUICK = process.argv.includes("--quick");

/** `full`, or `quick` under `--quick`: how a bench states each of its sizes. */
export function fullOrQuick<T>(full: T, quick: T): T {
  return QUICK ? quick : full;
}

/** What one operation costs at one size, from batches of operations. */
export interface Cost {
  /** How many of the measured things were live (sessions, children) while the batches ran. */
  live: number;
  operations: number;
  /** Median over batches of the microseconds per operation: the work itself, without rare GC pauses. */
  medianMicros: number;
  /** All the time over all the operations, GC pauses included. */
  meanMicros: number;
  /** Operations per second at the mean cost. */
  operationsPerSecond: number;
  /** Of `meanMicros`, the time the main thread spent paused in garbage collection. */
  gcMicros: number;
}

/** A cost next to the baseline it is compared with. */
export interface ComparedCost extends Cost {
  /** `medianMicros` over the baseline's: the headline, near 1 when the cost is constant. */
  ratio: number;
  /** `meanMicros` over the baseline's. */
  meanRatio: number;
}

/** A garbage collection pause on the main thread, on the clock of `performance.now()`. */
interface GcPause {
  startMs: number;
  durationMs: number;
}

const gcPauses: GcPause[] = [];
const gcObserver = new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcPauses.push({ startMs: entry.startTime, durationMs: entry.duration });
});
gcObserver.observe({ entryTypes: ["gc"] });

/**
 * Lets Node deliver the GC pauses it has queued: it reports them a couple of event-loop turns late, and a
 * batch of promise-only work never yields to the event loop.
 */
async function flushGcPauses(): Promise<void> {
  await sleep(1);
  await nextMacrotask();
  await nextMacrotask();
}

/** The GC pauses that began inside `[startMs, endMs)`; call after `flushGcPauses()`. */
function gcMillisWithin(startMs: number, endMs: number): number {
  let total = 0;
  for (const pause of gcPauses) if (pause.startMs >= startMs && pause.startMs < endMs) total += pause.durationMs;
  return total;
}

/** Stops recording GC pauses, so that the process can exit. */
export function stopRecordingGc(): void {
  gcObserver.disconnect();
}

/** The timed batches of one kind of operation at one size. */
export class Batches {
  private readonly batches: { operations: number; startMs: number; endMs: number }[] = [];

  constructor(readonly live: number) {}

  /** Times `operations` calls of `operation`, one after another, each awaited. */
  async time(operations: number, operation: (index: number) => unknown): Promise<void> {
    const startMs = performance.now();
    for (let index = 0; index < operations; index += 1) await operation(index);
    this.batches.push({ operations, startMs, endMs: performance.now() });
  }

  /** Records a batch timed elsewhere. */
  record(operations: number, startMs: number, endMs: number): void {
    this.batches.push({ operations, startMs, endMs });
  }

  async cost(): Promise<Cost> {
    await flushGcPauses();
    let operations = 0;
    let elapsedMs = 0;
    let gcMs = 0;
    for (const batch of this.batches) {
      operations += batch.operations;
      elapsedMs += batch.endMs - batch.startMs;
      gcMs += gcMillisWithin(batch.startMs, batch.endMs);
    }
    const meanMicros = (elapsedMs * 1000) / operations;
    return {
      live: this.live,
      operations,
      medianMicros: median(this.batches.map((batch) => ((batch.endMs - batch.startMs) * 1000) / batch.operations)),
      meanMicros,
      operationsPerSecond: 1e6 / meanMicros,
      gcMicros: (gcMs * 1000) / operations,
    };
  }
}

/** The cost of each of `batches`, in order. */
export async function costsOf(batches: Batches[]): Promise<Cost[]> {
  const costs: Cost[] = [];
  for (const one of batches) costs.push(await one.cost());
  return costs;
}

/** Each cost with its ratios to the first one, the baseline. */
export function compareToFirst(costs: Cost[]): ComparedCost[] {
  const baseline = costs[0];
  if (baseline === undefined) return [];
  return costs.map((cost) => ({
    ...cost,
    ratio: cost.medianMicros / baseline.medianMicros,
    meanRatio: cost.meanMicros / baseline.meanMicros,
  }));
}

/** The middle value; the mean of the two middle ones for an even count. */
function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  return sorted.length % 2 === 1 ? upper : ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

/** Runs a full, synchronous garbage collection. Needs `node --expose-gc` (as `npm run bench` does). */
function collectGarbage(): void {
  if (globalThis.gc === undefined) throw new Error("Run the benches with node --expose-gc (npm run bench does)");
  globalThis.gc();
}

/** The heap in use after a full collection, in bytes: what live objects hold, without garbage. */
export function heapUsedAfterGc(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/**
 * Collects garbage, then waits for V8's concurrent sweeping to finish: right after a full collection of a
 * large heap, allocation is slower for a while, and a timed batch would pay for the collection.
 */
export async function settle(): Promise<void> {
  collectGarbage();
  await sleep(250);
}

const benchStartedAt = performance.now();

/** Prints one progress line, with the seconds since the benches started. */
export function progress(message: string): void {
  const seconds = ((performance.now() - benchStartedAt) / 1000).toFixed(1).padStart(6);
  process.stdout.write(`[${seconds} s] ${message}\n`);
}

/** `12,345` */
export function formatCount(count: number): string {
  return count.toLocaleString("en-US");
}

/** Milliseconds per call of `call`, `count` calls one after another: the median and the 95th percentile. */
export async function latency(count: number, call: () => Promise<unknown>): Promise<{ median: number; p95: number }> {
  const times: number[] = [];
  for (let n = 0; n < count; n += 1) {
    const started = performance.now();
    await call();
    times.push(performance.now() - started);
  }
  times.sort((x, y) => x - y);
  return { median: times[Math.floor(times.length / 2)] ?? 0, p95: times[Math.floor(times.length * 0.95)] ?? 0 };
}
