/**
 * Routing (seed: agent-yaml-routing.txt): whether an agent of a team is inlined into the default agent (its
 * tools join the default agent's) or delegated to (it runs as its own agent, reached by `delegate_to_agent`).
 */
import type { AgentSpec } from "./load-team.js";

/** `routing: auto` inlines an agent with at most this many tools... */
export const MAX_INLINE_TOOLS = 3;
/** ...and capability prompts under this many characters together... (and no `model`). */
export const INLINE_PROMPT_CHARACTER_LIMIT = 2000;

/** Where an agent of a team runs. */
export type RoutingMode = "inline" | "delegate";

/** A routing decision and why, in words a person reads in `troupe agents` (`4 tools (> 3)`). */
export interface RoutingDecision {
  mode: RoutingMode;
  reason: string;
}

/** The distinct tools an agent's capabilities bring, in the order they are named. */
export function toolsOf(agent: Pick<AgentSpec, "capabilities">): string[] {
  return [...new Set(agent.capabilities.flatMap((capability) => capability.tools))];
}

/** Characters as a person counts them (code points, not UTF-16 units), of every capability prompt together. */
function capabilityPromptCharacters(agent: Pick<AgentSpec, "capabilities">): number {
  return agent.capabilities.reduce((sum, capability) => sum + [...capability.prompt].length, 0);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * Decides how an agent is routed. An explicit `inline` or `delegate` is taken as it is. `auto` inlines iff
 * the agent has at most 3 tools, sets no `model`, and its capability prompts are under 2000 characters
 * together; the reason names every test that failed, or all three that passed.
 */
export function decideRouting(agent: Pick<AgentSpec, "routing" | "model" | "capabilities">): RoutingDecision {
  if (agent.routing !== "auto") return { mode: agent.routing, reason: `routing: ${agent.routing}` };
  const tools = toolsOf(agent).length;
  const characters = capabilityPromptCharacters(agent);
  const toolsFit = tools <= MAX_INLINE_TOOLS;
  const promptsFit = characters < INLINE_PROMPT_CHARACTER_LIMIT;
  if (toolsFit && agent.model === undefined && promptsFit) {
    return {
      mode: "inline",
      reason: `${plural(tools, "tool")} (≤ ${MAX_INLINE_TOOLS}), no model, capability prompts ${plural(characters, "character")} (< ${INLINE_PROMPT_CHARACTER_LIMIT})`,
    };
  }
  const failed = [
    ...(toolsFit ? [] : [`${plural(tools, "tool")} (> ${MAX_INLINE_TOOLS})`]),
    ...(agent.model === undefined ? [] : [`model ${agent.model}`]),
    ...(promptsFit ? [] : [`capability prompts ${plural(characters, "character")} (≥ ${INLINE_PROMPT_CHARACTER_LIMIT})`]),
  ];
  return { mode: "delegate", reason: failed.join("; ") };
}
