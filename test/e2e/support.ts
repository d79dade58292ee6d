/**
 * A runtime with agents (in-process and ACP workers) behind a started bus, so that its agents are the bus
 * agents `troupe://<id>`; the bus, then the runtime, are stopped after each test.
 */
import { afterEach } from "vitest";
import { createRuntime, type BusOptions, type CommunicationBus, type Runtime, type RuntimeOptions } from "../../src/index.js";
import { startSuiteBus } from "../bus/support.js";

const running: Array<{ bus?: CommunicationBus; runtime: Runtime }> = [];

afterEach(async () => {
  for (const { bus, runtime } of running.splice(0)) {
    await bus?.stop();
    await runtime.stop();
  }
});

/** Starts a runtime with `runtimeOptions` (on the bus's clock) and a bus on it (127.0.0.1, port 0, the test key). */
export async function startRuntimeBus(runtimeOptions: RuntimeOptions = {}, busOptions: BusOptions = {}): Promise<{ bus: CommunicationBus; runtime: Runtime }> {
  const runtime = createRuntime({ ...(busOptions.clock ? { clock: busOptions.clock } : {}), ...runtimeOptions });
  const entry: (typeof running)[number] = { runtime };
  running.push(entry);
  await runtime.start();
  entry.bus = await startSuiteBus({ runtime, ...busOptions });
  return { bus: entry.bus, runtime };
}
