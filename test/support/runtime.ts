/**
 * Runtimes for tests: simulated time, a controlled agent, and cleanup after each test.
 */
import { afterEach } from "vitest";
import { SimulatedClock } from "xstate";
import { createRuntime, type Runtime, type RuntimeOptions } from "../../src/index.js";
import { createControlledAgent, type ControlledAgent } from "./controlled-agent.js";

const started: Runtime[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((runtime) => runtime.stop()));
});

/** A started runtime on a simulated clock, stopped after the test. */
export interface TestRuntime {
  runtime: Runtime;
  clock: SimulatedClock;
  controlled: ControlledAgent;
}

/** Starts a runtime whose default agent is a controlled one (id `controlled`), on a simulated clock. */
export async function startTestRuntime(options: RuntimeOptions = {}): Promise<TestRuntime> {
  const clock = new SimulatedClock();
  clock.set(1_700_000_000_000);
  const controlled = createControlledAgent();
  const runtime = createRuntime({
    clock,
    defaultAgentId: "controlled",
    ...options,
    agents: [controlled.agent, ...(options.agents ?? [])],
  });
  await runtime.start();
  started.push(runtime);
  return { runtime, clock, controlled };
}

/** Lets promise callbacks (agent replies reaching the actors) run. */
export async function settle(): Promise<void> {
  for (let turn = 0; turn < 3; turn += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The rejection of a promise, failing the test if it resolves. */
export async function rejectionOf(promise: Promise<unknown>): Promise<Error & { type?: string; details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { type?: string; details?: Record<string, unknown> };
  }
  throw new Error("expected a rejection, got a result");
}
