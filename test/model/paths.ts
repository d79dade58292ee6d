/**
 * The path families the model-based tests walk: @xstate/graph's shortest and simple paths, and one path per
 * edge of the graph (the shortest path to the edge's source, then the edge). Simple paths never repeat a
 * state, so self-loops (a rejected prompt, a cancel with nothing in flight) and edges back to a visited
 * state only appear in the edge paths.
 */
import { getAdjacencyMap, getShortestPaths, getSimplePaths, type AdjacencyMap, type StatePath, type TraversalOptions } from "@xstate/graph";
import { initialTransition, transition, type AnyStateMachine, type EventFromLogic, type InputFrom, type SnapshotFrom } from "xstate";

type SnapshotOf<M extends AnyStateMachine> = ReturnType<M["transition"]>;
type PathOf<M extends AnyStateMachine> = StatePath<SnapshotOf<M>, EventFromLogic<M>>;

/** The paths of one machine, by family. */
export interface PathFamilies<M extends AnyStateMachine> {
  shortest: Array<PathOf<M>>;
  simple: Array<PathOf<M>>;
  edges: Array<PathOf<M>>;
}

/** Generates the three path families of a machine. `options.serializeState` decides what counts as one state. */
export function generatePaths<M extends AnyStateMachine>(
  machine: M,
  options: TraversalOptions<SnapshotOf<M>, EventFromLogic<M>, InputFrom<M>>,
  /** `simple: false` skips simple paths, for graphs that have too many to enumerate. */
  { simple: withSimple = true }: { simple?: boolean } = {},
): PathFamilies<M> {
  const stateKey = options.serializeState ?? ((snapshot: SnapshotOf<M>) => JSON.stringify(snapshot));
  const shortest = getShortestPaths(machine, options);
  const simple = withSimple ? getSimplePaths(machine, options) : [];
  const toState = new Map(shortest.map((path) => [stateKey(path.state, undefined), path]));
  // getAdjacencyMap's declared types do not follow a generic machine; the map it returns does.
  const adjacency = getAdjacencyMap(machine, options as never) as AdjacencyMap<SnapshotOf<M>, EventFromLogic<M>>;
  const edges: Array<PathOf<M>> = [];
  for (const [serialized, { transitions }] of Object.entries(adjacency)) {
    const head = toState.get(serialized);
    if (head === undefined) continue;
    for (const { event, state } of Object.values<{ event: EventFromLogic<M>; state: SnapshotOf<M> }>(transitions)) {
      edges.push({ state, steps: [...head.steps, { event, state }], weight: head.weight + 1 });
    }
  }
  return { shortest, simple, edges };
}

/** The path a machine takes through `events`, for sequences the families above merge away (e.g. restarts). */
export function pathFromEvents<M extends AnyStateMachine>(machine: M, events: Array<EventFromLogic<M>>, input: InputFrom<M>): PathOf<M> {
  // Pure transitions: the machine's actions are resolved, never executed.
  const [initial] = initialTransition(machine, input);
  const steps: PathOf<M>["steps"] = [{ event: { type: "xstate.init" } as EventFromLogic<M>, state: initial as SnapshotOf<M> }];
  for (const event of events) {
    const [state] = transition(machine, steps[steps.length - 1]!.state as SnapshotFrom<M>, event);
    steps.push({ event, state: state as SnapshotOf<M> });
  }
  return { state: steps[steps.length - 1]!.state, steps, weight: events.length };
}
