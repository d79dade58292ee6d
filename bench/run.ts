/**
 * `npm run bench`: runs every bench, prints the report, and writes bench/results/latest.json.
 *
 * The small benches run first, so that the heap is still small when they measure; each bench drops what it
 * built before the next starts.
 */
import { execFileSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { availableParallelism, loadavg } from "node:os";
import { runBusBench, runEventStreamBench } from "./bus.bench.js";
import { runDelegationBench } from "./delegation.bench.js";
import { progress, stopRecordingGc } from "./measure.js";
import { runPoolsBench } from "./pools.bench.js";
import { issueTargets, renderReport, type BenchResults } from "./report.js";
import { runRootActorsBench } from "./root-actors.bench.js";
import { runSessionsBench } from "./sessions.bench.js";
import { runShardingBench } from "./sharding.bench.js";
import { runWorkerBench } from "./worker.bench.js";

const RESULTS_FILE = new URL("./results/latest.json", import.meta.url);
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

progress(`benches start: node ${process.version}, xstate ${xstateVersion}, load average ${loadAtStart.toFixed(2)}`);
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
  },
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
await mkdir(new URL("./", RESULTS_FILE), { recursive: true });
await writeFile(RESULTS_FILE, `${JSON.stringify(results, null, 2)}\n`);
process.stdout.write(`\n${renderReport(results)}\n`);
progress(`results written to bench/results/latest.json`);
