/**
 * Transition coverage measured on the real runtime: every transition a machine defines, and the ones its
 * actors actually took (from XState's `@xstate.microstep` inspection events).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AnyStateMachine, InspectionEvent } from "xstate";

interface TransitionLike {
  source: StateNodeLike;
  eventType: string;
}

interface StateNodeLike {
  id: string;
  states: Record<string, StateNodeLike>;
  transitions: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
}

function keyOf(transition: TransitionLike): string {
  const { source, eventType } = transition;
  const candidates = eventType === "" ? (source.always ?? []) : (source.transitions.get(eventType) ?? []);
  const index = candidates.indexOf(transition);
  return `${source.id} on ${eventType || "(always)"} #${index}`;
}

function walk(node: StateNodeLike, visit: (node: StateNodeLike) => void): void {
  visit(node);
  for (const child of Object.values(node.states)) walk(child, visit);
}

/** Every transition a machine defines, as stable keys: `<state id> on <event> #<candidate index>`. */
export function definedTransitions(machine: AnyStateMachine): string[] {
  const keys: string[] = [];
  walk(machine.root, (node) => {
    for (const transitions of node.transitions.values()) for (const transition of transitions) keys.push(keyOf(transition));
    for (const transition of node.always ?? []) keys.push(keyOf(transition));
  });
  return keys;
}

/** The delayed-event types (`xstate.after.*`) a machine defines, by state id. */
export function delayedEventTypes(machine: AnyStateMachine): Record<string, string[]> {
  const byState: Record<string, string[]> = {};
  walk(machine.root, (node) => {
    const types = [...node.transitions.keys()].filter((type) => type.startsWith("xstate.after."));
    if (types.length > 0) byState[node.id] = types;
  });
  return byState;
}

/** Collects the transitions taken by every actor of a runtime, keyed by machine id. */
export class TransitionCoverage {
  private readonly taken = new Map<string, Set<string>>();

  /** The `inspect` option to give the runtime. */
  readonly inspect = (event: InspectionEvent): void => {
    if (event.type !== "@xstate.microstep") return;
    for (const transition of event._transitions as unknown as TransitionLike[]) {
      const machineId = transition.source.id.split(".")[0] ?? "";
      let set = this.taken.get(machineId);
      if (set === undefined) {
        set = new Set();
        this.taken.set(machineId, set);
      }
      set.add(keyOf(transition));
    }
  };

  /** Covered and missing transitions of one machine. */
  report(machine: AnyStateMachine): { machine: string; total: number; covered: number; missing: string[] } {
    const defined = definedTransitions(machine);
    const taken = this.taken.get(machine.id) ?? new Set<string>();
    const missing = defined.filter((key) => !taken.has(key));
    return { machine: machine.id, total: defined.length, covered: defined.length - missing.length, missing };
  }

  /** Writes the report of each machine where `npm run model:coverage` collects it (when it asks). */
  save(name: string, machines: AnyStateMachine[]): void {
    const directory = process.env.TROUPE_MODEL_COVERAGE_DIR;
    if (!directory) return;
    mkdirSync(directory, { recursive: true });
    writeFileSync(
      join(directory, `${name}.json`),
      JSON.stringify(
        machines.map((machine) => this.report(machine)),
        null,
        2,
      ),
    );
  }
}
