/**
 * The supervisor: the one actor per runtime that owns every bridge session.
 *
 * It enforces `maxSessions`, places each new session in a shard (see `session-shard.machine.ts`), counts
 * sessions as they are released, reaps shards that are full and empty, spawns the four pools that own workflow
 * sessions, message deliveries, agents and conversations (`pool:workflow`, `pool:delivery`, `pool:agent`,
 * `pool:conversation`, see `pool.machine.ts`; one actor `agent:<id>` per agent, see `agent.machine.ts`; one
 * `conversation:…` per conversation, see `conversation.machine.ts`), and on `SHUTDOWN` closes every session, one shard
 * per `SHUTDOWN.NEXT`, before reaching its final state (which stops the pools, the agents and their workers).
 * Creating a session costs O(1) here: only the current shard's load changes. It tells the runtime what
 * happened through emitted events:
 * `session.created`, `session.rejected`, `session.closed` (with the reason the agent's `onSessionClose`
 * hook receives).
 */
import { emit, enqueueActions, setup, spawnChild, stopChild } from "xstate";
import { poolMachine, poolSystemId } from "./pool.machine.js";
import { sessionShardMachine, type SessionReleasedEvent, type SessionShardEvent, type SessionSpawnInput } from "./session-shard.machine.js";
import type { PromptError, SessionCloseReason, SessionInfo } from "./session.machine.js";
import {
  drainsFullShard,
  liveShards,
  needsNewShard,
  openShard,
  placeChild,
  releaseChild,
  shardLoadOf,
  shardLocalId,
  shardSpawnOptions,
  withoutShard,
  type ShardLoad,
  type ShardLoads,
} from "./shard-loads.js";

/** What the runtime gives the supervisor. */
export interface SupervisorInput {
  maxSessions: number;
  /** Sessions per shard; bounds what one spawn costs (pools of workflows and deliveries use it too). */
  shardSize: number;
  /** Workflow sessions alive at once, ended-but-retained ones included; 0 is unbounded. */
  maxWorkflows: number;
}

/** The supervisor's state besides its state value. */
export interface SupervisorContext extends SupervisorInput {
  live: number;
  /** The shard new sessions go to; creating a session touches only this, in O(1). */
  current: ShardLoad | null;
  /** Full shards that still hold sessions, each at the index of its number (see `ShardLoads`). */
  sealed: ShardLoads["sealed"];
}

/** Events the supervisor accepts. */
export type SupervisorEvent =
  | { type: "SESSION.CREATE"; session: SessionSpawnInput }
  | SessionReleasedEvent
  | { type: "SHUTDOWN" }
  /** While stopping: close the sessions of one more shard (the runtime paces these, yielding in between). */
  | { type: "SHUTDOWN.NEXT" };

/** Events the supervisor emits. */
export type SupervisorEmitted =
  | { type: "session.created"; sessionId: string; shardId: string }
  | { type: "session.rejected"; sessionId: string; error: PromptError }
  | { type: "session.closed"; session: SessionInfo; reason: Exclude<SessionCloseReason, "failed"> }
  | { type: "supervisor.stopped" };

/** What a release tells the actions that count it. */
type ReleaseParams = Omit<SessionReleasedEvent, "type">;

/** The params of the actions that take a release: the event without its type. */
const countRelease = {
  type: "countRelease",
  params: ({ event }: { event: SessionReleasedEvent }) => ({ session: event.session, reason: event.reason, shardId: event.shardId }),
} as const;
const reapShard = { type: "reapShard", params: ({ event }: { event: SessionReleasedEvent }) => ({ shardId: event.shardId }) } as const;

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
    pool: poolMachine,
  },
  guards: {
    atCapacity: ({ context }) => context.live >= context.maxSessions,
    needsNewShard: ({ context }) => needsNewShard(context, context.shardSize),
    hasNoSessions: ({ context }) => context.live === 0,
    releasesLastSession: ({ context }) => context.live === 1,
    drainsFullShard: ({ context }, params: { shardId: string }) => drainsFullShard(context, params.shardId, context.shardSize),
  },
  actions: {
    openShard: enqueueActions(({ context, enqueue }) => {
      const opened = openShard(context, "shard");
      const { shardId } = opened.current as ShardLoad;
      enqueue.spawnChild("sessionShard", shardSpawnOptions(shardId));
      enqueue.assign(opened);
    }),
    placeSession: enqueueActions(({ context, enqueue }, params: { session: SessionSpawnInput }) => {
      const shard = context.current;
      // openShard runs first whenever there is no current shard.
      if (shard === null) return;
      enqueue.sendTo(shardLocalId(shard.shardId), { type: "SHARD.SPAWN", session: params.session, slot: shard.spawned } satisfies SessionShardEvent);
      enqueue.assign({ live: context.live + 1, ...placeChild(context) });
      enqueue.emit({ type: "session.created", sessionId: params.session.sessionId, shardId: shard.shardId });
    }),
    rejectAtCapacity: emit(({ context }, params: { sessionId: string }) => ({
      type: "session.rejected" as const,
      sessionId: params.sessionId,
      error: {
        type: "CAPACITY",
        message: `Session capacity reached (maxSessions ${context.maxSessions})`,
        retryable: true,
        sessionValid: false,
        details: { maxSessions: context.maxSessions },
      },
    })),
    countRelease: enqueueActions(({ context, enqueue }, params: ReleaseParams) => {
      if (shardLoadOf(context, params.shardId) === undefined) return;
      enqueue.assign({ live: context.live - 1, ...releaseChild(context, params.shardId) });
      enqueue.emit({ type: "session.closed", session: params.session, reason: params.reason });
    }),
    reapShard: enqueueActions(({ context, enqueue }, params: { shardId: string }) => {
      enqueue(stopChild(shardLocalId(params.shardId)));
      enqueue.assign(withoutShard(context, params.shardId));
    }),
    shutDownNextShard: enqueueActions(({ context, enqueue }) => {
      const next = liveShards(context).find((shard) => shard.live > 0);
      if (next !== undefined) enqueue.sendTo(shardLocalId(next.shardId), { type: "SHUTDOWN" } satisfies SessionShardEvent);
    }),
    announceStopped: emit({ type: "supervisor.stopped" as const }),
  },
}).createMachine({
  id: "supervisor",
  context: ({ input }) => ({ ...input, live: 0, current: null, sealed: [] }),
  // Workflow sessions, message deliveries, agents and conversations live in four pools, sharded like sessions (see pool.machine.ts).
  entry: [
    spawnChild("pool", {
      id: poolSystemId("workflow"),
      systemId: poolSystemId("workflow"),
      input: ({ context }) => ({ kind: "workflow" as const, shardSize: context.shardSize, capacity: context.maxWorkflows }),
    }),
    spawnChild("pool", {
      id: poolSystemId("delivery"),
      systemId: poolSystemId("delivery"),
      input: ({ context }) => ({ kind: "delivery" as const, shardSize: context.shardSize, capacity: 0 }),
    }),
    spawnChild("pool", {
      id: poolSystemId("agent"),
      systemId: poolSystemId("agent"),
      input: ({ context }) => ({ kind: "agent" as const, shardSize: context.shardSize, capacity: 0 }),
    }),
    // Unbounded here: each conversation holds a bridge session, which maxSessions bounds.
    spawnChild("pool", {
      id: poolSystemId("conversation"),
      systemId: poolSystemId("conversation"),
      input: ({ context }) => ({ kind: "conversation" as const, shardSize: context.shardSize, capacity: 0 }),
    }),
  ],
  initial: "running",
  states: {
    running: {
      description: "Accepts new sessions up to maxSessions.",
      on: {
        "SESSION.CREATE": [
          { guard: "atCapacity", actions: { type: "rejectAtCapacity", params: ({ event }) => ({ sessionId: event.session.sessionId }) } },
          { guard: "needsNewShard", actions: ["openShard", { type: "placeSession", params: ({ event }) => ({ session: event.session }) }] },
          { actions: { type: "placeSession", params: ({ event }) => ({ session: event.session }) } },
        ],
        "SESSION.RELEASED": [
          { guard: { type: "drainsFullShard", params: ({ event }) => ({ shardId: event.shardId }) }, actions: [countRelease, reapShard] },
          { actions: countRelease },
        ],
        SHUTDOWN: [{ guard: "hasNoSessions", target: "stopped" }, { target: "stopping" }],
      },
    },
    stopping: {
      description: "Closes the sessions one shard per SHUTDOWN.NEXT (reason shutdown), so the runtime can yield between shards; it sends no new sessions.",
      on: {
        "SHUTDOWN.NEXT": { actions: "shutDownNextShard" },
        "SESSION.RELEASED": [
          { guard: "releasesLastSession", target: "stopped", actions: [countRelease, reapShard] },
          { guard: { type: "drainsFullShard", params: ({ event }) => ({ shardId: event.shardId }) }, actions: [countRelease, reapShard] },
          { actions: countRelease },
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
