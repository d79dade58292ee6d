/**
 * A laid-out state graph (layout.ts, ELK) drawn as SVG: what `troupe graph --format svg` writes and `/ui`
 * shows, with the states that are active highlighted. Every state is one `<g class="state" data-state="<id>">`
 * (`active` added when it is), every edge one `<g class="transition" data-source data-target>` with its labels.
 */
import { layoutGraph, type GraphLayout, type LaidOutEdge, type LaidOutState } from "./layout.js";
import type { StateGraph } from "./state-graph.js";

const MARGIN = 16;
const TITLE_HEIGHT = 26;
const LABEL_LINE_HEIGHT = 16;

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const n = (value: number): string => (Math.round(value * 10) / 10).toString();

function stateSvg(state: LaidOutState, active: boolean): string {
  const classes = ["state", ...(state.compound ? ["compound"] : []), ...(active ? ["active"] : [])].join(" ");
  const rect = `<rect x="${n(state.x)}" y="${n(state.y)}" width="${n(state.width)}" height="${n(state.height)}" rx="8"/>`;
  const final =
    state.type === "final"
      ? `<rect class="final" x="${n(state.x + 3)}" y="${n(state.y + 3)}" width="${n(state.width - 6)}" height="${n(state.height - 6)}" rx="6"/>`
      : "";
  const text = state.compound
    ? `<text x="${n(state.x + 10)}" y="${n(state.y + 19)}">${escapeXml(state.key)}</text>`
    : `<text x="${n(state.x + state.width / 2)}" y="${n(state.y + state.height / 2 + 4)}" text-anchor="middle">${escapeXml(state.key)}</text>`;
  const initial = state.initial ? `<circle class="initial" cx="${n(state.x + 7)}" cy="${n(state.y + 7)}" r="3.5"/>` : "";
  return `<g class="${classes}" data-state="${escapeXml(state.id)}" data-type="${state.type}">${rect}${final}${text}${initial}</g>`;
}

function edgeSvg(edge: LaidOutEdge, taken: boolean): { line: string; label: string } {
  const attributes = `class="transition${taken ? " taken" : ""}" data-source="${escapeXml(edge.source)}" data-target="${escapeXml(edge.target)}"`;
  const path = edge.points.map((point, index) => `${index === 0 ? "M" : "L"}${n(point.x)},${n(point.y)}`).join(" ");
  const box = edge.labelBox;
  const lines = edge.label.split("\n");
  const label =
    box === undefined
      ? ""
      : `<g ${attributes}><rect class="label" x="${n(box.x - 2)}" y="${n(box.y)}" width="${n(box.width + 4)}" height="${n(box.height)}" rx="3"/>${lines
          .map((line, index) => `<text x="${n(box.x + 1)}" y="${n(box.y + 12 + index * LABEL_LINE_HEIGHT)}">${escapeXml(line)}</text>`)
          .join("")}</g>`;
  return { line: `<g ${attributes}><path d="${path}" marker-end="url(#arrow)"/></g>`, label };
}

const STYLE = `
  text { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 12px; fill: #1f2933; }
  .title { font-size: 14px; font-weight: 600; }
  .state > rect { fill: #ffffff; stroke: #3e4c59; stroke-width: 1.3; }
  .state.compound > rect { fill: #f5f7fa; stroke-dasharray: 4 3; }
  .state rect.final { fill: none; stroke: #3e4c59; }
  .state .initial { fill: #3e4c59; }
  .state.active > rect { fill: #fff3c4; stroke: #cb6e17; stroke-width: 2.4; }
  .state.compound.active > rect { fill: #fffbea; }
  .transition > path { fill: none; stroke: #7b8794; stroke-width: 1.2; }
  .transition.taken > path { stroke: #cb6e17; stroke-width: 2.2; }
  .transition text { font-size: 11px; fill: #323f4b; }
  .transition rect.label { fill: #ffffff; fill-opacity: 0.9; stroke: none; }
`;

/** What to highlight in a drawing. */
export interface DrawOptions {
  /** Ids of the active states (ancestors included). */
  active?: ReadonlySet<string>;
  /** The transition last taken, drawn stronger. */
  taken?: { source: string; target: string };
}

/** Draws a layout as a standalone SVG document. */
export function drawSvg(layout: GraphLayout, options: DrawOptions = {}): string {
  const active = options.active ?? new Set<string>();
  const { taken } = options;
  const edges = layout.edges.map((edge) => edgeSvg(edge, taken !== undefined && edge.source === taken.source && edge.target === taken.target));
  const byDepth = (state: LaidOutState): number => state.id.split(".").length;
  // Compound states (outer first), then lines, then the simple states, then every label on top.
  const layers = [
    ...layout.states
      .filter((state) => state.compound)
      .sort((a, b) => byDepth(a) - byDepth(b))
      .map((state) => stateSvg(state, active.has(state.id))),
    ...edges.map((edge) => edge.line),
    ...layout.states.filter((state) => !state.compound).map((state) => stateSvg(state, active.has(state.id))),
    ...edges.map((edge) => edge.label),
  ].join("\n");
  const width = Math.ceil(layout.width + 2 * MARGIN);
  const height = Math.ceil(layout.height + 2 * MARGIN + TITLE_HEIGHT);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" data-machine="${escapeXml(layout.machine)}">
<style>${STYLE}</style>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7b8794"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
<text class="title" x="${MARGIN}" y="${MARGIN + 12}">${escapeXml(layout.machine)}</text>
<g transform="translate(${MARGIN},${MARGIN + TITLE_HEIGHT})">
${layers}
</g>
</svg>
`;
}

/** Lays a graph out and draws it. */
export async function toSvg(graph: StateGraph, options: DrawOptions = {}): Promise<string> {
  return drawSvg(await layoutGraph(graph), options);
}
