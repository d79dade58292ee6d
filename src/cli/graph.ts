/**
 * `troupe graph <machine>`: a machine of `machines/` offline, as JSON (its states and transitions), a
 * Mermaid `stateDiagram-v2`, or a standalone SVG. The machines (and XState) load when the command runs.
 */
import { writeFileSync } from "node:fs";
import { Option, type Command } from "commander";
import { EXAMPLE_WORKFLOW_STEPS, MACHINE_NAMES } from "../graph/machine-names.js";
import { toMermaid } from "../graph/mermaid.js";
import { stateGraphOf } from "../graph/state-graph.js";
import { toSvg } from "../graph/svg.js";
import { CliFailure, EXIT_FAILED } from "./exit-codes.js";

/** The formats `--format` takes. */
export const GRAPH_FORMATS = ["json", "mermaid", "svg"] as const;

/** A format `--format` takes. */
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

/** The text of a machine's graph in a format (`steps` build the workflow machine). */
export async function renderGraph(machineName: string, format: GraphFormat, steps: string[] = EXAMPLE_WORKFLOW_STEPS): Promise<string> {
  const { MACHINES } = await import("../graph/machines.js");
  const graph = stateGraphOf(MACHINES[machineName]!(steps));
  if (format === "json") return `${JSON.stringify(graph, null, 2)}\n`;
  return format === "mermaid" ? toMermaid(graph) : toSvg(graph);
}

/** `--steps a,b,c`: step names of the workflow machine. */
function parseSteps(text: string): string[] {
  return text
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
}

/** Adds `troupe graph` to the program. */
export function registerGraphCommand(program: Command): void {
  program
    .command("graph")
    .summary("export a state machine as JSON, Mermaid or SVG")
    .description(
      "Print one of troupe's state machines (machines/) offline: its states and transitions as JSON, a Mermaid stateDiagram-v2, or an SVG laid out by ELK.",
    )
    .addArgument(program.createArgument("<machine>", "the machine").choices(MACHINE_NAMES))
    .addOption(new Option("--format <format>", "what to print").choices(GRAPH_FORMATS).default("json"))
    .option("--steps <names>", `the workflow machine's steps, comma-separated (default: ${EXAMPLE_WORKFLOW_STEPS.join(",")})`, parseSteps)
    .option("-o, --output <file>", "write to this file instead of stdout")
    .action(async (machine: string, flags: { format: GraphFormat; steps?: string[]; output?: string }) => {
      const text = await renderGraph(machine, flags.format, flags.steps);
      if (flags.output === undefined) {
        process.stdout.write(text);
        return;
      }
      try {
        writeFileSync(flags.output, text);
      } catch (error) {
        throw new CliFailure(`cannot write ${flags.output}: ${(error as Error).message}`, EXIT_FAILED);
      }
    });
}
