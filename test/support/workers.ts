/**
 * Worker configurations of the test ACP agent (test/fixtures/acp-agent.mjs), and a check that no process
 * a test started is left alive.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { WorkerConfig } from "../../src/index.js";

/** The fixture agent's path. */
export const FIXTURE_AGENT = fileURLToPath(new URL("../fixtures/acp-agent.mjs", import.meta.url));

/** A worker running the fixture agent; `env` switches its behaviours (see the fixture's header). */
export function fixtureWorker(id: string, overrides: Partial<WorkerConfig> = {}): WorkerConfig {
  return { id, command: process.execPath, args: [FIXTURE_AGENT], capabilities: ["test"], ...overrides };
}

/** Whether a process id is alive. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * The pid the fixture wrote to `pidFile` (ACP_FIXTURE_PID_FILE) once it names a process other than `previous`:
 * waits on the real process starting, not on time.
 */
export async function nextPid(pidFile: string, previous: number | undefined): Promise<number> {
  for (let attempt = 0; attempt < 500; attempt += 1) {
    try {
      const pid = Number(readFileSync(pidFile, "utf8"));
      if (pid > 0 && pid !== previous) return pid;
    } catch {
      // not written yet
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the worker process did not start");
}
