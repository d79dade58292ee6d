/**
 * A state graph as a Mermaid `stateDiagram-v2`: nested states as composite states, each transition declared in
 * the innermost composite state that holds both its ends (Mermaid draws a transition between the insides of two
 * different composite states only when it is declared outside both).
 */
import { edgesOf, type GraphEdge } from "./edges.js";
import type { GraphState, StateGraph } from "./state-graph.js";

/** Words Mermaid's state diagram grammar reads as keywords, which a state id must not be. */
const RESERVED_IDS = new Set(["end", "state", "note", "direction", "class", "classDef", "style", "as", "left", "right", "of", "over", "hide", "click"]);

/** The Mermaid id of each state: its path with `_` for anything but letters, digits and `_`, unique. */
function mermaidIds(states: GraphState[]): Map<string, string> {
  const ids = new Map<string, string>();
  const taken = new Set<string>();
  for (const state of states) {
    let id = state.id.replace(/[^A-Za-z0-9_]/g, "_");
    if (RESERVED_IDS.has(id) || /^[0-9]/.test(id)) id = `s_${id}`;
    while (taken.has(id)) id = `${id}_`;
    taken.add(id);
    ids.set(state.id, id);
  }
  return ids;
}

/** Label text that stays on its line and out of Mermaid's syntax (`;` and `%%` end or comment a statement). */
function safeText(text: string): string {
  return text
    .replace(/[\r\n]+/g, " ")
    .replace(/;/g, ",")
    .replace(/%%/g, "%")
    .replace(/[{}]/g, "");
}

/** The ancestors of a state, itself first, up to the top level. */
function chainOf(stateId: string, byId: Map<string, GraphState>): string[] {
  const chain: string[] = [];
  for (let current = byId.get(stateId); current !== undefined; current = current.parent === null ? undefined : byId.get(current.parent)) chain.push(current.id);
  return chain;
}

/** The innermost compound state holding both ends of an edge (`null`: the top level). */
function scopeOf(edge: GraphEdge, byId: Map<string, GraphState>): string | null {
  const targetChain = new Set(chainOf(edge.target, byId));
  const sourceParents = chainOf(edge.source, byId).slice(1);
  return sourceParents.find((ancestor) => targetChain.has(ancestor) && ancestor !== edge.target) ?? null;
}

/** Renders the graph as Mermaid `stateDiagram-v2` text. */
export function toMermaid(graph: StateGraph): string {
  const byId = new Map(graph.states.map((state) => [state.id, state]));
  const ids = mermaidIds(graph.states);
  const idOf = (stateId: string): string => ids.get(stateId) ?? stateId;
  const edgesByScope = new Map<string | null, GraphEdge[]>();
  for (const edge of edgesOf(graph.transitions)) {
    const scope = scopeOf(edge, byId);
    edgesByScope.set(scope, [...(edgesByScope.get(scope) ?? []), edge]);
  }
  const lines = ["stateDiagram-v2"];

  const writeScope = (scope: string | null, initial: string | null, depth: number): void => {
    const indent = "  ".repeat(depth);
    if (initial !== null) lines.push(`${indent}[*] --> ${idOf(initial)}`);
    for (const state of graph.states.filter((candidate) => candidate.parent === scope)) {
      const id = idOf(state.id);
      lines.push(`${indent}state "${safeText(state.key).replace(/"/g, "'")}" as ${id}`);
      if (state.type === "compound" || state.type === "parallel") {
        lines.push(`${indent}state ${id} {`);
        writeScope(state.id, state.initial, depth + 1);
        lines.push(`${indent}}`);
      }
      if (state.type === "final") lines.push(`${indent}${id} --> [*]`);
    }
    for (const edge of edgesByScope.get(scope) ?? []) {
      // One line per event and guard: `<br/>` is how Mermaid breaks a label.
      lines.push(`${indent}${idOf(edge.source)} --> ${idOf(edge.target)} : ${edge.labels.map(safeText).join("<br/>")}`);
    }
  };

  writeScope(null, graph.initial, 1);
  return `${lines.join("\n")}\n`;
}
