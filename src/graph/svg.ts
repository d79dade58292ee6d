/**
 * A state graph as a standalone SVG, laid out in layers with no library: each compound state (and the machine
 * itself) places its children in columns by their distance from its initial child along the transitions
 * between them, and grows to hold them. Edges are straight between columns and curved otherwise; a
 * re-entering self-transition is a loop on top of its state; transitions that do not leave their state
 * (actions only) are listed inside it. Every state is one `<g class="state" data-state="<id>">`.
 */
import { edgesOf, labelOf, type GraphEdge } from "./edges.js";
import type { GraphState, StateGraph } from "./state-graph.js";

const FONT_SIZE = 13;
const LABEL_FONT_SIZE = 10;
/** Roughly how wide a character of the sans-serif font is, for sizing boxes without measuring text. */
const CHAR_WIDTH = 7.4;
const LABEL_CHAR_WIDTH = 5.8;
const NODE_HEIGHT = 34;
/** Room above a state for its self-loop, besides the loop's labels. */
const LOOP_HEIGHT = 30;
const NODE_MIN_WIDTH = 70;
const COMPOUND_HEADER = 24;
const COMPOUND_PADDING = 18;
const MIN_COLUMN_GAP = 90;
const ROW_GAP = 60;
const MARGIN = 40;
const TITLE_HEIGHT = 28;
/** Labels shown on one edge before the rest are summed up as "+ n more". */
const MAX_LABEL_LINES = 6;
const LABEL_LINE_HEIGHT = 12;

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

interface Size {
  width: number;
  height: number;
}

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Labels cut to `MAX_LABEL_LINES`. */
function cutLines(labels: string[]): string[] {
  if (labels.length <= MAX_LABEL_LINES) return labels;
  return [...labels.slice(0, MAX_LABEL_LINES - 1), `+ ${labels.length - MAX_LABEL_LINES + 1} more`];
}

function labelBlockHeight(lines: string[]): number {
  return lines.length === 0 ? 0 : lines.length * LABEL_LINE_HEIGHT + 4;
}

function labelBlockWidth(lines: string[]): number {
  return lines.length === 0 ? 0 : Math.max(...lines.map((line) => line.length)) * LABEL_CHAR_WIDTH + 8;
}

/** What is drawn besides the boxes: the edges, each state's self-loop labels and its internal transitions. */
interface Drawing {
  edges: GraphEdge[];
  loops: Map<string, string[]>;
  internal: Map<string, string[]>;
}

function drawingOf(graph: StateGraph): Drawing {
  const internal = new Map<string, string[]>();
  for (const transition of graph.transitions.filter((candidate) => candidate.internal)) {
    const labels = internal.get(transition.source) ?? [];
    if (!labels.includes(labelOf(transition))) labels.push(labelOf(transition));
    internal.set(transition.source, labels);
  }
  const edges = edgesOf(graph.transitions.filter((transition) => !transition.internal));
  const loops = new Map(edges.filter((edge) => edge.source === edge.target).map((edge) => [edge.source, cutLines(edge.labels)]));
  return { edges: edges.filter((edge) => edge.source !== edge.target), loops, internal: new Map([...internal].map(([id, labels]) => [id, cutLines(labels)])) };
}

/** Where a line from the center of `box` towards `(towardX, towardY)` leaves the box. */
function borderPoint(box: Box, towardX: number, towardY: number): [number, number] {
  const centerX = box.x + box.width / 2;
  const centerY = box.y + box.height / 2;
  const dx = towardX - centerX;
  const dy = towardY - centerY;
  if (dx === 0 && dy === 0) return [centerX, centerY];
  const scale = Math.min(dx === 0 ? Infinity : box.width / 2 / Math.abs(dx), dy === 0 ? Infinity : box.height / 2 / Math.abs(dy));
  return [centerX + dx * scale, centerY + dy * scale];
}

/** Lays out the graph: a box per state, in absolute coordinates, and the size of the whole. */
function layout(graph: StateGraph, drawing: Drawing): { boxes: Map<string, Box>; size: Size } {
  const byId = new Map(graph.states.map((state) => [state.id, state]));
  const childrenOf = (parent: string | null): GraphState[] => graph.states.filter((state) => state.parent === parent);
  /** The child of `parent` that is `stateId` or holds it. */
  const childHolding = (parent: string | null, stateId: string): string | undefined => {
    for (let current = byId.get(stateId); current !== undefined; current = current.parent === null ? undefined : byId.get(current.parent)) {
      if (current.parent === parent) return current.id;
    }
    return undefined;
  };
  /** Each state's size with the room above it for its self-loop. */
  const sizes = new Map<string, Size>();
  const loopRoom = (stateId: string): number => {
    const lines = drawing.loops.get(stateId);
    return lines === undefined ? 0 : LOOP_HEIGHT + labelBlockHeight(lines);
  };
  /** Positions of each container's children, relative to the container's content area. */
  const offsets = new Map<string, { x: number; y: number }>();

  const placeChildren = (parent: string | null, initial: string | null): Size => {
    const children = childrenOf(parent);
    for (const child of children) sizes.set(child.id, sizeOf(child));
    const next = new Map<string, string[]>(children.map((child) => [child.id, []]));
    // Room between columns for the widest label of an edge between two of these children.
    let gap = MIN_COLUMN_GAP;
    for (const { source, target, labels } of drawing.edges) {
      const from = childHolding(parent, source);
      const to = childHolding(parent, target);
      if (from === undefined || to === undefined || from === to) continue;
      next.get(from)?.push(to);
      gap = Math.max(gap, labelBlockWidth(cutLines(labels)) + 30);
    }
    // Columns: distance from the initial child; children it never reaches start new columns after the rest.
    const column = new Map<string, number>();
    const reach = (start: string, at: number): void => {
      column.set(start, at);
      const queue = [start];
      for (let head = 0; head < queue.length; head += 1) {
        const current = queue[head]!;
        for (const successor of next.get(current) ?? []) {
          if (column.has(successor)) continue;
          column.set(successor, (column.get(current) ?? 0) + 1);
          queue.push(successor);
        }
      }
    };
    const first = initial ?? children[0]?.id;
    if (first !== undefined) reach(first, 0);
    for (const child of children) if (!column.has(child.id)) reach(child.id, Math.max(-1, ...column.values()) + 1);
    const columns: string[][] = [];
    for (const child of children) (columns[column.get(child.id) ?? 0] ??= []).push(child.id);
    const dense = columns.filter((members) => members !== undefined);
    const widths = dense.map((members) => Math.max(...members.map((id) => sizes.get(id)!.width)));
    const heights = dense.map((members) => members.reduce((sum, id) => sum + sizes.get(id)!.height, 0) + ROW_GAP * (members.length - 1));
    const height = Math.max(0, ...heights);
    let x = 0;
    dense.forEach((members, index) => {
      let y = (height - heights[index]!) / 2;
      for (const id of members) {
        const size = sizes.get(id)!;
        offsets.set(id, { x: x + (widths[index]! - size.width) / 2, y });
        y += size.height + ROW_GAP;
      }
      x += widths[index]! + gap;
    });
    return { width: Math.max(0, x - gap), height };
  };

  const sizeOf = (state: GraphState): Size => {
    const internal = drawing.internal.get(state.id) ?? [];
    const labelWidth = Math.max(state.key.length * CHAR_WIDTH + 28, labelBlockWidth(internal) + 12, labelBlockWidth(drawing.loops.get(state.id) ?? []));
    const above = loopRoom(state.id);
    if (childrenOf(state.id).length === 0) {
      return { width: Math.max(NODE_MIN_WIDTH, labelWidth), height: above + NODE_HEIGHT + labelBlockHeight(internal) };
    }
    const inner = placeChildren(state.id, state.initial);
    return {
      width: Math.max(labelWidth, inner.width + 2 * COMPOUND_PADDING),
      height: above + inner.height + COMPOUND_HEADER + labelBlockHeight(internal) + 2 * COMPOUND_PADDING,
    };
  };

  const content = placeChildren(null, graph.initial);
  const boxes = new Map<string, Box>();
  const place = (parent: string | null, originX: number, originY: number): void => {
    for (const child of childrenOf(parent)) {
      const offset = offsets.get(child.id)!;
      const size = sizes.get(child.id)!;
      const above = loopRoom(child.id);
      const box = { x: originX + offset.x, y: originY + offset.y + above, width: size.width, height: size.height - above };
      boxes.set(child.id, box);
      const internalHeight = labelBlockHeight(drawing.internal.get(child.id) ?? []);
      place(child.id, box.x + COMPOUND_PADDING, box.y + COMPOUND_HEADER + internalHeight + COMPOUND_PADDING);
    }
  };
  place(null, MARGIN, MARGIN + TITLE_HEIGHT);
  return { boxes, size: { width: content.width + 2 * MARGIN, height: content.height + 2 * MARGIN + TITLE_HEIGHT } };
}

function labelSvg(lines: string[], centerX: number, bottomY: number): string {
  const width = labelBlockWidth(lines);
  const height = labelBlockHeight(lines);
  const top = bottomY - height;
  const texts = lines
    .map((line, index) => `<text x="${centerX.toFixed(1)}" y="${(top + 12 + index * LABEL_LINE_HEIGHT).toFixed(1)}" text-anchor="middle">${escapeXml(line)}</text>`)
    .join("");
  return `<rect class="label" x="${(centerX - width / 2).toFixed(1)}" y="${top.toFixed(1)}" width="${width.toFixed(1)}" height="${height}" rx="3"/>${texts}`;
}

function transitionAttributes(source: string, target: string): string {
  return `class="transition" data-source="${escapeXml(source)}" data-target="${escapeXml(target)}"`;
}

/** Where an edge would like its label: centered on `x`, its bottom at `bottomY`. */
interface LabelRequest {
  attributes: string;
  lines: string[];
  x: number;
  bottomY: number;
}

/** An edge's line and its label, drawn apart: lines under the states, labels over everything. */
interface EdgeParts {
  line: string;
  label?: LabelRequest;
}

function overlaps(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

/** Shifts each label up or down, a line at a time, until it covers no leaf state and no label placed before it. */
function placeLabels(requests: LabelRequest[], leaves: Box[]): string[] {
  const taken = [...leaves];
  return requests.map((request) => {
    const width = labelBlockWidth(request.lines);
    const height = labelBlockHeight(request.lines);
    const boxAt = (bottomY: number): Box => ({ x: request.x - width / 2, y: bottomY - height, width, height });
    const shifts = [0, ...Array.from({ length: 8 }, (_, index) => (index % 2 === 0 ? -1 : 1) * LABEL_LINE_HEIGHT * Math.ceil((index + 1) / 2))];
    const shift = shifts.find((candidate) => !taken.some((box) => overlaps(box, boxAt(request.bottomY + candidate)))) ?? 0;
    taken.push(boxAt(request.bottomY + shift));
    return `<g ${request.attributes}>${labelSvg(request.lines, request.x, request.bottomY + shift)}</g>`;
  });
}

/** A re-entering self-transition: a loop on top of the state, its labels above it. */
function loopSvg(stateId: string, lines: string[], box: Box): EdgeParts {
  const left = box.x + box.width * 0.3;
  const right = box.x + box.width * 0.7;
  const top = box.y - LOOP_HEIGHT + 4;
  const path = `M${left.toFixed(1)},${box.y.toFixed(1)} C${left.toFixed(1)},${top.toFixed(1)} ${right.toFixed(1)},${top.toFixed(1)} ${right.toFixed(1)},${box.y.toFixed(1)}`;
  const attributes = transitionAttributes(stateId, stateId);
  return { line: `<g ${attributes}><path d="${path}" marker-end="url(#arrow)"/></g>`, label: { attributes, lines, x: box.x + box.width / 2, bottomY: top + 6 } };
}

function edgeSvg(edge: GraphEdge, boxes: Map<string, Box>): EdgeParts {
  const source = boxes.get(edge.source);
  const target = boxes.get(edge.target);
  if (source === undefined || target === undefined) return { line: "" };
  const lines = cutLines(edge.labels);
  const attributes = transitionAttributes(edge.source, edge.target);
  const sourceCenter = [source.x + source.width / 2, source.y + source.height / 2] as const;
  const targetCenter = [target.x + target.width / 2, target.y + target.height / 2] as const;
  // Forward edges between columns go straight; others (back, or within a column) bend to the side.
  const forward = target.x >= source.x + source.width;
  const bend = forward ? 0 : 60;
  const middleX = (sourceCenter[0] + targetCenter[0]) / 2;
  const middleY = (sourceCenter[1] + targetCenter[1]) / 2 + (targetCenter[0] <= sourceCenter[0] ? bend : -bend);
  const [startX, startY] = borderPoint(source, forward ? targetCenter[0] : middleX, forward ? targetCenter[1] : middleY);
  const [endX, endY] = borderPoint(target, forward ? sourceCenter[0] : middleX, forward ? sourceCenter[1] : middleY);
  const path = forward
    ? `M${startX.toFixed(1)},${startY.toFixed(1)} L${endX.toFixed(1)},${endY.toFixed(1)}`
    : `M${startX.toFixed(1)},${startY.toFixed(1)} Q${middleX.toFixed(1)},${middleY.toFixed(1)} ${endX.toFixed(1)},${endY.toFixed(1)}`;
  // A forward label sits in the first gap after the source, clear of the columns an edge may pass over.
  const along = forward ? Math.min(0.5, (labelBlockWidth(lines) / 2 + 24) / Math.max(1, endX - startX)) : 0.5;
  const labelX = forward ? startX + (endX - startX) * along : middleX;
  const labelY = forward ? startY + (endY - startY) * along - 4 : (startY + endY) / 4 + middleY / 2;
  return { line: `<g ${attributes}><path d="${path}" marker-end="url(#arrow)"/></g>`, label: { attributes, lines, x: labelX, bottomY: labelY } };
}

function stateSvg(state: GraphState, box: Box, isInitial: boolean, internal: string[]): string {
  const compound = state.type === "compound" || state.type === "parallel";
  const title = state.description === undefined ? "" : `<title>${escapeXml(state.description)}</title>`;
  const rect = `<rect x="${box.x.toFixed(1)}" y="${box.y.toFixed(1)}" width="${box.width.toFixed(1)}" height="${box.height.toFixed(1)}" rx="8"/>`;
  const inner =
    state.type === "final"
      ? `<rect class="final" x="${(box.x + 3).toFixed(1)}" y="${(box.y + 3).toFixed(1)}" width="${(box.width - 6).toFixed(1)}" height="${(box.height - 6).toFixed(1)}" rx="6"/>`
      : "";
  const textX = compound ? box.x + 10 : box.x + box.width / 2;
  const textY = compound ? box.y + 17 : box.y + NODE_HEIGHT / 2 + FONT_SIZE / 2 - 2;
  const text = `<text x="${textX.toFixed(1)}" y="${textY.toFixed(1)}"${compound ? "" : ' text-anchor="middle"'}>${escapeXml(state.key)}</text>`;
  const internalTop = compound ? box.y + COMPOUND_HEADER : box.y + NODE_HEIGHT - 4;
  const separator =
    internal.length === 0 || compound ? "" : `<path class="separator" d="M${box.x.toFixed(1)},${(internalTop - 2).toFixed(1)} L${(box.x + box.width).toFixed(1)},${(internalTop - 2).toFixed(1)}"/>`;
  const internalLines = separator + internal
    .map((line, index) => `<text class="internal" x="${(box.x + 10).toFixed(1)}" y="${(internalTop + 10 + index * LABEL_LINE_HEIGHT).toFixed(1)}">${escapeXml(line)}</text>`)
    .join("");
  const marker = isInitial
    ? `<circle class="initial" cx="${(box.x - 16).toFixed(1)}" cy="${(box.y + NODE_HEIGHT / 2).toFixed(1)}" r="5"/><path d="M${(box.x - 11).toFixed(1)},${(box.y + NODE_HEIGHT / 2).toFixed(1)} L${box.x.toFixed(1)},${(box.y + NODE_HEIGHT / 2).toFixed(1)}" marker-end="url(#arrow)"/>`
    : "";
  return `<g class="state${compound ? " compound" : ""}" data-state="${escapeXml(state.id)}" data-type="${state.type}">${title}${rect}${inner}${text}${internalLines}${marker}</g>`;
}

const STYLE = `
  text { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: ${FONT_SIZE}px; fill: #1f2933; }
  .title { font-size: 15px; font-weight: 600; }
  .state > rect { fill: #ffffff; stroke: #3e4c59; stroke-width: 1.4; }
  .state.compound > rect { fill: #f5f7fa; stroke-dasharray: 4 3; }
  .state rect.final { fill: none; stroke: #3e4c59; }
  .state .initial { fill: #3e4c59; }
  .state > path, .transition > path { fill: none; stroke: #616e7c; stroke-width: 1.2; }
  .state > path.separator { stroke: #cbd2d9; }
  .transition text, .state text.internal { font-size: ${LABEL_FONT_SIZE}px; fill: #323f4b; }
  .state text.internal { fill: #616e7c; }
  .transition rect.label { fill: #ffffff; fill-opacity: 0.85; stroke: none; }
`;

/** Renders the graph as a standalone SVG document. */
export function toSvg(graph: StateGraph): string {
  const drawing = drawingOf(graph);
  const { boxes, size } = layout(graph, drawing);
  const edges = [
    ...drawing.edges.map((edge) => edgeSvg(edge, boxes)),
    ...[...drawing.loops].map(([stateId, lines]) => loopSvg(stateId, lines, boxes.get(stateId)!)),
  ];
  const initials = new Set([graph.initial, ...graph.states.map((state) => state.initial)].filter((id): id is string => id !== null));
  const drawState = (state: GraphState): string => stateSvg(state, boxes.get(state.id)!, initials.has(state.id), drawing.internal.get(state.id) ?? []);
  const isContainer = (state: GraphState): boolean => state.type === "compound" || state.type === "parallel";
  // Containers (outer first), then the edges' lines, then the states they join, then every label on top.
  const layers = [
    ...[...graph.states].filter(isContainer).sort((a, b) => a.id.split(".").length - b.id.split(".").length).map(drawState),
    ...edges.map((edge) => edge.line),
    ...graph.states.filter((state) => !isContainer(state)).map(drawState),
    ...placeLabels(
      edges.flatMap((edge) => (edge.label === undefined ? [] : [edge.label])),
      graph.states.filter((state) => !isContainer(state)).map((state) => boxes.get(state.id)!),
    ),
  ].join("\n");
  const width = Math.ceil(size.width);
  const height = Math.ceil(size.height);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" data-machine="${escapeXml(graph.machine)}">
<style>${STYLE}</style>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#616e7c"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text class="title" x="${MARGIN}" y="${MARGIN}">${escapeXml(graph.machine)}</text>
${layers}
</svg>
`;
}
