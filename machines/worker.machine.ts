/**
 * The worker machine: one agent process (an ACP agent) under its agent's actor (`agent.machine.ts`).
 *
 * While `running`, it invokes `workerProcess` (provided by the runtime: it spawns the process, speaks ACP,
 * and reports `WORKER.READY` / `WORKER.EXITED`). An exit leads to `backoff` and a new process after an
 * exponential delay; `maxCrashes` exits without a stable run in between make the worker `unavailable`, and so
 * does a command that cannot be spawned at all (`WORKER.SPAWN_FAILED`: it would fail the same way every time).
 * Leaving `running` stops the invoked actor, which ends the process. It tells its parent, the agent, what
 * that means for the agent: `AGENT.ONLINE`, `AGENT.OFFLINE` or `AGENT.UNAVAILABLE`.
 */
import { assign, sendParent, setup, type ActorRefFrom, fromCallback } from "xstate";
import type { AgentPresenceEvent } from "./agent.machine.js";

/** Restart policy of a worker. */
export interface WorkerRestartPolicy {
  /** Consecutive crashes (without `stableAfterMs` of running in between) that make a worker unavailable. */
  maxCrashes: number;
  /** First restart delay; doubles with each consecutive crash. */
  backoffMs: number;
  /** Longest restart delay. */
  maxBackoffMs: number;
  /** Running this long resets the crash count. */
  stableAfterMs: number;
}

/** What the runtime gives a worker actor. */
export interface WorkerInput extends WorkerRestartPolicy {
  workerId: string;
}

/** The worker's state besides its state value. */
export interface WorkerContext extends WorkerInput {
  /** Consecutive crashes. */
  crashes: number;
  /** Increments with every process started, so reports of an old process are recognised. */
  generation: number;
}

/** Input of the `workerProcess` actor. */
export interface WorkerProcessInput {
  workerId: string;
  generation: number;
}

/** Events a worker accepts, all from its `workerProcess`; `reason` says what happened, for people. */
export type WorkerEvent =
  | { type: "WORKER.READY"; generation: number }
  | { type: "WORKER.EXITED"; generation: number; code: number | null; signal: string | null; reason: string }
  /** The command could not be run at all (ENOENT, EACCES…): no process exists. */
  | { type: "WORKER.SPAWN_FAILED"; generation: number; reason: string };

/** A worker actor. */
export type WorkerActorRef = ActorRefFrom<typeof workerMachine>;

/** The system id (and actor id) of a worker's actor. */
export function workerSystemId(workerId: string): string {
  return `worker:${workerId}`;
}

/** The worker machine. Provide `workerProcess` (a callback actor) before use. */
export const workerMachine = setup({
  types: {
    context: {} as WorkerContext,
    events: {} as WorkerEvent,
    input: {} as WorkerInput,
  },
  actors: {
    // Replaced by the runtime through `provide`; this default starts nothing.
    workerProcess: fromCallback<WorkerEvent, WorkerProcessInput>(() => undefined),
  },
  delays: {
    restartDelay: ({ context }) => Math.min(context.backoffMs * 2 ** Math.max(0, context.crashes - 1), context.maxBackoffMs),
    stableAfter: ({ context }) => context.stableAfterMs,
  },
  guards: {
    isCurrent: ({ context, event }) => event.generation === context.generation,
    crashesTooOften: ({ context, event }) => event.generation === context.generation && context.crashes + 1 >= context.maxCrashes,
  },
  actions: {
    countCrash: assign({ crashes: ({ context }) => context.crashes + 1 }),
    // Named, so that a graph traversal without a parent can provide a no-op.
    tellAgent: sendParent((_, params: AgentPresenceEvent) => params),
    nextGeneration: assign({ generation: ({ context }) => context.generation + 1 }),
    forgetCrashes: assign({ crashes: 0 }),
  },
}).createMachine({
  id: "worker",
  context: ({ input }) => ({ ...input, crashes: 0, generation: 1 }),
  initial: "running",
  states: {
    running: {
      description: "A process is alive (starting or ready).",
      invoke: {
        id: "process",
        src: "workerProcess",
        input: ({ context }) => ({ workerId: context.workerId, generation: context.generation }),
      },
      initial: "starting",
      states: {
        starting: {
          description: "Spawned; the ACP initialize handshake is under way.",
          on: {
            "WORKER.READY": { guard: "isCurrent", target: "ready", actions: { type: "tellAgent", params: { type: "AGENT.ONLINE" } } },
            "WORKER.SPAWN_FAILED": {
              guard: "isCurrent",
              target: "#worker.unavailable",
              actions: { type: "tellAgent", params: ({ event }) => ({ type: "AGENT.UNAVAILABLE", reason: event.reason }) },
            },
          },
        },
        ready: {
          description: "Accepts sessions.",
          after: { stableAfter: { actions: "forgetCrashes" } },
        },
      },
      on: {
        "WORKER.EXITED": [
          {
            guard: "crashesTooOften",
            target: "unavailable",
            actions: [
              "countCrash",
              // Resolved after countCrash: `crashes` already counts this exit.
              {
                type: "tellAgent",
                params: ({ context, event }) => ({
                  type: "AGENT.UNAVAILABLE",
                  reason: `it crashed ${context.crashes} times in a row; the last time it ${event.reason}`,
                }),
              },
            ],
          },
          { guard: "isCurrent", target: "backoff", actions: ["countCrash", { type: "tellAgent", params: { type: "AGENT.OFFLINE" } }] },
        ],
      },
    },
    backoff: {
      description: "The process exited; a new one starts after the restart delay.",
      after: { restartDelay: { target: "running", actions: "nextGeneration" } },
    },
    unavailable: {
      description: "The process crashed too often, or its command cannot be run; the worker takes no sessions.",
    },
  },
});
