/**
 * The session shard: a container of at most `shardSize` sessions under the supervisor.
 *
 * XState copies a parent's `children` record on every spawn and stop, so a parent with n children pays O(n)
 * per spawn. The supervisor therefore never holds sessions directly: it fills one shard at a time, and every
 * shard spawns and stops its own few sessions. The shard decides nothing; it spawns, stops and forwards.
 */
import { enqueueActions, sendParent, setup, stopChild, type AnyActorRef } from "xstate";
import { sessionMachine, type SessionEvent, type SessionInput, type SessionReleaseEvent } from "./session.machine.js";

/** A session input before the shard stamps its own id on it. */
export type SessionSpawnInput = Omit<SessionInput, "shardId">;

/** Events a shard accepts. */
export type SessionShardEvent =
  | { type: "SHARD.SPAWN"; session: SessionSpawnInput }
  | SessionReleaseEvent
  | { type: "SHUTDOWN" };

/** The event a shard sends the supervisor once one of its sessions is stopped and deleted. */
export interface SessionReleasedEvent extends Omit<SessionReleaseEvent, "type"> {
  type: "SESSION.RELEASED";
  shardId: string;
}

/** The shard machine. `session` is the session logic (the runtime provides its effects). */
export const sessionShardMachine = setup({
  types: {
    events: {} as SessionShardEvent,
  },
  actors: {
    session: sessionMachine,
  },
}).createMachine({
  id: "sessionShard",
  initial: "serving",
  states: {
    serving: {
      description: "Spawns the sessions the supervisor places here and stops them when they are released.",
      on: {
        "SHARD.SPAWN": {
          actions: enqueueActions(({ enqueue, event, self }) => {
            const { sessionId } = event.session;
            enqueue.spawnChild("session", {
              id: sessionId,
              systemId: sessionId,
              input: { ...event.session, shardId: self.id },
            });
          }),
        },
        "SESSION.RELEASE": {
          actions: [
            stopChild(({ event }) => event.session.sessionId),
            sendParent(({ event, self }) => ({
              type: "SESSION.RELEASED",
              session: event.session,
              reason: event.reason,
              shardId: self.id,
            }) satisfies SessionReleasedEvent),
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
