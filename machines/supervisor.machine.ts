/**
 * The supervisor: the one actor per runtime that owns every bridge session.
 *
 * It enforces `maxSessions`, places each new session in a shard (see `session-shard.machine.ts`), counts
 * sessions as they are released, reaps shards that are full and empty, spawns one actor per worker process,
 * and on `SHUTDOWN` closes every session before reaching its final state (which stops the workers). It tells the runtime what happened through emitted events:
 * `session.created`, `session.rejected`, `session.closed` (with the reason the agent's `onSessionClose`
 * hook receives).
 */
import { assign, emit, enqueueActions, setup, stopChild } from "xstate";
import { sessionShardMachine, type SessionReleasedEvent, type SessionShardEvent, type SessionSpawnInput } from "./session-shard.machine.js";
import type { PromptError, SessionCloseReason, SessionInfo } from "./session.machine.js";
import { workerMachine, type WorkerInput } from "./worker.machine.js";

/** How full one shard is. A shard is sealed once `spawned` reaches `shardSize`. */
export interface ShardLoad {
  shardId: string;
  spawned: number;
  live: number;
}

/** What the runtime gives the supervisor. */
export interface SupervisorInput {
  maxSessions: number;
  /** Sessions per shard; bounds what one spawn costs. */
  shardSize: number;
}

/** The supervisor's state besides its state value. */
export interface SupervisorContext extends SupervisorInput {
  live: number;
  /** Live shards in creation order; the last one is where new sessions go. */
  shards: ShardLoad[];
}

/** Events the supervisor accepts. */
export type SupervisorEvent =
  | { type: "SESSION.CREATE"; session: SessionSpawnInput }
  | SessionReleasedEvent
  /** Spawns the actor of a worker process (its system id is `worker:<workerId>`). */
  | { type: "WORKER.REGISTER"; worker: WorkerInput }
  | { type: "SHUTDOWN" };

/** The system id of a worker's actor. */
export function workerSystemId(workerId: string): string {
  return `worker:${workerId}`;
}

/** Events the supervisor emits. */
export type SupervisorEmitted =
  | { type: "session.created"; sessionId: string; shardId: string }
  | { type: "session.rejected"; sessionId: string; error: PromptError }
  | { type: "session.closed"; session: SessionInfo; reason: Exclude<SessionCloseReason, "failed"> }
  | { type: "supervisor.stopped" };

function currentShard(context: SupervisorContext): ShardLoad | undefined {
  return context.shards[context.shards.length - 1];
}

/** The lowest `shard-N` no live shard uses: ids stay small and depend only on the live shards. */
function freeShardId(context: SupervisorContext): string {
  const used = new Set(context.shards.map((shard) => shard.shardId));
  let index = 0;
  while (used.has(`shard-${index}`)) index += 1;
  return `shard-${index}`;
}

function releasedShardIndex(context: SupervisorContext, event: SupervisorEvent): number {
  return event.type === "SESSION.RELEASED" ? context.shards.findIndex((shard) => shard.shardId === event.shardId) : -1;
}

/** The supervisor machine. */
export const supervisorMachine = setup({
  types: {
    context: {} as SupervisorContext,
    events: {} as SupervisorEvent,
    input: {} as SupervisorInput,
    emitted: {} as SupervisorEmitted,
  },
  actors: {
    sessionShard: sessionShardMachine,
    worker: workerMachine,
  },
  guards: {
    atCapacity: ({ context }) => context.live >= context.maxSessions,
    needsNewShard: ({ context }) => {
      const shard = currentShard(context);
      return shard === undefined || shard.spawned >= context.shardSize;
    },
    hasNoSessions: ({ context }) => context.live === 0,
    releasesLastSession: ({ context }) => context.live === 1,
    drainsSealedShard: ({ context, event }) => {
      const shard = context.shards[releasedShardIndex(context, event)];
      return shard !== undefined && shard.live === 1 && shard.spawned >= context.shardSize;
    },
  },
  actions: {
    openShard: enqueueActions(({ context, enqueue }) => {
      const shardId = freeShardId(context);
      enqueue.spawnChild("sessionShard", { id: shardId });
      enqueue.assign({ shards: [...context.shards, { shardId, spawned: 0, live: 0 }] });
    }),
    placeSession: enqueueActions(({ context, event, enqueue }) => {
      const shard = currentShard(context);
      if (event.type !== "SESSION.CREATE" || shard === undefined) return;
      enqueue.sendTo(shard.shardId, { type: "SHARD.SPAWN", session: event.session } satisfies SessionShardEvent);
      enqueue.assign({
        live: context.live + 1,
        shards: [...context.shards.slice(0, -1), { ...shard, spawned: shard.spawned + 1, live: shard.live + 1 }],
      });
      enqueue.emit({ type: "session.created", sessionId: event.session.sessionId, shardId: shard.shardId });
    }),
    rejectAtCapacity: emit(({ context, event }) => ({
      type: "session.rejected" as const,
      sessionId: event.type === "SESSION.CREATE" ? event.session.sessionId : "",
      error: {
        type: "CAPACITY",
        message: `Session capacity reached (maxSessions ${context.maxSessions})`,
        retryable: true,
        sessionValid: false,
        details: { maxSessions: context.maxSessions },
      },
    })),
    countRelease: enqueueActions(({ context, event, enqueue }) => {
      const index = releasedShardIndex(context, event);
      const shard = context.shards[index];
      if (event.type !== "SESSION.RELEASED" || shard === undefined) return;
      const shards = context.shards.slice();
      shards[index] = { ...shard, live: shard.live - 1 };
      enqueue.assign({ live: context.live - 1, shards });
      enqueue.emit({ type: "session.closed", session: event.session, reason: event.reason });
    }),
    reapShard: enqueueActions(({ context, event, enqueue }) => {
      const index = releasedShardIndex(context, event);
      const shard = context.shards[index];
      if (shard === undefined) return;
      enqueue(stopChild(shard.shardId));
      enqueue.assign({ shards: context.shards.filter((_, position) => position !== index) });
    }),
    spawnWorker: enqueueActions(({ event, enqueue }) => {
      if (event.type !== "WORKER.REGISTER") return;
      const id = workerSystemId(event.worker.workerId);
      enqueue.spawnChild("worker", { id, systemId: id, input: event.worker });
    }),
    broadcastShutdown: enqueueActions(({ context, enqueue }) => {
      for (const shard of context.shards) enqueue.sendTo(shard.shardId, { type: "SHUTDOWN" } satisfies SessionShardEvent);
    }),
    announceStopped: emit({ type: "supervisor.stopped" as const }),
  },
}).createMachine({
  id: "supervisor",
  context: ({ input }) => ({ ...input, live: 0, shards: [] }),
  initial: "running",
  states: {
    running: {
      description: "Accepts new sessions up to maxSessions.",
      on: {
        "SESSION.CREATE": [
          { guard: "atCapacity", actions: "rejectAtCapacity" },
          { guard: "needsNewShard", actions: ["openShard", "placeSession"] },
          { actions: "placeSession" },
        ],
        "SESSION.RELEASED": [
          { guard: "drainsSealedShard", actions: ["countRelease", "reapShard"] },
          { actions: "countRelease" },
        ],
        "WORKER.REGISTER": { actions: "spawnWorker" },
        SHUTDOWN: [
          { guard: "hasNoSessions", target: "stopped" },
          { target: "stopping", actions: "broadcastShutdown" },
        ],
      },
    },
    stopping: {
      description: "Closes every session with reason shutdown; the runtime sends no new ones.",
      on: {
        "SESSION.RELEASED": [
          { guard: "releasesLastSession", target: "stopped", actions: ["countRelease", "reapShard"] },
          { guard: "drainsSealedShard", actions: ["countRelease", "reapShard"] },
          { actions: "countRelease" },
        ],
      },
    },
    stopped: {
      description: "Every session is closed.",
      type: "final",
      entry: "announceStopped",
    },
  },
});
