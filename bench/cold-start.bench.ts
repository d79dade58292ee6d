/**
 * Cold start: how long a fresh process takes to `import "troupe"`, to print `troupe --version`, and to answer
 * an MCP client's `initialize` from `troupe mcp`, beside a bare `node -e ""` and `import "xstate"` timed in the
 * same rounds (issue 13: ≤ 0.15 s, ≤ 0.25 s and ≤ 0.4 s).
 *
 * What is measured is what a user runs: the compiled package in `dist/`, imported by its name from the
 * package's folder (Node resolves a package's own name through its `exports`) and run as its `bin`. When
 * `dist/` is missing or older than a source file, the bench compiles it first (`tsc -p tsconfig.build.json`,
 * what `npm run build` does before the UI bundle, which no cold start reads). Each time runs from `spawn` to
 * the process's exit (`troupe mcp`: to the line that answers `initialize`), so it includes Node's own start;
 * the processes take turns, round after round, so that load from other processes falls on all alike. A
 * `--quick` run (the tests') compiles nothing: with `dist/` out of date it starts the sources through tsx,
 * which checks that every figure is produced and measures nothing worth reading.
 *
 * On a busy machine a wall time is mostly waiting for a core; the CPU time a start uses is steadier. Separate
 * rounds measure it, and the peak resident memory, with a preload that reports `process.cpuUsage()` at the
 * process's first write to stdout (`troupe mcp`'s answer, `--version`'s line) or else at its exit, and
 * `process.resourceUsage().maxRSS` at exit; the preload itself adds a little to every start alike.
 * Run alone: `node --import tsx bench/cold-start.bench.ts`.
 */
import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fullOrQuick, progress, QUICK } from "./measure.js";

const PACKAGE_ROOT = fileURLToPath(new URL("../", import.meta.url));
const BUILT_CLI = join(PACKAGE_ROOT, "dist", "src", "cli", "main.js");
const BUILT_INDEX = join(PACKAGE_ROOT, "dist", "src", "index.js");
const SOURCE_CLI = join(PACKAGE_ROOT, "src", "cli", "main.ts");
/** Timed rounds of every start, each start once per round; then rounds with the preload that reports CPU and memory. */
const ROUNDS = fullOrQuick(15, 2);
const RESOURCE_ROUNDS = fullOrQuick(5, 1);
/** A start that takes longer has hung. */
const START_TIMEOUT_MS = 30_000;
/** The line the preload writes to stderr on exit: CPU microseconds (user + system) until ready, and `maxRSS` in KiB. */
const RESOURCE_MARK = "cold-start-resources:";
const RESOURCE_PRELOAD = `data:text/javascript,${encodeURIComponent(`
let ready;
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (...args) => { ready ??= process.cpuUsage(); return write(...args); };
process.on("exit", () => {
  const { user, system } = ready ?? process.cpuUsage();
  process.stderr.write("\\n${RESOURCE_MARK}" + JSON.stringify({ cpuMicros: user + system, maxRssKiB: process.resourceUsage().maxRSS }) + "\\n");
});`)}`;
/** The provider keys `troupe mcp` reads: left out, so that every run serves the same agents. */
const PROVIDER_ENV = ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"];
const INITIALIZE = `${JSON.stringify({
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "troupe-bench", version: "0" } },
})}\n`;

/** One kind of start: a baseline (no target) or one of troupe's, with the issue's target. */
export interface ColdStartFigure {
  start: string;
  /** The command, as a user would type it. */
  command: string;
  /** When the start is over: the process exited, or it answered the MCP `initialize` request written to its stdin. */
  until: "exit" | "initialize";
  /** The issue's target, in seconds; absent for a baseline. */
  targetSeconds?: number;
  /** Wall time from spawn to exit (or to the `initialize` answer), median over the rounds. */
  medianSeconds: number;
  minSeconds: number;
  /** `medianSeconds` minus `node -e ""`'s: the part that is not Node starting. */
  overNodeSeconds: number;
  /** CPU time (user + system, every thread) until ready, median over the resource rounds: steadier than wall time under load. */
  cpuSeconds: number;
  peakRssMiB: number;
}

/** Everything the cold-start bench measures. */
export interface ColdStartResult {
  /** `dist`: the compiled package, what a user runs; `src through tsx`: a quick run's stand-in, for a `dist/` out of date. */
  measured: "dist" | "src through tsx";
  rounds: number;
  resourceRounds: number;
  figures: ColdStartFigure[];
}

/** How to run one start: arguments to `node`, and when it counts as done. */
interface Start {
  start: string;
  command: string;
  targetSeconds?: number;
  nodeArgs: string[];
  /** `exit`: the process ended; `initialize`: it answered the MCP `initialize` request written to its stdin. */
  until: "exit" | "initialize";
}

/** The starts, of the compiled package or (`measured` "src through tsx") of the sources. */
function startsOf(measured: ColdStartResult["measured"]): Start[] {
  const fromSources = measured === "src through tsx";
  const troupe = fromSources ? ["--import", import.meta.resolve("tsx")] : [];
  const cli = fromSources ? SOURCE_CLI : BUILT_CLI;
  return [
    { start: "node", command: 'node -e ""', nodeArgs: ["-e", ""], until: "exit" },
    { start: "xstate", command: "node -e 'import \"xstate\"'", nodeArgs: ["--input-type=module", "-e", 'import "xstate";'], until: "exit" },
    {
      start: "import troupe",
      command: "node -e 'import \"troupe\"'",
      targetSeconds: 0.15,
      nodeArgs: [...troupe, "--input-type=module", "-e", fromSources ? 'import "./src/index.ts";' : 'import "troupe";'],
      until: "exit",
    },
    { start: "troupe --version", command: "troupe --version", targetSeconds: 0.25, nodeArgs: [...troupe, cli, "--version"], until: "exit" },
    { start: "troupe mcp", command: "troupe mcp", targetSeconds: 0.4, nodeArgs: [...troupe, cli, "mcp"], until: "initialize" },
  ];
}

/** What the preload reports. */
interface Resources {
  cpuMicros: number;
  maxRssKiB: number;
}

/** The newest modification time of the `.ts` files under `folder`, in ms. */
function newestSource(folder: string): number {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/**
 * What to measure: `dist/`, compiled first when it is missing or older than a source file; a quick run takes the
 * sources instead of compiling.
 */
function prepare(): ColdStartResult["measured"] {
  const sources = Math.max(newestSource(join(PACKAGE_ROOT, "src")), newestSource(join(PACKAGE_ROOT, "machines")));
  const built = [BUILT_INDEX, BUILT_CLI].map((file) => (existsSync(file) ? statSync(file).mtimeMs : 0));
  if (Math.min(...built) > sources) return "dist";
  if (QUICK) return "src through tsx";
  progress("cold start: dist/ is older than the sources, compiling it (tsc -p tsconfig.build.json)");
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  execFileSync(process.execPath, [tsc, "-p", "tsconfig.build.json"], { cwd: PACKAGE_ROOT, stdio: "inherit" });
  return "dist";
}

/** Resolves with the time the first line of `stream` answering request 1 arrives. */
function answerToInitialize(stream: NodeJS.ReadableStream): Promise<number> {
  return new Promise((resolve) => {
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      if (lines.some((line) => (JSON.parse(line) as { id?: unknown }).id === 1)) resolve(performance.now());
    });
  });
}

/** Runs one start in a fresh process; resolves with its seconds and what it wrote to stderr. */
async function runStart(start: Start, cwd: string, env: NodeJS.ProcessEnv, preload: string[] = []): Promise<{ seconds: number; stderr: string }> {
  const startedAt = performance.now();
  const child = spawn(process.execPath, [...preload, ...start.nodeArgs], { cwd, env, stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const timeout = setTimeout(() => child.kill("SIGKILL"), START_TIMEOUT_MS);
  const failure = (what: string): Error => new Error(`cold start: ${start.command} ${what}: ${stderr}`);
  try {
    if (start.until === "exit") {
      child.stdin.end();
      child.stdout.resume();
      const [code] = await exited;
      if (code !== 0) throw failure(`exited with ${code}`);
      return { seconds: (performance.now() - startedAt) / 1000, stderr };
    }
    child.stdin.write(INITIALIZE);
    const answeredAt = await Promise.race([answerToInitialize(child.stdout), exited.then(() => Promise.reject(failure("ended before answering initialize")))]);
    // Untimed: the client hangs up, and troupe mcp stops.
    child.stdin.end();
    await exited;
    return { seconds: (answeredAt - startedAt) / 1000, stderr };
  } finally {
    clearTimeout(timeout);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

/** The resources a preloaded run reported on its last line of stderr. */
function resourcesOf(stderr: string): Resources {
  const line = stderr.slice(stderr.lastIndexOf(RESOURCE_MARK) + RESOURCE_MARK.length).split("\n")[0] ?? "";
  return JSON.parse(line) as Resources;
}

/** Runs the cold-start bench. */
export async function runColdStartBench(): Promise<ColdStartResult> {
  const measured = prepare();
  const starts = startsOf(measured);
  // `troupe mcp` in an empty folder: no ./agents to read, as in most projects that add it to an MCP client.
  const emptyFolder = mkdtempSync(join(tmpdir(), "troupe-bench-cold-"));
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !PROVIDER_ENV.includes(name)));
  const cwdOf = (start: Start): string => (start.start === "troupe mcp" ? emptyFolder : PACKAGE_ROOT);
  try {
    progress(`cold start (${measured}): ${ROUNDS} rounds of ${starts.map((start) => start.command).join(", ")}`);
    const seconds = starts.map((): number[] => []);
    // One untimed round first: the files the starts read come into the page cache.
    for (let round = -1; round < ROUNDS; round += 1) {
      const order = [...starts.entries()];
      if (round % 2 === 1) order.reverse();
      for (const [index, start] of order) {
        const run = await runStart(start, cwdOf(start), env);
        if (round >= 0) seconds[index]?.push(run.seconds);
      }
    }
    const resources = starts.map((): Resources[] => []);
    for (let round = 0; round < RESOURCE_ROUNDS; round += 1) {
      for (const [index, start] of starts.entries()) {
        const { stderr } = await runStart(start, cwdOf(start), env, ["--import", RESOURCE_PRELOAD]);
        resources[index]?.push(resourcesOf(stderr));
      }
    }
    const nodeSeconds = median(seconds[0] ?? []);
    return {
      measured,
      rounds: ROUNDS,
      resourceRounds: RESOURCE_ROUNDS,
      figures: starts.map((start, index) => {
        const medianSeconds = median(seconds[index] ?? []);
        const used = resources[index] ?? [];
        return {
          start: start.start,
          command: start.command,
          until: start.until,
          ...(start.targetSeconds === undefined ? {} : { targetSeconds: start.targetSeconds }),
          medianSeconds,
          minSeconds: Math.min(...(seconds[index] ?? [])),
          overNodeSeconds: medianSeconds - nodeSeconds,
          cpuSeconds: median(used.map(({ cpuMicros }) => cpuMicros)) / 1e6,
          peakRssMiB: Math.max(...used.map(({ maxRssKiB }) => maxRssKiB)) / 1024,
        };
      }),
    };
  } finally {
    rmSync(emptyFolder, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { figures } = await runColdStartBench();
  for (const figure of figures) {
    process.stdout.write(
      `${`${figure.command}${figure.until === "initialize" ? " (until initialize)" : ""}`.padEnd(40)} median ${figure.medianSeconds.toFixed(3)} s, min ${figure.minSeconds.toFixed(3)} s, ` +
        `${figure.overNodeSeconds.toFixed(3)} s over node, CPU ${figure.cpuSeconds.toFixed(3)} s, ${figure.peakRssMiB.toFixed(0)} MiB` +
        `${figure.targetSeconds === undefined ? "" : ` (target ≤ ${figure.targetSeconds} s)`}\n`,
    );
  }
}
