/**
 * Worker configurations of the test ACP agent (test/fixtures/acp-agent.mjs), and a check that no process
 * a test started is left alive.
 */
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
