/**
 * `npm run model:coverage`: runs the model-based tests and prints, per machine, the transitions the real
 * runtime took over the machine's total. Exits non-zero below 100 %.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deliveryMachine, sessionMachine, sessionShardMachine, supervisorMachine, workerMachine } from "../../machines/index.js";
import { poolShardMachine } from "../../machines/pool-shard.machine.js";
import { poolMachine } from "../../machines/pool.machine.js";

interface MachineReport {
  machine: string;
  total: number;
  covered: number;
  missing: string[];
}

/** Every machine of `machines/`: one that no suite reports on is listed as missing. The workflow machine is built per workflow. */
const MACHINES = [
  ...[deliveryMachine, poolMachine, poolShardMachine, sessionMachine, sessionShardMachine, supervisorMachine, workerMachine].map((machine) => machine.id),
  "workflow",
];

const directory = mkdtempSync(join(tmpdir(), "troupe-model-coverage-"));
try {
  const run = spawnSync("npx", ["vitest", "run", "test/model"], {
    stdio: "inherit",
    env: { ...process.env, TROUPE_MODEL_COVERAGE_DIR: directory },
  });
  const merged = new Map<string, { total: number; missing: Set<string> | undefined }>();
  for (const file of readdirSync(directory)) {
    for (const report of JSON.parse(readFileSync(join(directory, file), "utf8")) as MachineReport[]) {
      const entry = merged.get(report.machine) ?? { total: report.total, missing: undefined };
      // A transition is covered when any suite took it: keep only what every suite missed.
      entry.missing = entry.missing === undefined ? new Set(report.missing) : new Set(report.missing.filter((key) => entry.missing!.has(key)));
      merged.set(report.machine, entry);
    }
  }
  console.log("\nTransition coverage on the real runtime (model-based tests):");
  let complete = merged.size > 0 && run.status === 0;
  for (const machine of MACHINES.filter((id) => !merged.has(id))) {
    console.log(`  ${machine.padEnd(14)} no model-based suite reports it`);
    complete = false;
  }
  for (const [machine, { total, missing }] of [...merged].sort()) {
    const covered = total - (missing?.size ?? 0);
    const percent = total === 0 ? 100 : (100 * covered) / total;
    console.log(`  ${machine.padEnd(14)} ${String(covered).padStart(3)} / ${String(total).padEnd(3)} ${percent.toFixed(1)} %`);
    for (const key of missing ?? []) console.log(`      missing: ${key}`);
    if (covered < total) complete = false;
  }
  process.exitCode = complete ? 0 : 1;
} finally {
  rmSync(directory, { recursive: true, force: true });
}
