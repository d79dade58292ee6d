/**
 * An index over XState's scheduler, so that stopping an actor costs what that actor scheduled.
 *
 * XState 5's `scheduler.cancelAll(actor)` (run whenever any actor stops, including every finished prompt)
 * walks every delayed event of the whole system. With two expiry delays per session, each stop would cost
 * O(sessions). This keeps, per actor, the ids it scheduled and cancels only those. The original scheduler
 * still owns the timers; only the bookkeeping is added.
 */
import type { AnyActorRef } from "xstate";

let generatedIds = 0;

/** Replaces `system.scheduler` with one whose `cancelAll` is proportional to the actor's own delays. */
export function indexScheduler(system: AnyActorRef["system"]): void {
  const original = system.scheduler;
  const idsByActor = new Map<AnyActorRef, Set<string>>();
  system.scheduler = {
    schedule(source, target, event, delay, id) {
      const scheduledId = id ?? `troupe.delay.${generatedIds++}`;
      original.schedule(source, target, event, delay, scheduledId);
      let ids = idsByActor.get(source);
      if (ids === undefined) {
        ids = new Set();
        idsByActor.set(source, ids);
      }
      ids.add(scheduledId);
    },
    cancel(source, id) {
      original.cancel(source, id);
      idsByActor.get(source)?.delete(id);
    },
    cancelAll(actorRef) {
      const ids = idsByActor.get(actorRef);
      if (ids === undefined) return;
      idsByActor.delete(actorRef);
      for (const id of ids) original.cancel(actorRef, id);
    },
  };
}
