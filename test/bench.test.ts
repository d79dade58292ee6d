/**
 * `npm run bench -- --quick` runs, so that the benches never rot: every bench at a small fraction of its sizes,
 * every figure of the committed bench/results/latest.json produced again, a number where it had a number. Only
 * that the figures exist is checked, never their values: those are the full run's to report.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
/** The quick run takes 20 to 60 s on two busy cores (the bus bench forks a load process, the cold starts spawn 15 processes). */
const QUICK_RUN_TIMEOUT_MS = 240_000;

/** Every path to a leaf of `value`, array indexes as `[]`, with the leaf's type: `coldStart.figures[].cpuSeconds: number`. */
function leavesOf(value: unknown, path = ""): Map<string, string> {
  const leaves = new Map<string, string>();
  if (Array.isArray(value)) {
    for (const item of value) for (const [leaf, type] of leavesOf(item, `${path}[]`)) leaves.set(leaf, type);
  } else if (typeof value === "object" && value !== null) {
    for (const [key, item] of Object.entries(value)) for (const [leaf, type] of leavesOf(item, path === "" ? key : `${path}.${key}`)) leaves.set(leaf, type);
  } else {
    leaves.set(path, value === null ? "null" : typeof value);
  }
  return leaves;
}

let directory = "";
let results: unknown;
let report = "";

beforeAll(async () => {
  directory = mkdtempSync(join(tmpdir(), "troupe-bench-quick-"));
  const out = join(directory, "results.json");
  report = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ["--expose-gc", "--import", "tsx", "bench/run.ts", "--quick", "--out", out],
      { cwd: ROOT, timeout: QUICK_RUN_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stdout}\n${stderr}`)) : resolve(stdout)),
    );
  });
  results = JSON.parse(readFileSync(out, "utf8"));
}, QUICK_RUN_TIMEOUT_MS);

afterAll(() => {
  if (directory !== "") rmSync(directory, { recursive: true, force: true });
});

describe("npm run bench -- --quick", () => {
  it("produces every figure of the committed full run, each a finite number where the full run has a number", () => {
    const committed = leavesOf(JSON.parse(readFileSync(join(ROOT, "bench/results/latest.json"), "utf8")));
    const quick = leavesOf(results);
    for (const [leaf, type] of committed) {
      expect(quick.get(leaf), leaf).toBe(type);
    }
    for (const [leaf, type] of quick) expect(type, leaf).not.toBe("null");
  });

  it("says it was a quick run, and prints the report with the cold starts beside their targets and no value missing", () => {
    expect(results).toMatchObject({ environment: { quick: true } });
    expect(report).toContain("QUICK RUN");
    for (const target of ["≤ 0.15", "≤ 0.25", "≤ 0.4"]) expect(report).toContain(target);
    expect(report).not.toMatch(/NaN|undefined/);
  });
});
