/**
 * Runtimes for tests: simulated time, a controlled agent, and cleanup after each test.
 */
import { afterEach } from "vitest";
import { SimulatedClock } from "xstate";
import {
  BridgeError,
  createMultiProviderAgent,
  createRuntime,
  type Executor,
  type ExecutorHost,
  type Provider,
  type Runtime,
  type RuntimeEvent,
  type RuntimeOptions,
} from "../../src/index.js";
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
  /** Fails a session as an executor does when its agent's side dies (e.g. a worker crash). */
  failSession(sessionId: string, message?: string): void;
}

/** An executor with no agents that only keeps the runtime's host, to fail sessions as a crashed worker would. */
class HostProbe implements Executor {
  readonly kind = "probe";
  readonly sessionsExpire = true;
  host: ExecutorHost | undefined;
  attach(host: ExecutorHost): void {
    this.host = host;
  }
  hasAgent(): boolean {
    return false;
  }
  describeAgents(): [] {
    return [];
  }
  async openSession(): Promise<void> {}
  async runPrompt(): Promise<never> {
    throw new Error("the probe runs no agent");
  }
  promptCancelled(): void {}
  async closeSession(): Promise<void> {}
}

/** Starts a runtime whose default agent is a controlled one (id `controlled`), on a simulated clock. */
export async function startTestRuntime(options: RuntimeOptions = {}): Promise<TestRuntime> {
  const clock = new SimulatedClock();
  clock.set(1_700_000_000_000);
  const controlled = createControlledAgent();
  const probe = new HostProbe();
  const runtime = createRuntime({
    clock,
    defaultAgentId: "controlled",
    executor: probe,
    ...options,
    agents: [controlled.agent, ...(options.agents ?? [])],
  });
  await runtime.start();
  started.push(runtime);
  const failSession = (sessionId: string, message = "worker exited (code null, signal SIGKILL)"): void =>
    probe.host?.failSession(sessionId, new BridgeError("TRANSPORT", message, { sessionValid: false }));
  return { runtime, clock, controlled, failSession };
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

/** A started runtime whose default agent (`companion`) answers with `provider`, and every event it emits. */
export async function startProviderRuntime(provider: Provider, systemPrompt?: string): Promise<{ runtime: Runtime; events: RuntimeEvent[] }> {
  const agent = createMultiProviderAgent({ id: "companion", providers: [provider], ...(systemPrompt ? { systemPrompt } : {}) });
  const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "companion" });
  const events: RuntimeEvent[] = [];
  runtime.on("*", (event) => events.push(event));
  return { runtime, events };
}

/** Resolves with the next event of the stream that matches `predicate`. */
export function nextEvent(runtime: Runtime, predicate: (event: RuntimeEvent) => boolean): Promise<RuntimeEvent> {
  return new Promise((resolve) => {
    const off = runtime.on("*", (event) => {
      if (!predicate(event)) return;
      off();
      resolve(event);
    });
  });
}
