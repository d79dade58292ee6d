/**
 * A state graph laid out by ELK (`elkjs`, the layered algorithm Stately's tools use): nested states as boxes
 * inside their parents, transitions as routed edges with their labels placed clear of the boxes. What `/ui`
 * draws and `troupe graph --format svg` writes; coordinates are absolute, in pixels. ELK (1.5 MB of
 * JavaScript) loads with the first layout. This module is also bundled into the browser's `/ui`, so it uses
 * no Node API.
 */
import type { ELK, ElkExtendedEdge, ElkNode } from "elkjs/lib/elk.bundled.js";
import { edgesOf } from "./edges.js";
import type { GraphState, StateGraph } from "./state-graph.js";

export interface LaidOutState {
  id: string;
  key: string;
  type: GraphState["type"];
  /** Whether it holds other states (drawn as a frame with its name on top). */
  compound: boolean;
  /** Whether it is its parent's (or the machine's) initial state. */
  initial: boolean;
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface LaidOutEdge {
  source: string;
  target: string;
  label: string;
  /** The route: first point at the source, last at the target. */
  points: Array<{ x: number; y: number }>;
  labelBox?: { x: number; y: number; width: number; height: number };
}

export interface GraphLayout {
  machine: string;
  width: number;
  height: number;
  states: LaidOutState[];
  edges: LaidOutEdge[];
}

/** Pixels a character takes in the drawings' 12 px sans-serif (an estimate: no fonts are measured). */
const CHAR_WIDTH = 7;
const STATE_HEIGHT = 32;
const LABEL_HEIGHT = 16;
const COMPOUND_TOP = 30;

let elk: Promise<ELK> | undefined;

/** ELK, loaded and made by the first call. */
function loadElk(): Promise<ELK> {
  return (elk ??= import("elkjs/lib/elk.bundled.js").then(({ default: elkExports }) => {
    // A CommonJS module: its constructor is its default export or that export's `default`, as Node and bundlers each see it.
    const ElkLayout = ((elkExports as unknown as { default?: new () => ELK }).default ?? elkExports) as unknown as new () => ELK;
    return new ElkLayout();
  }));
}

function textWidth(text: string): number {
  return text.length * CHAR_WIDTH;
}

/** Lays a state graph out. */
export async function layoutGraph(graph: StateGraph): Promise<GraphLayout> {
  const layout = await loadElk();
  const childrenOf = new Map<string | null, GraphState[]>();
  for (const state of graph.states) childrenOf.set(state.parent, [...(childrenOf.get(state.parent) ?? []), state]);
  const initials = new Set<string>([
    ...(graph.initial === null ? [] : [graph.initial]),
    ...graph.states.flatMap((state) => (state.initial === null ? [] : [state.initial])),
  ]);
  const nodeOf = (state: GraphState): ElkNode => {
    const children = childrenOf.get(state.id) ?? [];
    if (children.length === 0) return { id: state.id, width: Math.max(56, textWidth(state.key) + 24), height: STATE_HEIGHT };
    return {
      id: state.id,
      layoutOptions: { "elk.padding": `[top=${COMPOUND_TOP},left=14,bottom=14,right=14]`, "elk.nodeSize.minimum": `(${textWidth(state.key) + 28},40)` },
      children: children.map(nodeOf),
    };
  };
  const known = new Set(graph.states.map((state) => state.id));
  const drawn = edgesOf(graph.transitions).filter(
    (edge) => known.has(edge.source) && known.has(edge.target) && !(edge.source === edge.target && isInternalOnly(graph, edge.source)),
  );
  const edges: ElkExtendedEdge[] = drawn.map((edge, index) => {
    const label = edge.labels.join("\n");
    const width = Math.max(...edge.labels.map(textWidth)) + 6;
    return { id: `e${index}`, sources: [edge.source], targets: [edge.target], labels: [{ text: label, width, height: LABEL_HEIGHT * edge.labels.length }] };
  });
  const root: ElkNode = await layout.layout({
    id: "(machine)",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "DOWN",
      "elk.hierarchyHandling": "INCLUDE_CHILDREN",
      "elk.edgeRouting": "ORTHOGONAL",
      "elk.layered.spacing.nodeNodeBetweenLayers": "36",
      "elk.spacing.nodeNode": "28",
      "elk.spacing.edgeLabel": "4",
      "elk.spacing.edgeNode": "14",
      "elk.padding": "[top=12,left=12,bottom=12,right=12]",
    },
    children: (childrenOf.get(null) ?? []).map(nodeOf),
    edges,
  });

  const byId = new Map(graph.states.map((state) => [state.id, state]));
  const states: LaidOutState[] = [];
  /** Where each node's own coordinates start: edges in a node are relative to it. */
  const origins = new Map<string, { x: number; y: number }>([["(machine)", { x: 0, y: 0 }]]);
  const place = (node: ElkNode, offsetX: number, offsetY: number): void => {
    const x = offsetX + (node.x ?? 0);
    const y = offsetY + (node.y ?? 0);
    origins.set(node.id, { x, y });
    const state = byId.get(node.id)!;
    const children = node.children ?? [];
    states.push({
      id: state.id,
      key: state.key,
      type: state.type,
      compound: children.length > 0,
      initial: initials.has(state.id),
      x,
      y,
      width: node.width ?? 0,
      height: node.height ?? 0,
    });
    for (const child of children) place(child, x, y);
  };
  for (const node of root.children ?? []) place(node, 0, 0);

  const laidOut: LaidOutEdge[] = [];
  const collect = (node: ElkNode): void => {
    for (const edge of node.edges ?? []) {
      const index = Number(edge.id.slice(1));
      const source = drawn[index]!;
      const origin = origins.get(edge.container ?? node.id) ?? { x: 0, y: 0 };
      const shift = (point: { x: number; y: number }) => ({ x: origin.x + point.x, y: origin.y + point.y });
      const points = (edge.sections ?? []).flatMap((section) => [section.startPoint, ...(section.bendPoints ?? []), section.endPoint]).map(shift);
      const label = edge.labels?.[0];
      laidOut.push({
        source: source.source,
        target: source.target,
        label: source.labels.join("\n"),
        points,
        ...(label === undefined ? {} : { labelBox: { ...shift({ x: label.x ?? 0, y: label.y ?? 0 }), width: label.width ?? 0, height: label.height ?? 0 } }),
      });
    }
    for (const child of node.children ?? []) collect(child);
  };
  collect(root);
  return { machine: graph.machine, width: root.width ?? 0, height: root.height ?? 0, states, edges: laidOut };
}

/** Whether every transition from a state back to itself is internal (actions only): not worth a loop. */
function isInternalOnly(graph: StateGraph, stateId: string): boolean {
  return graph.transitions.filter((transition) => transition.source === stateId && transition.target === stateId).every((transition) => transition.internal);
}
