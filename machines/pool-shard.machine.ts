/**
 * A pool shard: a container of at most `shardSize` children of one kind (workflows, deliveries, agents) under a pool.
 *
 * Like the session shard, it exists because XState copies a parent's `children` record on every spawn and
 * stop: a few children per shard keep every spawn cheap. A child that reaches a final state is reaped here:
 * at once, or after the `retainMs` its output asks for (an ended workflow stays readable for
 * `workflowRetentionMs`). A child that fails is reaped at once with its error. `SHARD.EVICT` reaps a child
 * early (`DELETE /sessions/:id`), `SHARD.CLEAR` every child (its owner stops). The shard tells its pool
 * about each child it reaped with `CHILD.RELEASED`, carrying the child's final output, which is all the
 * runtime keeps of it.
 */
import { cancel, enqueueActions, setup, stopChild, type AnyActorLogic, type AnyActorRef } from "xstate";
import { agentMachine, type AgentInput } from "./agent.machine.js";
import { deliveryMachine } from "./delivery.machine.js";
import type { ShardInput } from "./shard-loads.js";

/** The logic a pool child is spawned from: a name registered in the shard (`"delivery"`, `"agent"`), or logic built per child (a workflow). */
export type PoolChildSource = "delivery" | "agent" | AnyActorLogic;

/** What a child's final output may say about itself. */
export interface PoolChildOutput {
  /** Keep the ended child this long before reaping it (0 or absent: reap at once). */
  retainMs?: number;
}

/** Events a pool shard accepts. */
export type PoolShardEvent =
  /** `slot`: the child's place in this shard (0 to shardSize - 1), its local id. */
  | { type: "SHARD.SPAWN"; childId: string; slot: number; src: PoolChildSource; input: unknown }
  | { type: "SHARD.EVICT"; childId: string }
  | { type: "SHARD.CLEAR" }
  | { type: "xstate.done.actor.*"; actorId: string; output: unknown }
  | { type: "xstate.error.actor.*"; actorId: string; error: unknown };

/** How a child ended, as its shard reports it. */
export type PoolChildEnding = { status: "done"; output: unknown } | { status: "error"; error: unknown } | { status: "stopped" };

/** The event a shard sends its pool once it has reaped a child. */
export interface ChildReleasedEvent {
  type: "CHILD.RELEASED";
  shardId: string;
  childId: string;
  ending: PoolChildEnding;
}

/** The delayed self-event that reaps an ended child after its retention; its id is the child's. */
function retentionEvictId(childId: string): string {
  return `evict:${childId}`;
}

/** The ending of a child that is still in the shard (ended and retained, or alive). */
function endingOf(child: AnyActorRef): PoolChildEnding {
  const snapshot = child.getSnapshot() as { status: string; output?: unknown; error?: unknown };
  if (snapshot.status === "done") return { status: "done", output: snapshot.output };
  if (snapshot.status === "error") return { status: "error", error: snapshot.error };
  return { status: "stopped" };
}

/**
 * A child's local id is its slot, not its system id: XState memoizes, per state node, the transitions of every
 * event type it has seen, and a child that ends sends `xstate.done.actor.<its id>`. With unique ids every
 * message and workflow would add an entry to the shard machine's memo for the life of the process; with
 * slots there are at most `shardSize` such types.
 */
function slotIdOf(slot: number): string {
  // A bare index: V8 keeps integer keys as elements, so XState's copy of the children on each spawn and stop is cheap.
  return String(slot);
}

/** The id the runtime knows a child by: its system id. */
function childIdOf(child: AnyActorRef): string {
  return (child as AnyActorRef & { systemId?: string }).systemId ?? child.id;
}

/**
 * The children of a shard by slot; `select` picks them by slot (looked up: every child that ends is reaped by its
 * slot), by child id, or all.
 */
function childrenOf(self: AnyActorRef, select: { slot?: string; childId?: string }): Array<[string, AnyActorRef]> {
  const bySlot = (self.getSnapshot() as { children: Record<string, AnyActorRef | undefined> }).children;
  if (select.slot !== undefined) {
    const child = bySlot[select.slot];
    return child === undefined ? [] : [[select.slot, child]];
  }
  const children = Object.entries(bySlot).filter((entry): entry is [string, AnyActorRef] => entry[1] !== undefined);
  if (select.childId !== undefined) return children.filter(([, child]) => childIdOf(child) === select.childId);
  return children;
}

function retainMsOf(output: unknown): number {
  const retainMs = (output as PoolChildOutput | undefined)?.retainMs;
  return typeof retainMs === "number" && retainMs > 0 ? retainMs : 0;
}

/** The pool shard machine. */
export const poolShardMachine = setup({
  types: {
    context: {} as ShardInput,
    events: {} as PoolShardEvent,
    input: {} as ShardInput,
  },
  actors: {
    delivery: deliveryMachine,
    agent: agentMachine,
  },
  actions: {
    spawn: enqueueActions(({ enqueue }, params: { childId: string; slot: number; src: PoolChildSource; input: unknown }) => {
      const options = { id: slotIdOf(params.slot), systemId: params.childId };
      // A name is spawned from the logic registered above (restorable); built logic (a workflow) as it is.
      // A delivery starts without a message (its owner hands it one): it takes no input.
      if (params.src === "delivery") enqueue.spawnChild("delivery", options);
      else if (params.src === "agent") enqueue.spawnChild("agent", { ...options, input: params.input as AgentInput });
      else
        (enqueue.spawnChild as unknown as (src: AnyActorLogic, options: { id: string; systemId: string; input: unknown }) => void)(params.src, {
          ...options,
          input: params.input,
        });
    }),
    /**
     * Reaps the child in `slot`, or the child `childId`, or every child; the ending defaults to the child's own.
     * A child reaped with the ending it just reached was never retained: it has no retention to cancel.
     */
    reap: enqueueActions(({ context, enqueue, self }, params: { slot?: string; childId?: string; ending?: PoolChildEnding }) => {
      for (const [slot, child] of childrenOf(self, params)) {
        const childId = childIdOf(child);
        if (params.ending === undefined) enqueue(cancel(retentionEvictId(childId)));
        enqueue(stopChild(slot));
        enqueue.sendParent({
          type: "CHILD.RELEASED",
          shardId: context.shardId,
          childId,
          ending: params.ending ?? endingOf(child),
        } satisfies ChildReleasedEvent);
      }
    }),
    retain: enqueueActions(({ enqueue, self }, params: { slot: string; retainMs: number }) => {
      for (const [, child] of childrenOf(self, { slot: params.slot })) {
        const childId = childIdOf(child);
        enqueue.raise({ type: "SHARD.EVICT", childId }, { id: retentionEvictId(childId), delay: params.retainMs });
      }
    }),
  },
  guards: {
    asksToBeRetained: (_, params: { output: unknown }) => retainMsOf(params.output) > 0,
  },
}).createMachine({
  id: "poolShard",
  context: ({ input }) => ({ shardId: input.shardId }),
  initial: "serving",
  states: {
    serving: {
      description: "Spawns the children its pool places here and reaps them when they end or are evicted.",
      on: {
        "SHARD.SPAWN": {
          actions: { type: "spawn", params: ({ event }) => ({ childId: event.childId, slot: event.slot, src: event.src, input: event.input }) },
        },
        "xstate.done.actor.*": [
          {
            guard: { type: "asksToBeRetained", params: ({ event }) => ({ output: event.output }) },
            actions: { type: "retain", params: ({ event }) => ({ slot: event.actorId, retainMs: retainMsOf(event.output) }) },
          },
          { actions: { type: "reap", params: ({ event }) => ({ slot: event.actorId, ending: { status: "done" as const, output: event.output } }) } },
        ],
        "xstate.error.actor.*": {
          actions: { type: "reap", params: ({ event }) => ({ slot: event.actorId, ending: { status: "error" as const, error: event.error } }) },
        },
        "SHARD.EVICT": { actions: { type: "reap", params: ({ event }) => ({ childId: event.childId }) } },
        "SHARD.CLEAR": { actions: { type: "reap", params: {} } },
      },
    },
  },
});
