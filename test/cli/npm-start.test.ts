/**
 * `npm start` stops cleanly: SIGINT or SIGTERM sent to npm, and a terminal's Ctrl-C (SIGINT to npm, troupe and
 * the workers at once), all end troupe in order (exit 0) with its workers stopped by troupe, none left behind.
 *
 * npm runs the start script through a shell; `exec` in it replaces the shell with troupe, so that the signals
 * npm forwards reach troupe itself. The test runs the project's start script with only the built entry point
 * swapped for the source one (no build needed), from a package of its own.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { isAlive } from "../support/workers.js";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const BUILT_ENTRY = "node dist/src/cli/main.js";
const startScript = (JSON.parse(readFileSync(join(projectRoot, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start;
const directories: string[] = [];
const groups: number[] = [];

afterEach(() => {
  for (const group of groups.splice(0)) {
    try {
      process.kill(-group, "SIGKILL");
    } catch {
      // the group is gone already
    }
  }
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** `npm start` in its own process group (as a terminal's foreground job is), serving on a free port with the example worker. */
async function npmStart(): Promise<{ npm: ChildProcessWithoutNullStreams; stderr: () => string; exited: Promise<number | null> }> {
  const directory = mkdtempSync(join(tmpdir(), "troupe-npm-start-"));
  directories.push(directory);
  const script = startScript.replace(BUILT_ENTRY, `node --import ${import.meta.resolve("tsx")} ${join(projectRoot, "src/cli/main.ts")}`);
  writeFileSync(join(directory, "package.json"), JSON.stringify({ name: "npm-start-check", private: true, scripts: { start: script } }));
  const { AGENT_BUS_API_KEY: _key, OPENAI_API_KEY: _openai, OPENAI_BASE_URL: _base, ...env } = process.env;
  const npm = spawn("npm", ["start", "--", "--port", "0", "--in-memory", "--config", join(projectRoot, "examples/troupe.json")], {
    cwd: directory,
    env,
    detached: true,
  });
  groups.push(npm.pid!);
  const exited = once(npm, "close").then(([code]) => code as number | null);
  let stdout = "";
  let stderr = "";
  npm.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  npm.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  // Listening, and the worker's first session line need not come: its process started (it logs that).
  while (!stdout.includes("troupe listening on") || !stderr.includes('"worker.started"')) {
    if (npm.exitCode !== null) throw new Error(`npm start ended early: ${stdout}${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { npm, stderr: () => stderr, exited };
}

function logLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("npm start", () => {
  it("execs troupe from its start script, so that npm's signals reach it", () => {
    expect(startScript).toBe(`exec ${BUILT_ENTRY} serve`);
  });

  it.each([
    ["SIGTERM sent to npm", (npm: ChildProcessWithoutNullStreams) => process.kill(npm.pid!, "SIGTERM")],
    ["SIGINT sent to npm", (npm: ChildProcessWithoutNullStreams) => process.kill(npm.pid!, "SIGINT")],
    ["Ctrl-C in a terminal (SIGINT to the whole group)", (npm: ChildProcessWithoutNullStreams) => process.kill(-npm.pid!, "SIGINT")],
  ])("stops cleanly on %s, its worker stopped by troupe", async (_how, signal) => {
    const { npm, stderr, exited } = await npmStart();
    const workerPid = logLines(stderr()).find((line) => line.event === "worker.started")!.pid as number;
    signal(npm);
    expect(await exited).toBe(0);
    const lines = logLines(stderr());
    expect(lines.find((line) => line.event === "worker.exited")).toMatchObject({ signal: "SIGTERM", msg: expect.stringMatching(/^worker process stopped/) });
    expect(lines.at(-1)).toMatchObject({ msg: "stopped" });
    expect(isAlive(workerPid)).toBe(false);
  });
});
