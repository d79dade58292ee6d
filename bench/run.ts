/**
 * `npm run bench`: runs every bench, prints the report, and writes bench/results/latest.json.
 *
 * The small benches run first, so that the heap is still small when they measure; each bench drops what it
 * built before the next starts. The cold starts run before all, in child processes, while this one is idle.
 *
 * `npm run bench -- --quick` runs every bench at a small fraction of its sizes (test/bench.test.ts does, so
 * that the benches never rot) and writes no file unless `--out <file>` names one; its numbers mean nothing.
 */
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { availableParallelism, loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { runBusBench, runEventStreamBench } from "./bus.bench.js";
import { runColdStartBench } from "./cold-start.bench.js";
import { runDelegationBench } from "./delegation.bench.js";
import { progress, QUICK, stopRecordingGc } from "./measure.js";
import { runPoolsBench } from "./pools.bench.js";
import { issueTargets, renderReport, type BenchResults } from "./report.js";
import { runRootActorsBench } from "./root-actors.bench.js";
import { runSessionsBench } from "./sessions.bench.js";
import { runShardingBench } from "./sharding.bench.js";
import { runWorkerBench } from "./worker.bench.js";

const { values: flags } = parseArgs({ options: { quick: { type: "boolean" }, out: { type: "string" } } });
/** Where the results go: `--out`, else bench/results/latest.json; nowhere for a quick run without `--out`. */
const resultsFile = flags.out !== undefined ? resolve(flags.out) : QUICK ? undefined : fileURLToPath(new URL("./results/latest.json", import.meta.url));
const REPOSITORY = new URL("../", import.meta.url);

/** The commit measured, marked `+changes` when machines/ or src/ differ from it: numbers belong to code. */
function measuredCommit(): string {
  try {
    const git = (...args: string[]): string => execFileSync("git", args, { cwd: REPOSITORY, encoding: "utf8" }).trim();
    const changed = git("status", "--porcelain", "--", "machines", "src") !== "";
    return `${git("rev-parse", "--short", "HEAD")}${changed ? "+changes" : ""}`;
  } catch {
    // Not a git checkout (a packed tarball, say): the numbers still stand, only their provenance is unknown.
    return "unknown";
  }
}

const startedAt = performance.now();
const loadAtStart = loadavg()[0] ?? 0;
const xstateVersion = (createRequire(import.meta.url)("xstate/package.json") as { version: string }).version;

progress(
  `benches start${QUICK ? " (quick: numbers mean nothing)" : ""}: node ${process.version}, xstate ${xstateVersion}, load average ${loadAtStart.toFixed(2)}`,
);
const coldStart = await runColdStartBench();
progress("worker: prompt round trips through an ACP worker process and in process");
const worker = await runWorkerBench();
const delegation = await runDelegationBench();
progress("bus: messages per second through the communication bus, load from a second process");
const bus = await runBusBench();
progress("events: what /events subscribers cost the bus");
const events = await runEventStreamBench();
const rootActors = runRootActorsBench();
const sharding = await runShardingBench();
const pools = await runPoolsBench();
const sessions = await runSessionsBench();
stopRecordingGc();

const results: BenchResults = {
  environment: {
    generatedAt: new Date().toISOString(),
    commit: measuredCommit(),
    node: process.version,
    xstate: xstateVersion,
    cpus: availableParallelism(),
    loadAverage: { start: loadAtStart, end: loadavg()[0] ?? 0 },
    durationSeconds: (performance.now() - startedAt) / 1000,
    quick: QUICK,
  },
  coldStart,
  sessions,
  sharding,
  pools,
  rootActors,
  worker,
  delegation,
  targets: issueTargets({ sessions, delegation }),
  bus,
  events,
};
if (resultsFile !== undefined) {
  await mkdir(dirname(resultsFile), { recursive: true });
  await writeFile(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
}
process.stdout.write(`\n${renderReport(results)}\n`);
progress(resultsFile === undefined ? "quick run: no results file written" : `results written to ${resultsFile}`);
