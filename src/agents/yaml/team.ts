/**
 * A loaded team made into agents (SPEC §4): the default agent, with the tools and capability prompts of every
 * inlined agent merged into its own and `delegate_to_agent` when anything is delegated; and one
 * `MultiProviderCompanionAgent` per delegated agent, with its own system prompt, model, tools and history.
 */
import { BridgeError } from "../../errors.js";
import type { Provider } from "../../providers/provider.js";
import { ProviderRegistry } from "../../providers/registry.js";
import { conversationTools } from "../../conversations/conversation-tools.js";
import { delegateToAgentTool, type DelegateTarget } from "../../tools/delegate-to-agent.js";
import type { Tool } from "../../tools/tool.js";
import { MultiProviderCompanionAgent } from "../multi-provider-agent.js";
import type { RoutingSetting } from "./agent-file.js";
import type { AgentSpec, AgentTeam } from "./load-team.js";
import { decideRouting, toolsOf, type RoutingMode } from "./routing.js";

/** How one agent of a team runs, and why. */
export interface TeamRoute {
  agentId: string;
  file: string;
  line: number;
  /** What its file says (`auto` when it says nothing). */
  routing: RoutingSetting;
  /** `default`: the team's default agent; `inline`: merged into it; `delegate`: an agent of its own. */
  mode: "default" | RoutingMode;
  /** In words: `default: true`, `routing: delegate`, `4 tools (> 3)`. */
  reason: string;
  /**
   * The tools it runs with: for the default agent its own, the inlined agents' and `delegate_to_agent`; for
   * an inlined agent those it brings to the default agent.
   */
  tools: string[];
  /** For an inlined agent: the agent it is merged into. */
  inlinedInto?: string;
}

/** Routes every agent of a team: its default agent first, then each other one, in file order, as `decideRouting` says. */
function routeTeam(team: AgentTeam): TeamRoute[] {
  const routes = team.agents.map((agent): TeamRoute => {
    const place = { agentId: agent.id, file: agent.file, line: agent.line, routing: agent.routing, tools: toolsOf(agent) };
    if (agent.id === team.defaultAgentId) return { ...place, mode: "default", reason: team.defaultReason };
    const decision = decideRouting(agent);
    return { ...place, ...decision, ...(decision.mode === "inline" ? { inlinedInto: team.defaultAgentId } : {}) };
  });
  return [...routes.filter((route) => route.mode === "default"), ...routes.filter((route) => route.mode !== "default")];
}

/** What a team's agents are made with. */
export interface BuildTeamOptions {
  /** The providers every agent may answer with; at least one. */
  providers: readonly Provider[];
  /** The provider of an agent whose file names none; default: the first. */
  defaultProviderId?: string;
  /** The tools the files may name (the same the team was loaded against). */
  tools: readonly Tool[];
  /** Agents outside the team that `delegate_to_agent` may reach too: ACP workers, remote bus agents. */
  delegateTargets?: readonly DelegateTarget[];
  /** Each agent's bound on rounds of tool calls in one prompt. */
  maxToolRounds?: number;
}

/** A team's agents, ready for `createRuntime({ agents, defaultAgentId })`, and how each was routed. */
export interface BuiltTeam {
  /** The default agent first, then the delegated ones in file order. */
  agents: MultiProviderCompanionAgent[];
  defaultAgentId: string;
  routes: TeamRoute[];
}

/** A capability's prompt as a section of a system prompt; `from` names the inlined agent it came from. */
function section(capability: { name: string; prompt: string }, from?: AgentSpec): string {
  const origin = from === undefined ? "" : ` (from ${from.id}${from.description === undefined ? "" : `: ${from.description}`})`;
  return `## Capability: ${capability.name}${origin}\n${capability.prompt}`;
}

/** The system prompt, then a section per capability prompt; undefined when all are empty. */
function systemPromptOf(agent: AgentSpec, inlined: readonly AgentSpec[]): string | undefined {
  const sections = [
    ...agent.capabilities.filter((capability) => capability.prompt !== "").map((capability) => section(capability)),
    ...inlined.flatMap((other) => other.capabilities.filter((capability) => capability.prompt !== "").map((capability) => section(capability, other))),
  ];
  const parts = [...(agent.systemPrompt === undefined ? [] : [agent.systemPrompt]), ...sections];
  return parts.length === 0 ? undefined : parts.join("\n\n");
}

/**
 * Makes a loaded team's agents. The default agent gets its own capabilities and tools and those of every
 * inlined agent (an inlined agent's system prompt, provider and session settings are not used), plus
 * `delegate_to_agent` over the delegated agents and `delegateTargets` when there are any.
 */
export function buildTeam(team: AgentTeam, options: BuildTeamOptions): BuiltTeam {
  const routes = routeTeam(team);
  const registry = new ProviderRegistry([...options.providers]);
  const toolsByName = new Map(options.tools.map((tool) => [tool.name, tool]));
  const toolsFor = (agents: readonly AgentSpec[]): Tool[] =>
    [...new Set(agents.flatMap(toolsOf))].map((name) => {
      const tool = toolsByName.get(name);
      if (tool === undefined)
        throw new BridgeError("CONFIG", `tools: no tool ${name} was given to build the team of ${team.dir}`, { field: "tools", tool: name });
      return tool;
    });
  const modeOf = new Map(routes.map((route) => [route.agentId, route.mode]));
  const inlined = team.agents.filter((agent) => modeOf.get(agent.id) === "inline");
  const delegated = team.agents.filter((agent) => modeOf.get(agent.id) === "delegate");
  const defaultSpec = team.agents.find((agent) => agent.id === team.defaultAgentId)!;
  const targets: DelegateTarget[] = [
    ...delegated.map((agent) => ({ id: agent.id, ...(agent.description === undefined ? {} : { description: agent.description }) })),
    ...(options.delegateTargets ?? []),
  ];
  const defaultTools = [...toolsFor([defaultSpec, ...inlined]), ...(targets.length === 0 ? [] : [delegateToAgentTool(targets)])];
  // Long-term memory and capability state are always there (SPEC §4), besides the tools the files name.
  const withConversationTools = (tools: Tool[]): Tool[] => [...tools, ...conversationTools.filter((tool) => !tools.some((named) => named.name === tool.name))];
  const agentOf = (spec: AgentSpec, merged: readonly AgentSpec[], named: Tool[]): MultiProviderCompanionAgent => {
    const tools = withConversationTools(named);
    const systemPrompt = systemPromptOf(spec, merged);
    const defaultProviderId = spec.provider ?? options.defaultProviderId;
    return new MultiProviderCompanionAgent({
      id: spec.id,
      ...(spec.description === undefined ? {} : { description: spec.description }),
      capabilities: [spec, ...merged].flatMap((agent) => agent.capabilities.map((capability) => capability.name)),
      registry,
      ...(defaultProviderId === undefined ? {} : { defaultProviderId }),
      ...(systemPrompt === undefined ? {} : { systemPrompt }),
      ...(spec.model === undefined ? {} : { model: spec.model }),
      tools,
      ...(options.maxToolRounds === undefined ? {} : { maxToolRounds: options.maxToolRounds }),
      conversation: spec.conversation,
      inlined: merged.map((agent) => agent.id),
    });
  };
  return {
    agents: [agentOf(defaultSpec, inlined, defaultTools), ...delegated.map((spec) => agentOf(spec, [], toolsFor([spec])))],
    defaultAgentId: team.defaultAgentId,
    routes: routes.map((route) => (route.mode === "default" ? { ...route, tools: defaultTools.map((tool) => tool.name) } : route)),
  };
}
