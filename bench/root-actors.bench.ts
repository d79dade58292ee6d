/**
 * The floor a session is compared with: a bare XState root actor of a 4-state machine, started and idle.
 *
 * It has no context, no timers, no parent and no inspection, so heap and creation time per actor are what
 * XState itself costs; a session's figures divided by these say what troupe adds on top.
 */
import { createActor, createMachine, type AnyActor } from "xstate";
import { formatCount, fullOrQuick, heapUsedAfterGc, progress } from "./measure.js";

/** How many root actors are created for each measurement. */
/** The same counts as the sessions bench's heap sizes, so that the report sets them side by side. */
const ROOT_ACTOR_COUNTS = fullOrQuick([10_000, 100_000], [200, 400]);
const WARMUP_ACTORS = fullOrQuick(2_000, 200);

/** Heap and creation time per root actor, over `actors` created and held at once. */
export interface RootActorCost {
  actors: number;
  bytesPerActor: number;
  /** `createActor(...).start()`, mean over all of them. */
  microsPerCreation: number;
}

/** Four states and the events between them, the shape of a session without any of its work. */
const fourStateMachine = createMachine({
  id: "fourState",
  initial: "active",
  states: {
    active: { on: { PROMPT: "busy" } },
    busy: { on: { DONE: "idle", FAIL: "failed" } },
    idle: { on: { PROMPT: "busy" } },
    failed: {},
  },
});

function measure(count: number): RootActorCost {
  const actors: AnyActor[] = [];
  const heapBefore = heapUsedAfterGc();
  const startedAt = performance.now();
  for (let index = 0; index < count; index += 1) actors.push(createActor(fourStateMachine).start());
  const elapsedMs = performance.now() - startedAt;
  const bytesPerActor = (heapUsedAfterGc() - heapBefore) / count;
  for (const actor of actors) actor.stop();
  return { actors: count, bytesPerActor, microsPerCreation: (elapsedMs * 1000) / count };
}

/** Runs the root actor bench. */
export function runRootActorsBench(): RootActorCost[] {
  measure(WARMUP_ACTORS);
  return ROOT_ACTOR_COUNTS.map((count) => {
    const cost = measure(count);
    progress(`root actors: ${formatCount(count)} idle, ${(cost.bytesPerActor / 1024).toFixed(2)} KiB and ${cost.microsPerCreation.toFixed(1)} µs each`);
    return cost;
  });
}
