/**
 * `troupe agents`: the agents `troupe serve` would run, with where each runs and the providers it answers
 * with, and how each agent of the agent.yaml team is routed and why, without starting any of them. Its
 * options are defined in `agents-command.ts`.
 */
import type { AgentDescription } from "../executors/executor.js";
import { InProcessExecutor } from "../executors/in-process.js";
import { WorkerExecutor } from "../executors/worker.js";
import { loadServerConfig } from "./config.js";
import { serverAgents, type AgentsOption, type LoadedTeam } from "./server-agents.js";

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
  /** The agent.yaml team, when one is loaded: its folder and each agent's routing and its reason. */
  team?: LoadedTeam;
}

/** The agents of `troupe serve` with these options (an in-process agent wins an id over a worker). */
export function listAgents(configFile: string | undefined, agentsOption?: AgentsOption): AgentsListing {
  const config = configFile === undefined ? {} : loadServerConfig(configFile);
  const { agents, defaultAgentId, liveProviders, team } = serverAgents(agentsOption, config.workers ?? []);
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
  return { agents: rows, defaultAgentId, liveProviders, ...(team === undefined ? {} : { team }) };
}

/** `openai*, mock`: the providers, the default one starred. */
function providersOf(agent: AgentRow): string {
  if (agent.providers === undefined || agent.providers.length === 0) return "-";
  return agent.providers.map((provider) => (provider.id === agent.defaultProvider ? `${provider.id}*` : provider.id)).join(", ");
}

/** Rows as columns two spaces apart, the last one unpadded. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** Each agent of the team: its routing, the decision and its reason, its tools. */
function formatTeam(team: LoadedTeam): string {
  const rows = team.routes.map((route) => [
    route.agentId,
    `${route.file}:${route.line}`,
    route.mode === "default" ? "-" : route.routing,
    route.inlinedInto === undefined ? route.mode : `inline into ${route.inlinedInto}`,
    route.reason,
    route.tools.join(", ") || "-",
  ]);
  return `agent.yaml team of ${team.dir}/:\n${table(["AGENT", "FILE", "ROUTING", "DECISION", "REASON", "TOOLS"], rows)}\n`;
}

/** The listing as an aligned table, the team's routing when there is one, and a note on providers. */
export function formatAgents(listing: AgentsListing): string {
  const rows = listing.agents.map((agent) => [
    agent.isDefault ? `${agent.id} (default)` : agent.id,
    agent.kind,
    providersOf(agent),
    agent.capabilities.join(", ") || "-",
    agent.command === undefined ? agent.description : `${agent.description} (runs: ${agent.command})`,
  ]);
  const agents = table(["ID", "KIND", "PROVIDERS", "CAPABILITIES", "DESCRIPTION"], rows);
  const team = listing.team === undefined ? "" : `\n${formatTeam(listing.team)}`;
  const providers =
    listing.liveProviders.length === 0
      ? `No provider key is set: ${listing.team === undefined ? "the assistant answers" : "the agents answer"} with the offline mock provider (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY).`
      : `Providers from the environment: ${listing.liveProviders.join(", ")}; * marks each agent's default.`;
  return `${agents}\n${team}\n${providers}\n`;
}
