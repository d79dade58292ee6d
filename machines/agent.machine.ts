/**
 * The agent machine: one actor per agent the runtime knows (SPEC §3.6), whatever runs it.
 *
 * `offline` → `ready` ⇄ `busy`, and `unavailable`. Who says an agent is online depends on its kind:
 * - an **in-process** agent is online as soon as it exists;
 * - an **ACP worker**'s agent spawns the worker machine as its child (`worker:<id>`), which tells it
 *   `AGENT.ONLINE` once its process answered `initialize`, `AGENT.OFFLINE` when the process exited and will
 *   restart, and `AGENT.UNAVAILABLE` when it crashed too often;
 * - a **remote** bus agent is told `AGENT.ONLINE` / `AGENT.OFFLINE` by the bus as its WebSocket connects and
 *   disconnects;
 * - a remote **A2A** agent is told `AGENT.ONLINE` by its executor once its agent card was fetched, and
 *   `AGENT.OFFLINE` when it cannot be reached.
 * The runtime tells it `WORK.STARTED` / `WORK.FINISHED` as each of its sessions starts and stops running a
 * prompt; it counts them and is `busy` while any runs. Every change is emitted as an `agent.*` event.
 */
import { assign, emit, enqueueActions, setup, type ActorRefFrom } from "xstate";
import { workerMachine, workerSystemId, type WorkerInput } from "./worker.machine.js";

/** Where an agent runs, which decides who tells it it is online. */
export type AgentKind = "in-process" | "worker" | "remote" | "a2a";

/** The states of an agent. */
export type AgentState = "offline" | "ready" | "busy" | "unavailable";

/** What the runtime gives an agent actor. */
export interface AgentInput {
  /** The runtime's agent id; a remote agent's bus id (`claude-code://qa`). */
  agentId: string;
  kind: AgentKind;
  /** For an ACP worker: the input of the worker actor it spawns as its child. */
  worker?: WorkerInput;
}

/** The agent's state besides its state value. */
export interface AgentContext extends AgentInput {
  /** Sessions of this agent running a prompt right now. */
  workInFlight: number;
  /** Why it became unavailable (e.g. "it crashed 5 times in a row"), once it is. */
  unavailableReason: string | null;
}

/** What tells an agent it can be reached or not: its worker child, or the bus. */
export type AgentPresenceEvent = { type: "AGENT.ONLINE" } | { type: "AGENT.OFFLINE" } | { type: "AGENT.UNAVAILABLE"; reason: string };

/** Events an agent accepts. */
export type AgentEvent =
  | AgentPresenceEvent
  /** One of its sessions started running a prompt. */
  | { type: "WORK.STARTED" }
  /** One of its sessions stopped running a prompt (answered, failed, cancelled or deleted). */
  | { type: "WORK.FINISHED" };

/** Events an agent emits (SPEC §5). `agent.offline` with `unavailable: true` says it will not come back. */
export type AgentEmitted =
  | { type: "agent.online" | "agent.busy" | "agent.ready"; agentId: string; kind: AgentKind }
  | { type: "agent.offline"; agentId: string; kind: AgentKind; unavailable: boolean };

/** An agent actor. */
export type AgentActorRef = ActorRefFrom<typeof agentMachine>;

/** The system id (and actor id) of an agent's actor. */
export function agentSystemId(agentId: string): string {
  return `agent:${agentId}`;
}

/** What losing its process or socket does, from `ready` or `busy`. */
const goOffline = { target: "offline", actions: { type: "announceOffline", params: { unavailable: false } } } as const;

/** The agent machine. The runtime provides its `worker` (with the process it runs) before use. */
export const agentMachine = setup({
  types: {
    context: {} as AgentContext,
    events: {} as AgentEvent,
    input: {} as AgentInput,
    emitted: {} as AgentEmitted,
  },
  actors: {
    worker: workerMachine,
  },
  guards: {
    runsInProcess: ({ context }) => context.kind === "in-process",
    hasWorkInFlight: ({ context }) => context.workInFlight > 0,
    hasNoWorkInFlight: ({ context }) => context.workInFlight === 0,
  },
  actions: {
    superviseWorker: enqueueActions(({ context, enqueue }) => {
      if (context.worker === undefined) return;
      const id = workerSystemId(context.worker.workerId);
      enqueue.spawnChild("worker", { id, systemId: id, input: context.worker });
    }),
    countWorkStarted: assign({ workInFlight: ({ context }) => context.workInFlight + 1 }),
    countWorkFinished: assign({ workInFlight: ({ context }) => context.workInFlight - 1 }),
    recordUnavailable: assign((_, params: { reason: string }) => ({ unavailableReason: params.reason })),
    announce: emit(({ context }, params: { type: "agent.online" | "agent.busy" | "agent.ready" }) => ({
      type: params.type,
      agentId: context.agentId,
      kind: context.kind,
    })),
    announceOffline: emit(({ context }, params: { unavailable: boolean }) => ({
      type: "agent.offline" as const,
      agentId: context.agentId,
      kind: context.kind,
      unavailable: params.unavailable,
    })),
  },
}).createMachine({
  id: "agent",
  context: ({ input }) => ({ ...input, workInFlight: 0, unavailableReason: null }),
  entry: "superviseWorker",
  initial: "offline",
  on: {
    "WORK.STARTED": { actions: "countWorkStarted" },
    "WORK.FINISHED": { actions: "countWorkFinished" },
    "AGENT.UNAVAILABLE": {
      target: ".unavailable",
      actions: [
        { type: "recordUnavailable", params: ({ event }) => ({ reason: event.reason }) },
        { type: "announceOffline", params: { unavailable: true } },
      ],
    },
  },
  states: {
    offline: {
      description: "Cannot be reached: a worker whose process is starting or restarting, a remote agent without a socket, an A2A agent not reached.",
      always: { guard: "runsInProcess", target: "ready", actions: { type: "announce", params: { type: "agent.online" } } },
      on: {
        "AGENT.ONLINE": { target: "ready", actions: { type: "announce", params: { type: "agent.online" } } },
      },
    },
    ready: {
      description: "Online with nothing running: takes new work.",
      always: { guard: "hasWorkInFlight", target: "busy", actions: { type: "announce", params: { type: "agent.busy" } } },
      on: {
        "AGENT.OFFLINE": goOffline,
      },
    },
    busy: {
      description: "Online and running prompts of its sessions (workInFlight of them); more may start.",
      always: { guard: "hasNoWorkInFlight", target: "ready", actions: { type: "announce", params: { type: "agent.ready" } } },
      on: {
        "AGENT.OFFLINE": goOffline,
      },
    },
    unavailable: {
      description: "Gave up (a worker whose process crashed too often): takes no more work.",
    },
  },
});
