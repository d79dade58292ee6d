/**
 * `troupe graph`'s output for every machine of machines/: the JSON lists what the machine defines, the
 * Mermaid text holds every state (nested as in the machine) and every transition, and the SVG has a node per
 * state and an edge per source and target.
 */
import { describe, expect, it } from "vitest";
import { renderGraph } from "../../src/cli/graph.js";
import { MACHINE_NAMES, MACHINES } from "../../src/graph/machines.js";
import { stateGraphOf, type StateGraph } from "../../src/graph/state-graph.js";

/** What a structural read of Mermaid `stateDiagram-v2` text finds. */
interface MermaidDiagram {
  /** Each state id with the id of the composite state it is declared in (null at the top). */
  parents: Map<string, string | null>;
  /** The label given to each state id. */
  labels: Map<string, string>;
  transitions: Array<{ source: string; target: string; label: string; scope: string | null }>;
  /** Scope → its initial state id. */
  initials: Map<string | null, string>;
  finals: Set<string>;
}

/** Reads the subset of Mermaid's state diagram grammar troupe writes, failing on any line outside it. */
function parseMermaid(text: string): MermaidDiagram {
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  expect(lines[0]).toBe("stateDiagram-v2");
  const diagram: MermaidDiagram = { parents: new Map(), labels: new Map(), transitions: [], initials: new Map(), finals: new Set() };
  const scopes: Array<string | null> = [null];
  const id = "[A-Za-z_][A-Za-z0-9_]*";
  for (const raw of lines.slice(1)) {
    const line = raw.trim();
    const scope = scopes.at(-1)!;
    let match: RegExpMatchArray | null;
    if ((match = line.match(new RegExp(`^state "([^"]*)" as (${id})$`)))) {
      diagram.labels.set(match[2]!, match[1]!);
      diagram.parents.set(match[2]!, scope);
    } else if ((match = line.match(new RegExp(`^state (${id}) \\{$`)))) {
      expect(diagram.parents.get(match[1]!), `${match[1]} opened where it was not declared`).toBe(scope);
      scopes.push(match[1]!);
    } else if (line === "}") {
      expect(scopes.length, "a } without its {").toBeGreaterThan(1);
      scopes.pop();
    } else if ((match = line.match(new RegExp(`^\\[\\*\\] --> (${id})$`)))) {
      diagram.initials.set(scope, match[1]!);
    } else if ((match = line.match(new RegExp(`^(${id}) --> \\[\\*\\]$`)))) {
      diagram.finals.add(match[1]!);
    } else if ((match = line.match(new RegExp(`^(${id}) --> (${id}) : ([^;{}]+)$`)))) {
      diagram.transitions.push({ source: match[1]!, target: match[2]!, label: match[3]!, scope });
    } else {
      throw new Error(`not a line of the state diagram grammar: ${JSON.stringify(raw)}`);
    }
  }
  expect(scopes, "every { is closed").toEqual([null]);
  return diagram;
}

function graphOf(machine: string): StateGraph {
  return stateGraphOf(MACHINES[machine]!(["design", "implementation", "review"]));
}

describe.each(MACHINE_NAMES)("troupe graph %s", (machine) => {
  const graph = graphOf(machine);

  it("has states and transitions to draw", async () => {
    expect(graph.states.length).toBeGreaterThan(0);
    expect(graph.transitions.length).toBeGreaterThan(0);
    expect(graph.states.map((state) => state.id)).toContain(graph.initial);
  });

  it("prints the machine's states and transitions as JSON", async () => {
    expect(JSON.parse(await renderGraph(machine, "json"))).toEqual(JSON.parse(JSON.stringify(graph)));
  });

  it("prints Mermaid that parses, with every state nested as in the machine and every transition", async () => {
    const diagram = parseMermaid(await renderGraph(machine, "mermaid"));
    // Each state once, under the Mermaid id of its parent, labelled with its own name.
    const mermaidId = new Map<string, string>();
    for (const state of graph.states) {
      const candidates = [...diagram.labels].filter(([, label]) => label === state.key).map(([id]) => id);
      const parentId = state.parent === null ? null : mermaidId.get(state.parent)!;
      const found = candidates.find((candidate) => diagram.parents.get(candidate) === parentId);
      expect(found, `state ${state.id}`).toBeDefined();
      mermaidId.set(state.id, found!);
    }
    expect(diagram.labels.size).toBe(graph.states.length);
    const idOf = (stateId: string): string => mermaidId.get(stateId)!;
    expect(diagram.initials.get(null)).toBe(idOf(graph.initial!));
    for (const state of graph.states) {
      if (state.initial !== null) expect(diagram.initials.get(idOf(state.id)), `initial of ${state.id}`).toBe(idOf(state.initial));
      expect(diagram.finals.has(idOf(state.id)), `final ${state.id}`).toBe(state.type === "final");
    }
    for (const transition of graph.transitions) {
      const label = transition.guard === undefined ? transition.event : `${transition.event} [${transition.guard}]`;
      const drawn = diagram.transitions.find(
        (candidate) =>
          candidate.source === idOf(transition.source) && candidate.target === idOf(transition.target) && candidate.label.split("<br/>").includes(label),
      );
      expect(drawn, `${transition.source} → ${transition.target} on ${label}`).toBeDefined();
    }
  });

  it("draws an SVG with one node per state", async () => {
    const svg = await renderGraph(machine, "svg");
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg.trimEnd().endsWith("</svg>")).toBe(true);
    const nodes = [...svg.matchAll(/<g class="state[^"]*" data-state="([^"]*)"/g)].map((match) => match[1]);
    expect(nodes.sort()).toEqual(graph.states.map((state) => state.id).sort());
    // Every transition that leaves its state is an edge (or a loop) between its two nodes.
    const edges = new Set(
      [...svg.matchAll(/<g class="transition" data-source="([^"]*)" data-target="([^"]*)"><path/g)].map((match) => `${match[1]}→${match[2]}`),
    );
    for (const transition of graph.transitions.filter((candidate) => !candidate.internal)) {
      expect(edges.has(`${transition.source}→${transition.target}`), `${transition.source} → ${transition.target}`).toBe(true);
    }
  });
});

describe("troupe graph workflow", () => {
  it("builds the workflow machine from the steps it is given", async () => {
    const graph = stateGraphOf(MACHINES.workflow!(["plan", "ship"]));
    expect(graph.states.map((state) => state.id)).toEqual(["plan", "ship", "completed", "terminated"]);
    expect(await renderGraph("workflow", "mermaid", ["plan", "ship"])).toContain("plan --> ship : TASK.ANSWERED [completesStep]");
  });
});
