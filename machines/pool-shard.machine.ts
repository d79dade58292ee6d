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
import { deliveryMachine, type DeliveryInput } from "./delivery.machine.js";

/** The logic a pool child is spawned from: a name registered in the shard (`"delivery"`, `"agent"`), or logic built per child (a workflow). */
export type PoolChildSource = "delivery" | "agent" | AnyActorLogic;

/** What a child's final output may say about itself. */
export interface PoolChildOutput {
  /** Keep the ended child this long before reaping it (0 or absent: reap at once). */
  retainMs?: number;
}

/** Events a pool shard accepts. */
export type PoolShardEvent =
  | { type: "SHARD.SPAWN"; childId: string; src: PoolChildSource; input: unknown }
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

function retainMsOf(output: unknown): number {
  const retainMs = (output as PoolChildOutput | undefined)?.retainMs;
  return typeof retainMs === "number" && retainMs > 0 ? retainMs : 0;
}

/** The pool shard machine. */
export const poolShardMachine = setup({
  types: {
    events: {} as PoolShardEvent,
  },
  actors: {
    delivery: deliveryMachine,
    agent: agentMachine,
  },
  actions: {
    spawn: enqueueActions(({ enqueue }, params: { childId: string; src: PoolChildSource; input: unknown }) => {
      const options = { id: params.childId, systemId: params.childId };
      // A name is spawned from the logic registered above (restorable); built logic (a workflow) as it is.
      if (params.src === "delivery") enqueue.spawnChild("delivery", { ...options, input: params.input as DeliveryInput });
      else if (params.src === "agent") enqueue.spawnChild("agent", { ...options, input: params.input as AgentInput });
      else (enqueue.spawnChild as unknown as (src: AnyActorLogic, options: { id: string; systemId: string; input: unknown }) => void)(params.src, { ...options, input: params.input });
    }),
    /** Reaps one child (`childId`), or every child without it; the ending defaults to the child's own. */
    reap: enqueueActions(({ enqueue, self }, params: { childId?: string; ending?: PoolChildEnding }) => {
      const children = self.getSnapshot().children as Record<string, AnyActorRef | undefined>;
      const childIds = params.childId === undefined ? Object.keys(children) : [params.childId];
      for (const childId of childIds) {
        const child = children[childId];
        if (child === undefined) continue;
        const ending = params.ending ?? endingOf(child);
        enqueue(cancel(retentionEvictId(childId)));
        enqueue(stopChild(childId));
        enqueue.sendParent({ type: "CHILD.RELEASED", shardId: self.id, childId, ending } satisfies ChildReleasedEvent);
      }
    }),
    retain: enqueueActions(({ enqueue }, params: { childId: string; retainMs: number }) => {
      enqueue.raise({ type: "SHARD.EVICT", childId: params.childId }, { id: retentionEvictId(params.childId), delay: params.retainMs });
    }),
  },
  guards: {
    asksToBeRetained: (_, params: { output: unknown }) => retainMsOf(params.output) > 0,
  },
}).createMachine({
  id: "poolShard",
  initial: "serving",
  states: {
    serving: {
      description: "Spawns the children its pool places here and reaps them when they end or are evicted.",
      on: {
        "SHARD.SPAWN": {
          actions: { type: "spawn", params: ({ event }) => ({ childId: event.childId, src: event.src, input: event.input }) },
        },
        "xstate.done.actor.*": [
          {
            guard: { type: "asksToBeRetained", params: ({ event }) => ({ output: event.output }) },
            actions: { type: "retain", params: ({ event }) => ({ childId: event.actorId, retainMs: retainMsOf(event.output) }) },
          },
          { actions: { type: "reap", params: ({ event }) => ({ childId: event.actorId, ending: { status: "done" as const, output: event.output } }) } },
        ],
        "xstate.error.actor.*": {
          actions: { type: "reap", params: ({ event }) => ({ childId: event.actorId, ending: { status: "error" as const, error: event.error } }) },
        },
        "SHARD.EVICT": { actions: { type: "reap", params: ({ event }) => ({ childId: event.childId }) } },
        "SHARD.CLEAR": { actions: { type: "reap", params: {} } },
      },
    },
  },
});
