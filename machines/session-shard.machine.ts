/**
 * The session shard: a container of at most `shardSize` sessions under the supervisor.
 *
 * XState copies a parent's `children` record on every spawn and stop, so a parent with n children pays O(n)
 * per spawn. The supervisor therefore never holds sessions directly: it fills one shard at a time, and every
 * shard spawns and stops its own few sessions. The shard decides nothing; it spawns, stops and forwards.
 */
import { enqueueActions, sendParent, setup, stopChild, type AnyActorRef } from "xstate";
import { sessionMachine, type SessionEvent, type SessionInput, type SessionReleaseEvent } from "./session.machine.js";
import type { ShardInput } from "./shard-loads.js";

/** A session input before the shard stamps its own id on it. */
export type SessionSpawnInput = Omit<SessionInput, "shardId">;

/** Events a shard accepts. */
export type SessionShardEvent =
  /** `slot`: the session's place in this shard (0 to shardSize - 1), its local id. */
  { type: "SHARD.SPAWN"; session: SessionSpawnInput; slot: number } | SessionReleaseEvent | { type: "SHUTDOWN" };

/** The event a shard sends the supervisor once one of its sessions is stopped and deleted. */
export interface SessionReleasedEvent extends Omit<SessionReleaseEvent, "type"> {
  type: "SESSION.RELEASED";
  shardId: string;
}

/**
 * A session's local id is its slot in the shard, not its session id (which is its system id, by which
 * everything else names it). A bare index: V8 keeps integer keys as elements, so XState's copy of the
 * children on every spawn and stop is cheap, and the shard's `children` record takes no hidden class per
 * session (unique string keys made one for every session ever spawned in the shard).
 */
function slotIdOf(slot: number): string {
  return String(slot);
}

/**
 * The input of a session spawned here. Every field is named: XState keeps the input as long as the session
 * lives, and V8 keeps the fields of a literal built by a spread in a second array (about 90 bytes more).
 */
function sessionInputOf(session: SessionSpawnInput, shardId: string): SessionInput {
  return {
    sessionId: session.sessionId,
    agentId: session.agentId,
    metadata: session.metadata,
    shardId,
    createdAt: session.createdAt,
    ttlMs: session.ttlMs,
    idleMs: session.idleMs,
    maxQueuedPrompts: session.maxQueuedPrompts,
    historyWindow: session.historyWindow,
  };
}

/** `session` if it is a child of `shard` (found by its system id: its local id is its slot), else `""`, which stops nothing. */
function childOf(shard: AnyActorRef, session: AnyActorRef | undefined): AnyActorRef | "" {
  const { children } = shard.getSnapshot() as { children: Record<string, AnyActorRef | undefined> };
  return session !== undefined && children[session.id] === session ? session : "";
}

/** The shard machine. `session` is the session logic (the runtime provides its effects). */
export const sessionShardMachine = setup({
  types: {
    context: {} as ShardInput,
    events: {} as SessionShardEvent,
    input: {} as ShardInput,
  },
  actors: {
    session: sessionMachine,
  },
}).createMachine({
  id: "sessionShard",
  context: ({ input }) => ({ shardId: input.shardId }),
  initial: "serving",
  states: {
    serving: {
      description: "Spawns the sessions the supervisor places here and stops them when they are released.",
      on: {
        "SHARD.SPAWN": {
          actions: enqueueActions(({ context, enqueue, event }) => {
            const { sessionId } = event.session;
            enqueue.spawnChild("session", {
              id: slotIdOf(event.slot),
              systemId: sessionId,
              input: sessionInputOf(event.session, context.shardId),
            });
          }),
        },
        "SESSION.RELEASE": {
          actions: [
            stopChild(({ event, self, system }) => childOf(self, system.get(event.session.sessionId) as AnyActorRef | undefined)),
            sendParent(
              ({ context, event }) =>
                ({
                  type: "SESSION.RELEASED",
                  session: event.session,
                  reason: event.reason,
                  shardId: context.shardId,
                }) satisfies SessionReleasedEvent,
            ),
          ],
        },
        SHUTDOWN: {
          actions: enqueueActions(({ enqueue, self }) => {
            const children: Record<string, AnyActorRef | undefined> = self.getSnapshot().children;
            for (const child of Object.values(children)) {
              if (child) enqueue.sendTo(child, { type: "CLOSE", reason: "shutdown" } satisfies SessionEvent);
            }
          }),
        },
      },
    },
  },
});
