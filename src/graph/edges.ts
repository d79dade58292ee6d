/**
 * Transitions grouped into the edges a drawing shows: one per source and target, labelled with every event
 * (and guard) that takes it.
 */
import type { GraphTransition } from "./state-graph.js";

/** One drawn edge. `source === target` for a self-loop (an internal transition, or a re-entry). */
export interface GraphEdge {
  source: string;
  target: string;
  /** `EVENT [guard]` of each transition on it, without repeats, in the machine's order. */
  labels: string[];
}

/** `EVENT [guard]`. */
export function labelOf(transition: GraphTransition): string {
  return transition.guard === undefined ? transition.event : `${transition.event} [${transition.guard}]`;
}

/** Groups transitions by source and target, keeping the order in which each edge first appears. */
export function edgesOf(transitions: GraphTransition[]): GraphEdge[] {
  const edges = new Map<string, GraphEdge>();
  for (const transition of transitions) {
    const key = JSON.stringify([transition.source, transition.target]);
    let edge = edges.get(key);
    if (edge === undefined) {
      edge = { source: transition.source, target: transition.target, labels: [] };
      edges.set(key, edge);
    }
    const label = labelOf(transition);
    if (!edge.labels.includes(label)) edge.labels.push(label);
  }
  return [...edges.values()];
}
