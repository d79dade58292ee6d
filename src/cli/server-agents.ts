/**
 * The agents `troupe serve`, `troupe mcp`, `troupe agents` and `troupe delegate` run: the built-in ones
 * (default-agents.ts) and a team of agent.yaml files, from `--agents DIR` or, without it, from `./agents`
 * when that folder holds any. The team's default agent is then the runtime's default agent.
 */
import { statSync } from "node:fs";
import { buildTeam, type TeamRoute } from "../agents/yaml/team.js";
import { listAgentFiles, loadAgentTeam } from "../agents/yaml/load-team.js";
import { BridgeError } from "../errors.js";
import type { WorkerConfig } from "../executors/worker.js";
import { utilityTools } from "../tools/utility-tools.js";
import { conversationTools } from "../conversations/conversation-tools.js";
import { defaultAgents, type DefaultAgents } from "./default-agents.js";

/** The folder read when `--agents` is not given, relative to the working directory. */
export const DEFAULT_AGENTS_DIR = "agents";

/** `--agents DIR`; `false` for `--no-agents` (the built-in agents only); undefined: `./agents` if it holds agent files. */
export type AgentsOption = string | false | undefined;

/** The team of a folder, as `troupe agents` shows it. */
export interface LoadedTeam {
  dir: string;
  defaultAgentId: string;
  routes: TeamRoute[];
}

/** The server's agents: the built-in ones, after the team's when there is one. */
export interface ServerAgents extends DefaultAgents {
  team?: LoadedTeam;
}

/** Whether a path is a folder. */
function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The folder to load: the one named (which must be there), or `./agents` when it holds agent files. */
function teamFolder(option: AgentsOption): string | undefined {
  if (option === false) return undefined;
  if (option === undefined) return isFolder(DEFAULT_AGENTS_DIR) && listAgentFiles(DEFAULT_AGENTS_DIR).length > 0 ? DEFAULT_AGENTS_DIR : undefined;
  if (option === "") throw new BridgeError("CONFIG", "--agents: must not be empty", { field: "agents" });
  if (!isFolder(option)) {
    throw new BridgeError(
      "CONFIG",
      `--agents ${option}: no such folder (name a folder of agent.yaml files, or give --no-agents for the built-in agents only)`,
      {
        field: "agents",
        file: option,
      },
    );
  }
  // `team/` and `team` are one folder: named without the slash in messages (`team/lead.yaml:2`).
  return option.length > 1 ? option.replace(/[\\/]+$/, "") : option;
}

/**
 * Builds the server's agents. A team's agents may not take a built-in agent's or a worker's id; its
 * default agent may delegate to its delegated agents and to the workers. A bad folder or file is CONFIG.
 */
export function serverAgents(option: AgentsOption, workers: readonly WorkerConfig[] = []): ServerAgents {
  const builtIn = defaultAgents();
  const dir = teamFolder(option);
  if (dir === undefined) return builtIn;
  // Files may name the utility tools and the conversation tools (every agent has the latter anyway).
  const tools = [...utilityTools(), ...conversationTools];
  const takenIds = new Map<string, string>([
    ...builtIn.agents.map((agent): [string, string] => [agent.id, "a built-in agent"]),
    ...workers.map((worker): [string, string] => [worker.id, "a worker of --config"]),
  ]);
  const team = loadAgentTeam(dir, { toolNames: tools.map((tool) => tool.name), providerIds: builtIn.providers.map((provider) => provider.id), takenIds });
  const built = buildTeam(team, {
    providers: builtIn.providers,
    defaultProviderId: builtIn.defaultProvider,
    tools,
    delegateTargets: workers.map((worker) => ({ id: worker.id, ...(worker.description === undefined ? {} : { description: worker.description }) })),
  });
  return {
    ...builtIn,
    agents: [...built.agents, ...builtIn.agents],
    defaultAgentId: built.defaultAgentId,
    team: { dir, defaultAgentId: built.defaultAgentId, routes: built.routes },
  };
}

/** One line on the team: `agents/: orchestrator (default), frontend (inline), backend (delegate)`. */
export function describeTeam(team: LoadedTeam): string {
  return `${team.dir}/: ${team.routes.map((route) => `${route.agentId} (${route.mode})`).join(", ")}`;
}
