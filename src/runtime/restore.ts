/**
 * Bringing an actor back from the store in the state it was in, with its delays resumed.
 *
 * XState restores a snapshot without running the entry actions of its states, and `after` delays are entry
 * actions (a delayed `raise` that the state's exit cancels): a restored actor would wait forever in a state
 * whose timeout should fire. It also keeps no record of when a delay was armed. So troupe stores absolute
 * times (a session's `createdAt` and `lastActivityAt`, a step's `stepEnteredAt`, an ended workflow's
 * `evictAt`), and on restore schedules each `after` delay of the active states itself, with the same event and
 * id that XState gives it (from the state node's public `after` list), due when it was due before the restart.
 */
import type { AnyActorScope, AnyMachineSnapshot, AnyStateMachine, AnyStateNode, InputFrom } from "xstate";
import type { Clock } from "../clock.js";
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";

/** A restored snapshot, and when each of its active states' `after` delays falls due (epoch ms). */
export interface Restoration {
  snapshot: AnyMachineSnapshot;
  /** The due time of the delay `delay` (a delay name, or milliseconds) armed in one of the active states. */
  dueAt(delay: string | number): number;
}

/** The state nodes a snapshot's value makes active, the root first. */
function activeStateNodes(node: AnyStateNode, value: unknown): AnyStateNode[] {
  if (typeof value === "string") {
    const child = node.states[value];
    return child === undefined ? [node] : [node, child];
  }
  if (value === null || typeof value !== "object") return [node];
  const nodes = [node];
  for (const [key, nested] of Object.entries(value)) {
    const child = node.states[key];
    if (child !== undefined) nodes.push(...activeStateNodes(child, nested));
  }
  return nodes;
}

/**
 * Schedules the `after` delays of a restored actor's active states, each with what is left of it (0 when it is
 * overdue: it fires at once), in the order they fall due, so that overdue ones fire in the order they would
 * have. Call it once the actor runs (XState's scheduler needs it registered).
 */
export function resumeDelays(actorScope: AnyActorScope, machine: AnyStateMachine, restoration: Restoration, clock: Clock): void {
  const { snapshot } = restoration;
  if (snapshot.status !== "active") return;
  const due: Array<{ eventType: string; dueAt: number }> = [];
  for (const stateNode of activeStateNodes(machine.root, snapshot.value)) {
    for (const { delay, eventType } of stateNode.after) {
      if (typeof delay === "string" || typeof delay === "number") due.push({ eventType: eventType as string, dueAt: restoration.dueAt(delay) });
    }
  }
  const now = clock.now();
  const { self, system } = actorScope;
  for (const { eventType, dueAt } of due.sort((left, right) => left.dueAt - right.dueAt)) {
    const remainingMs = Math.min(MAX_TIMER_DELAY_MS, Math.max(0, dueAt - now));
    // XState arms an `after` delay as a `raise` of this event with this id, and its state's exit cancels that id.
    system.scheduler.schedule(self, self, { type: eventType }, remainingMs, eventType);
  }
}

/**
 * The logic of `machine`, whose actors start from a restoration when `restorationOf` gives one for their input
 * (and `actorScope`, to restore children), and as new actors otherwise. Spawn or invoke it in place of
 * `machine`: a restored actor keeps its id and system id, runs, and has its delays resumed.
 */
export function restorableLogic<TMachine extends AnyStateMachine>(
  machine: TMachine,
  restorationOf: (input: InputFrom<TMachine>, actorScope: AnyActorScope) => Restoration | undefined,
  clock: Clock,
): TMachine {
  const logic = Object.create(machine) as TMachine;
  logic.getInitialSnapshot = (actorScope, input) => {
    const restoration = restorationOf(input as InputFrom<TMachine>, actorScope as AnyActorScope);
    if (restoration === undefined) return machine.getInitialSnapshot(actorScope, input);
    // Deferred effects run when the actor starts, as the entry actions of a new actor do.
    actorScope.defer(() => resumeDelays(actorScope as AnyActorScope, machine, restoration, clock));
    return restoration.snapshot;
  };
  return logic;
}
