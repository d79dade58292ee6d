/**
 * The cost of a prompt round trip through an ACP worker process, against the same agent in process.
 *
 * Both run the agent of test/fixtures (`Echo: <prompt>`, streamed as chunks): in process through
 * `createScriptedAgent`, as a worker through the fixture process. Sequential prompts on one session each,
 * interleaved in batches so load falls on both alike. Run alone: `node --import tsx bench/worker.bench.ts`.
 */
import { createRuntime, type Runtime } from "../src/index.js";
import { createScriptedAgent } from "../test/support/scripted-agent.js";
import { fixtureWorker } from "../test/support/workers.js";
import { fullOrQuick } from "./measure.js";

/** Medians of one executor's round trips. */
export interface RoundTrip {
  executor: string;
  medianMicros: number;
  p99Micros: number;
  promptsPerSecond: number;
}

/** The two executors' round trips and their ratio. */
export interface WorkerBenchResult {
  inProcess: RoundTrip;
  worker: RoundTrip;
  /** Worker median over in-process median. */
  ratio: number;
}

const BATCHES = fullOrQuick(20, 2);
const PROMPTS_PER_BATCH = fullOrQuick(25, 5);

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? 0;
}

function summarize(executor: string, samples: number[]): RoundTrip {
  const sorted = [...samples].sort((a, b) => a - b);
  const medianMicros = percentile(sorted, 0.5);
  return { executor, medianMicros, p99Micros: percentile(sorted, 0.99), promptsPerSecond: 1e6 / (samples.reduce((a, b) => a + b, 0) / samples.length) };
}

async function timePrompts(runtime: Runtime, sessionId: string, samples: number[]): Promise<void> {
  for (let index = 0; index < PROMPTS_PER_BATCH; index += 1) {
    const started = performance.now();
    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "hello from the bench" });
    samples.push((performance.now() - started) * 1000);
  }
}

/** Runs the comparison. */
export async function runWorkerBench(): Promise<WorkerBenchResult> {
  const runtime = createRuntime({ agents: [createScriptedAgent("local")], workers: [fixtureWorker("remote")] });
  await runtime.start();
  try {
    const local = (await runtime.bridge.sessionsCreate({ agentId: "local" })).sessionId;
    const remote = (await runtime.bridge.sessionsCreate({ agentId: "remote" })).sessionId;
    const localSamples: number[] = [];
    const remoteSamples: number[] = [];
    await timePrompts(runtime, local, []); // warm-up
    await timePrompts(runtime, remote, []);
    for (let batch = 0; batch < BATCHES; batch += 1) {
      await timePrompts(runtime, local, localSamples);
      await timePrompts(runtime, remote, remoteSamples);
    }
    const inProcess = summarize("in-process", localSamples);
    const worker = summarize("worker (ACP over stdio)", remoteSamples);
    return { inProcess, worker, ratio: worker.medianMicros / inProcess.medianMicros };
  } finally {
    await runtime.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = await runWorkerBench();
  for (const trip of [result.inProcess, result.worker]) {
    console.log(
      `${trip.executor.padEnd(26)} median ${trip.medianMicros.toFixed(0).padStart(6)} µs   p99 ${trip.p99Micros.toFixed(0).padStart(6)} µs   ${trip.promptsPerSecond.toFixed(0)} prompts/s`,
    );
  }
  console.log(`worker / in-process (median): ${result.ratio.toFixed(1)}×`);
}
