/**
 * Model-based tests of the worker machine: @xstate/graph walks the bare machine (maxCrashes 2); every path is
 * driven on a real runtime with a real ACP agent process, whose readiness the test releases with SIGUSR1 and
 * whose crashes are real SIGKILLs, on a simulated clock for the restart and stability delays. A spawn that
 * fails is real too: the worker's cwd is removed before the process of that step starts.
 */
import type { StatePath } from "@xstate/graph";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { workerMachine, type WorkerEvent, type WorkerInput } from "../../machines/index.js";
import { createRuntime, type Runtime, type RuntimeEvent } from "../../src/index.js";
import { fixtureWorker, isAlive, nextPid } from "../support/workers.js";
import { delayedEventTypes, TransitionCoverage } from "./coverage.js";
import { generatePaths } from "./paths.js";
import { walkPaths } from "./suite.js";

const POLICY = { maxCrashes: 2, backoffMs: 100, maxBackoffMs: 1_000, stableAfterMs: 5_000 };
const modelInput: WorkerInput = { workerId: "w", ...POLICY };

type WorkerSnapshot = ReturnType<typeof workerMachine.transition>;
type WorkerPath = StatePath<WorkerSnapshot, WorkerEvent>;

const delays = delayedEventTypes(workerMachine);
const STABLE_EVENT = delays["worker.running.ready"]![0]!;
const RESTART_EVENT = delays["worker.backoff"]![0]!;

function stateOf(snapshot: WorkerSnapshot): string {
  return typeof snapshot.value === "string" ? snapshot.value : `running.${(snapshot.value as { running: string }).running}`;
}

function eventsFor(snapshot: WorkerSnapshot): WorkerEvent[] {
  const { generation } = snapshot.context;
  const exited: WorkerEvent = { type: "WORKER.EXITED", generation, code: null, signal: "SIGKILL", reason: "was killed by SIGKILL" };
  switch (stateOf(snapshot)) {
    case "running.starting":
      return [{ type: "WORKER.READY", generation }, exited, { type: "WORKER.SPAWN_FAILED", generation, reason: "cannot run" }];
    case "running.ready":
      return [exited, { type: STABLE_EVENT } as unknown as WorkerEvent];
    case "backoff":
      return [{ type: RESTART_EVENT } as unknown as WorkerEvent];
    default:
      return [];
  }
}

/** The bare machine has no parent agent to tell: its reports go nowhere while the graph is walked. */
const graphMachine = workerMachine.provide({ actions: { tellAgent: () => {} } });

const { shortest, simple, edges } = generatePaths(graphMachine, {
  input: modelInput,
  events: eventsFor,
  serializeState: (snapshot) => JSON.stringify([snapshot.value, snapshot.context.crashes]),
});

function describePath(path: WorkerPath): string {
  return (
    path.steps
      .slice(1)
      .map(({ event }) => event.type.replace(/^WORKER\./, "").replace(/^xstate\.after\.(\w+)\..*$/, "AFTER($1)"))
      .join(" → ") || "(initial)"
  );
}

const coverage = new TransitionCoverage();
const pids = new Set<number>();

function waitFor(runtime: Runtime, predicate: (event: RuntimeEvent) => boolean): Promise<void> {
  return new Promise((resolve) => {
    const off = runtime.on("*", (event) => {
      if (predicate(event)) {
        off();
        resolve();
      }
    });
  });
}

const transitionTo = (to: string) => (event: RuntimeEvent) => event.type === "actor.transition" && event.actorId === "worker:w" && event.to === to;

/** The next worker process, remembered for the check that none outlives the suite. */
async function nextWorkerPid(pidFile: string, previous: number | undefined): Promise<number> {
  const pid = await nextPid(pidFile, previous);
  pids.add(pid);
  return pid;
}

async function runPath(path: WorkerPath): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), "troupe-worker-model-"));
  const pidFile = join(directory, "pid");
  // The worker's cwd: removed before a process that the path says fails to spawn.
  const workDirectory = join(directory, "work");
  const spawnFailsAt = (index: number): boolean => path.steps[index]?.event.type === "WORKER.SPAWN_FAILED";
  if (!spawnFailsAt(1)) mkdirSync(workDirectory);
  const clock = new SimulatedClock();
  clock.set(Date.now());
  const runtime = createRuntime({
    clock,
    inspect: coverage.inspect,
    workers: [fixtureWorker("w", { cwd: workDirectory, restart: POLICY, env: { ACP_FIXTURE_PID_FILE: pidFile, ACP_FIXTURE_INIT_ON_SIGUSR1: "1" } })],
  });
  const unavailable = waitFor(runtime, transitionTo("unavailable"));
  try {
    await runtime.start();
    let pid = spawnFailsAt(1) ? undefined : await nextWorkerPid(pidFile, undefined);
    for (let index = 1; index < path.steps.length; index += 1) {
      const { event, state: after } = path.steps[index]!;
      const label = `step ${index}: ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;
      const expected = stateOf(after);
      const reached = waitFor(runtime, transitionTo(expected.startsWith("running.") ? JSON.stringify({ running: expected.slice(8) }) : expected));
      switch (event.type) {
        case "WORKER.SPAWN_FAILED":
          // The failure was reported as soon as that process was due: the transition may be behind us already.
          await unavailable;
          break;
        case "WORKER.READY":
          process.kill(pid!, "SIGUSR1");
          await reached;
          break;
        case "WORKER.EXITED":
          process.kill(pid!, "SIGKILL");
          await reached;
          break;
        default:
          if ((event as { type: string }).type === RESTART_EVENT) {
            if (spawnFailsAt(index + 1)) rmSync(workDirectory, { recursive: true, force: true });
            clock.increment(Math.min(POLICY.backoffMs * 2 ** Math.max(0, path.steps[index - 1]!.state.context.crashes - 1), POLICY.maxBackoffMs));
            await reached;
            if (!spawnFailsAt(index + 1)) pid = await nextWorkerPid(pidFile, pid);
          } else {
            clock.increment(POLICY.stableAfterMs);
          }
      }
      const [agent] = (await runtime.bridge.agentsDiscover()).agents;
      expect(agent?.status, label).toBe(expected === "running.ready" ? "ready" : "unavailable");
      if (expected === "unavailable") {
        const why = event.type === "WORKER.SPAWN_FAILED" ? /is unavailable: cannot run .*its cwd .* does not exist \(ENOENT\)/ : /is unavailable: it crashed/;
        await expect(runtime.bridge.sessionsCreate({ agentId: "w" }), label).rejects.toMatchObject({ type: "TRANSPORT", message: expect.stringMatching(why) });
      }
    }
  } finally {
    await runtime.stop();
    rmSync(directory, { recursive: true, force: true });
  }
}

describe("worker machine, model-based", () => {
  it("generates paths over every state", () => {
    expect(new Set(shortest.map((path) => stateOf(path.state)))).toEqual(new Set(["running.starting", "running.ready", "backoff", "unavailable"]));
  });

  walkPaths({ families: { shortest, simple, edges }, describePath, runPath, coverage, name: "worker", covered: [workerMachine] });

  afterAll(() => {
    expect([...pids].filter(isAlive)).toEqual([]);
  });
});
