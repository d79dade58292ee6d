/**
 * `troupe agents`: the agents `troupe serve` would run, with where each runs and the providers it answers
 * with, without starting any of them. (agent.yaml files and their routing decisions join this list later.)
 * Its options are defined in `agents-command.ts`.
 */
import type { AgentDescription } from "../executors/executor.js";
import { InProcessExecutor } from "../executors/in-process.js";
import { WorkerExecutor } from "../executors/worker.js";
import { loadServerConfig } from "./config.js";
import { defaultAgents } from "./default-agents.js";

/** One agent as `troupe agents` shows it. */
export interface AgentRow extends AgentDescription {
  kind: "in-process" | "worker";
  /** Whether sessions that name no agent go to it. */
  isDefault: boolean;
  /** For a worker: the command line it runs. */
  command?: string;
}

/** What `troupe agents --json` prints. */
export interface AgentsListing {
  agents: AgentRow[];
  defaultAgentId: string;
  /** Providers whose key is in the environment; empty: the assistant answers with the offline mock provider. */
  liveProviders: string[];
}

/** The agents of `troupe serve` with these options (an in-process agent wins an id over a worker). */
export function listAgents(configFile: string | undefined): AgentsListing {
  const config = configFile === undefined ? {} : loadServerConfig(configFile);
  const { agents, defaultAgentId, liveProviders } = defaultAgents();
  const inProcess = new InProcessExecutor(agents).describeAgents();
  const workers = config.workers ?? [];
  const commands = new Map(workers.map((worker) => [worker.id, [worker.command, ...(worker.args ?? [])].join(" ")]));
  const rows: AgentRow[] = [
    ...inProcess.map((agent): AgentRow => ({ ...agent, kind: "in-process", isDefault: agent.id === defaultAgentId })),
    ...new WorkerExecutor(workers)
      .describeAgents()
      .filter((agent) => !inProcess.some((other) => other.id === agent.id))
      .map((agent): AgentRow => ({ ...agent, kind: "worker", isDefault: agent.id === defaultAgentId, command: commands.get(agent.id)! })),
  ];
  return { agents: rows, defaultAgentId, liveProviders };
}

/** `openai*, mock`: the providers, the default one starred. */
function providersOf(agent: AgentRow): string {
  if (agent.providers === undefined || agent.providers.length === 0) return "-";
  return agent.providers.map((provider) => (provider.id === agent.defaultProvider ? `${provider.id}*` : provider.id)).join(", ");
}

/** The listing as an aligned table and a note on providers. */
export function formatAgents(listing: AgentsListing): string {
  const header = ["ID", "KIND", "PROVIDERS", "CAPABILITIES", "DESCRIPTION"];
  const rows = listing.agents.map((agent) => [
    agent.isDefault ? `${agent.id} (default)` : agent.id,
    agent.kind,
    providersOf(agent),
    agent.capabilities.join(", ") || "-",
    agent.command === undefined ? agent.description : `${agent.description} (runs: ${agent.command})`,
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join("  ")
      .trimEnd();
  const providers =
    listing.liveProviders.length === 0
      ? "No provider key is set: the assistant answers with the offline mock provider (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY)."
      : `Providers from the environment: ${listing.liveProviders.join(", ")}; * marks each agent's default.`;
  return `${[line(header), ...rows.map(line)].join("\n")}\n\n${providers}\n`;
}
