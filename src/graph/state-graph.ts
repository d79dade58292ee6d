/**
 * A machine as plain data: its states (nested) and its transitions, read from XState's state nodes. This is
 * what `troupe graph` prints as JSON and draws as Mermaid or SVG.
 */
import type { AnyStateMachine } from "xstate";

/** One state. `id` is its path below the machine, dotted (`running.starting`). */
export interface GraphState {
  id: string;
  /** Its own name (`starting`). */
  key: string;
  /** The state it is nested in; `null` at the top level. */
  parent: string | null;
  type: "atomic" | "compound" | "parallel" | "final" | "history";
  /** A compound state's initial child (its id). */
  initial: string | null;
  description?: string;
}

/** One transition. A transition without a target (actions only) has `target` equal to `source` and `internal`. */
export interface GraphTransition {
  source: string;
  target: string;
  /** The event (`WORKER.READY`), `after <delay>` for a delayed one, or `always` for an eventless one. */
  event: string;
  guard?: string;
  actions: string[];
  internal: boolean;
}

/** A machine's states and transitions. */
export interface StateGraph {
  /** The machine's id. */
  machine: string;
  /** The top-level initial state. */
  initial: string | null;
  states: GraphState[];
  transitions: GraphTransition[];
}

/** The slice of XState's `StateNode` this reads (its public fields). */
interface StateNodeView {
  id: string;
  key: string;
  type: GraphState["type"];
  description?: string;
  parent?: StateNodeView;
  states: Record<string, StateNodeView>;
  initial?: { target: StateNodeView[] };
  transitions: Map<string, TransitionView[]>;
  always?: TransitionView[];
  after: Array<{ delay: string | number; eventType: string }>;
}

interface TransitionView {
  target?: StateNodeView[];
  guard?: unknown;
  actions?: unknown[];
}

function nameOf(implementation: unknown): string | undefined {
  if (typeof implementation === "string") return implementation;
  if (implementation !== null && typeof implementation === "object" && typeof (implementation as { type?: unknown }).type === "string") {
    return (implementation as { type: string }).type;
  }
  if (typeof implementation !== "function") return undefined;
  // XState's `and`, `or` and `not` are functions named so, holding the guards they combine.
  const combined = (implementation as { guards?: unknown }).guards;
  if (Array.isArray(combined)) return `${implementation.name}(${combined.map((guard) => nameOf(guard) ?? "?").join(", ")})`;
  if (combined !== undefined) return `${implementation.name}(${nameOf(combined) ?? "?"})`;
  // Inline functions have no name XState keeps: say that one is there.
  return "(inline)";
}

/** Reads a machine's states and transitions. */
export function stateGraphOf(machine: AnyStateMachine): StateGraph {
  const root = machine.root as unknown as StateNodeView;
  const rootPrefix = `${root.id}.`;
  const pathOf = (node: StateNodeView): string => (node.id.startsWith(rootPrefix) ? node.id.slice(rootPrefix.length) : node.id);
  const states: GraphState[] = [];
  const transitions: GraphTransition[] = [];

  const addTransitions = (node: StateNodeView, source: string): void => {
    const delays = new Map(node.after.map(({ delay, eventType }) => [eventType, `after ${delay}`]));
    const groups: Array<[string, TransitionView[]]> = [...node.transitions].map(([eventType, list]) => [delays.get(eventType) ?? eventType, list]);
    if (node.always !== undefined) groups.push(["always", node.always]);
    for (const [event, list] of groups) {
      for (const transition of list) {
        const guard = transition.guard === undefined ? undefined : nameOf(transition.guard);
        const actions = (transition.actions ?? []).map(nameOf).filter((name): name is string => name !== undefined);
        const targets = transition.target ?? [];
        const base = { source, event, ...(guard === undefined ? {} : { guard }), actions };
        if (targets.length === 0) transitions.push({ ...base, target: source, internal: true });
        for (const target of targets) transitions.push({ ...base, target: target === root ? "" : pathOf(target), internal: false });
      }
    }
  };

  const visit = (node: StateNodeView, parent: string | null): void => {
    const id = pathOf(node);
    const initial = node.initial?.target[0];
    states.push({
      id,
      key: node.key,
      parent,
      type: node.type,
      initial: initial === undefined ? null : pathOf(initial),
      ...(node.description === undefined ? {} : { description: node.description }),
    });
    addTransitions(node, id);
    for (const child of Object.values(node.states)) visit(child, id);
  };

  for (const child of Object.values(root.states)) visit(child, null);
  // Transitions of the machine itself (handlers on the root) leave whichever state is active: drawn from each
  // top-level state that can be active when an event comes (a final one ends the machine).
  const rootTransitions: GraphTransition[] = [];
  const collected = transitions.length;
  addTransitions(root, "");
  for (const transition of transitions.splice(collected)) {
    for (const state of states.filter((candidate) => candidate.parent === null && candidate.type !== "final")) {
      rootTransitions.push({ ...transition, source: state.id, target: transition.internal ? state.id : transition.target });
    }
  }
  const initial = root.initial?.target[0];
  return { machine: root.id, initial: initial === undefined ? null : pathOf(initial), states, transitions: [...transitions, ...rootTransitions] };
}
