/**
 * Sessions through the bridge at 0, 1k, 10k and 100k live sessions: creation, prompt, close and shutdown
 * cost, and heap per idle session.
 *
 * Every runtime uses the default expiry, so each session holds its TTL and idle timers (the realistic case),
 * and every call goes through `runtime.bridge`, awaited, one at a time. One runtime per size is filled and
 * kept; then batches are timed on each runtime in turn, round after round, so that machine load and the
 * garbage collector fall on every size alike. The runtime at the smallest size is the baseline: a ratio near
 * 1 says the operation costs the same however many sessions are live. The fill of the largest runtime and
 * the shutdowns are timed one after another instead: they are trends, exposed to load and to heap size.
 */
import { createMockAgent, createRuntime, type Runtime } from "../src/index.js";
import { Batches, compareToFirst, costsOf, formatCount, fullOrQuick, heapUsedAfterGc, progress, settle, type ComparedCost, type Cost } from "./measure.js";

/** Live sessions of the runtimes whose creation cost is compared; the first is the baseline. */
const CREATION_SIZES = fullOrQuick([0, 1_000, 10_000, 100_000], [0, 100, 200, 400]);
/** Live sessions at which prompt, close and shutdown costs are compared; the first is the baseline. */
const OPERATION_SIZES = fullOrQuick([1_000, 10_000, 100_000], [100, 200, 400]);
/** Sizes at which the heap per idle session is taken, each over the sessions of one fresh runtime. */
const HEAP_SIZES = fullOrQuick([10_000, 100_000], [200, 400]);
/** Operations per timed batch; batches of each size are interleaved. */
const BATCH = fullOrQuick(50, 10);
/** Creations timed per window at each size, and windows per size (each followed by closing its sessions). */
const WINDOW = fullOrQuick(1_000, 20);
const CYCLES = fullOrQuick(3, 1);
/** Batches of prompts timed at each size. */
const PROMPT_ROUNDS = fullOrQuick(60, 2);
/** Stops timed at each size. */
const SHUTDOWN_SAMPLES = new Map(
  fullOrQuick(
    [
      [1_000, 5],
      [10_000, 3],
      [100_000, 1],
    ],
    [
      [100, 1],
      [200, 1],
      [400, 1],
    ],
  ),
);
/** While filling the largest runtime, the creation cost is reported per block of this many sessions. */
const FILL_BLOCK = fullOrQuick(10_000, 100);
/** At least the 200 sessions the warm-up prompts and closes. */
const WARMUP_SESSIONS = fullOrQuick(2_000, 400);

/** Heap held per idle session, measured over `sessions` created into an empty runtime. */
export interface HeapPerSession {
  sessions: number;
  bytesPerSession: number;
}

/** Everything the sessions bench measures. */
export interface SessionsBenchResult {
  creation: ComparedCost[];
  /** Creation cost per block while the largest runtime fills, GC included (not interleaved: a trend only). */
  fill: ComparedCost[];
  prompt: ComparedCost[];
  close: ComparedCost[];
  heap: HeapPerSession[];
  /** `runtime.stop()` per session: every session closed with reason `shutdown`. */
  shutdown: ComparedCost[];
}

/** A runtime and the ids of its live sessions, so that the bench can pick sessions spread over all shards. */
class LoadedRuntime {
  readonly sessionIds: string[] = [];

  private constructor(readonly runtime: Runtime) {}

  static async start(): Promise<LoadedRuntime> {
    const runtime = createRuntime({ agents: [createMockAgent({ id: "echo" })], maxSessions: 200_000 });
    await runtime.start();
    return new LoadedRuntime(runtime);
  }

  get live(): number {
    return this.sessionIds.length;
  }

  async createOne(): Promise<void> {
    const { sessionId } = await this.runtime.bridge.sessionsCreate({ agentId: "echo" });
    this.sessionIds.push(sessionId);
  }

  async createUntil(live: number): Promise<void> {
    while (this.sessionIds.length < live) await this.createOne();
  }

  /** `count` live sessions evenly spread over all of them; `round` shifts the pick so rounds differ. */
  spread(count: number, round: number): string[] {
    const step = this.sessionIds.length / count;
    const shift = (round * 0.618_034) % 1;
    return Array.from({ length: count }, (_, index) => this.sessionIds[Math.floor((index + shift) * step)] ?? "");
  }

  /** Forgets closed sessions in one pass, outside any timed batch. */
  forget(closedIds: string[]): void {
    const closed = new Set(closedIds);
    const kept = this.sessionIds.filter((sessionId) => !closed.has(sessionId));
    this.sessionIds.length = 0;
    this.sessionIds.push(...kept);
  }

  async closeAll(sessionIds: string[]): Promise<void> {
    for (const sessionId of sessionIds) await this.runtime.bridge.sessionsClose({ sessionId });
    this.forget(sessionIds);
  }
}

/** Runs every path once on a throwaway runtime, so that no size pays for the JIT. */
async function warmUp(): Promise<void> {
  const loaded = await LoadedRuntime.start();
  await loaded.createUntil(WARMUP_SESSIONS);
  for (const sessionId of loaded.spread(200, 0)) await loaded.runtime.bridge.sessionsPrompt({ sessionId, prompt: "warm up" });
  await loaded.closeAll(loaded.spread(200, 1));
  await loaded.runtime.stop();
}

/** Fills a runtime to `live` sessions, recording each full block of `FILL_BLOCK` creations. */
async function fill(loaded: LoadedRuntime, live: number, blocks: Batches[]): Promise<void> {
  while (loaded.live < live) {
    const liveAtStart = loaded.live;
    const blockEnd = Math.min(live, liveAtStart + FILL_BLOCK);
    const startMs = performance.now();
    await loaded.createUntil(blockEnd);
    if (blockEnd - liveAtStart < FILL_BLOCK) continue;
    const block = new Batches(liveAtStart);
    block.record(FILL_BLOCK, startMs, performance.now());
    blocks.push(block);
    const { meanMicros, gcMicros } = await block.cost();
    progress(
      `  filled ${formatCount(blockEnd)} sessions: ${meanMicros.toFixed(1)} µs/session over the last ${formatCount(FILL_BLOCK)}, ${gcMicros.toFixed(1)} of it in GC`,
    );
  }
}

/**
 * Runs `step` on each runtime in turn, `rounds` times, in reverse order every other round so that no size
 * always follows the same neighbour.
 */
async function interleave(
  runtimes: LoadedRuntime[],
  rounds: number,
  step: (loaded: LoadedRuntime, index: number, round: number) => Promise<void>,
): Promise<void> {
  await settle();
  for (let round = 0; round < rounds; round += 1) {
    const order = [...runtimes.entries()];
    if (round % 2 === 1) order.reverse();
    for (const [index, loaded] of order) await step(loaded, index, round);
  }
}

/**
 * Creation and close costs at each size. A window of `WINDOW` creations is timed on every runtime, in
 * interleaved batches; then the same sessions are closed, in creation order and interleaved batches, which
 * returns every runtime to its size; `CYCLES` times. Closing the sessions the window just made, rather than
 * old ones, means every size closes from shards in the same state: a close costs more in a fuller shard,
 * and old shards drain at a rate that depends on the size.
 */
async function timeCreateAndClose(runtimes: LoadedRuntime[]): Promise<{ creation: Cost[]; close: Cost[] }> {
  const creations = runtimes.map((loaded) => new Batches(loaded.live));
  const closes = runtimes.map((loaded) => new Batches(loaded.live));
  const rounds = WINDOW / BATCH;
  for (let cycle = 0; cycle < CYCLES; cycle += 1) {
    const sizes = runtimes.map((loaded) => loaded.live);
    await interleave(runtimes, rounds, async (loaded, index) => {
      await creations[index]?.time(BATCH, () => loaded.createOne());
    });
    const windows = runtimes.map((loaded, index) => loaded.sessionIds.slice(sizes[index]));
    await interleave(runtimes, rounds, async (loaded, index, round) => {
      const sessionIds = windows[index]?.slice(round * BATCH, (round + 1) * BATCH) ?? [];
      await closes[index]?.time(sessionIds.length, (position) => loaded.runtime.bridge.sessionsClose({ sessionId: sessionIds[position] ?? "" }));
    });
    for (const [index, loaded] of runtimes.entries()) loaded.forget(windows[index] ?? []);
  }
  return { creation: await costsOf(creations), close: await costsOf(closes) };
}

/** Prompt round trips at each size, on sessions spread over the whole runtime. */
async function timePrompts(runtimes: LoadedRuntime[]): Promise<Cost[]> {
  const prompts = runtimes.map((loaded) => new Batches(loaded.live));
  await interleave(runtimes, PROMPT_ROUNDS, async (loaded, index, round) => {
    const sessionIds = loaded.spread(BATCH, round);
    await prompts[index]?.time(sessionIds.length, (position) =>
      loaded.runtime.bridge.sessionsPrompt({ sessionId: sessionIds[position] ?? "", prompt: "Is this constant?" }),
    );
  });
  return costsOf(prompts);
}

/**
 * `runtime.stop()` per session at each size: the kept runtime is one sample, fresh ones filled to the same
 * size are the others (one stop is short at the small sizes, and a single sample is at the mercy of load).
 */
async function timeShutdowns(runtimes: Map<number, LoadedRuntime>): Promise<Cost[]> {
  const costs: Cost[] = [];
  for (const size of OPERATION_SIZES) {
    const stops = new Batches(size);
    let kept = runtimes.get(size);
    for (let sample = 0; sample < (SHUTDOWN_SAMPLES.get(size) ?? 1); sample += 1) {
      const loaded = kept ?? (await LoadedRuntime.start());
      kept = undefined;
      await loaded.createUntil(size);
      await settle();
      progress(`sessions: stopping a runtime with ${formatCount(loaded.live)} live sessions`);
      const startMs = performance.now();
      await loaded.runtime.stop();
      stops.record(loaded.live, startMs, performance.now());
    }
    costs.push(await stops.cost());
  }
  return costs;
}

/** Runs the sessions bench. */
export async function runSessionsBench(): Promise<SessionsBenchResult> {
  progress("sessions: warming up on a throwaway runtime");
  await warmUp();
  const sizes = [...new Set([...CREATION_SIZES, ...OPERATION_SIZES])].sort((left, right) => left - right);
  const runtimes = new Map<number, LoadedRuntime>();
  const heap: HeapPerSession[] = [];
  const fillBlocks: Batches[] = [];
  let heapBefore = heapUsedAfterGc();
  for (const size of sizes) {
    progress(`sessions: filling a runtime with ${formatCount(size)} sessions`);
    const loaded = await LoadedRuntime.start();
    await fill(loaded, size, size === sizes.at(-1) ? fillBlocks : []);
    runtimes.set(size, loaded);
    const heapAfter = heapUsedAfterGc();
    if (HEAP_SIZES.includes(size)) heap.push({ sessions: size, bytesPerSession: (heapAfter - heapBefore) / size });
    heapBefore = heapAfter;
  }
  const runtimesOf = (sizeList: number[]): LoadedRuntime[] => sizeList.map((size) => runtimes.get(size)).filter((loaded) => loaded !== undefined);

  progress(`sessions: ${CYCLES} windows of ${formatCount(WINDOW)} creations, then closes, at each of ${CREATION_SIZES.map(formatCount).join(", ")} live`);
  const createAndClose = await timeCreateAndClose(runtimesOf(CREATION_SIZES));
  const closeCosts = createAndClose.close.filter((cost) => OPERATION_SIZES.includes(cost.live));
  progress(`sessions: prompt round trips, ${PROMPT_ROUNDS} batches of ${BATCH} at each of ${OPERATION_SIZES.map(formatCount).join(", ")} live`);
  const prompt = compareToFirst(await timePrompts(runtimesOf(OPERATION_SIZES)));

  for (const [size, loaded] of runtimes) if (!OPERATION_SIZES.includes(size)) await loaded.runtime.stop();
  const shutdown = await timeShutdowns(runtimes);
  return {
    creation: compareToFirst(createAndClose.creation),
    fill: compareToFirst(await costsOf(fillBlocks)),
    prompt,
    close: compareToFirst(closeCosts),
    heap,
    shutdown: compareToFirst(shutdown),
  };
}
