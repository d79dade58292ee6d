/**
 * `delegate_to_agent`, the built-in tool of a team's default agent (SPEC §4): it hands a task to another
 * agent through `ctx.ask`, the bus's typed delivery, so the agent asked may be a delegated agent of the team,
 * an ACP worker or a remote WebSocket agent alike, and answers with what that agent says.
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import type { Tool } from "./tool.js";
import { defineTool } from "./define-tool.js";

/** The tool's name, as the model calls it. */
export const DELEGATE_TOOL_NAME = "delegate_to_agent";

/** An agent `delegate_to_agent` may reach: a runtime id (`backend`, a worker's id) or a bus id (`claude-code://qa`). */
export interface DelegateTarget {
  id: string;
  /** What it does, for the model choosing one. */
  description?: string;
}

/** The arguments the model gives. */
export interface DelegateArgs {
  agent: string;
  task: string;
}

/** Options of `delegateToAgentTool`. */
export interface DelegateToolOptions {
  /** How long to wait for the answer. Default: the bus's `messageTimeout`. */
  timeoutMs?: number;
}

/** The `delegate_to_agent` tool over these agents; at least one, each once. */
export function delegateToAgentTool(targets: readonly DelegateTarget[], options: DelegateToolOptions = {}): Tool<DelegateArgs> {
  const ids = targets.map((target) => target.id);
  const [first, ...rest] = ids;
  if (first === undefined) throw new BridgeError("CONFIG", `${DELEGATE_TOOL_NAME}: needs at least one agent to delegate to`, { field: "targets" });
  const repeated = ids.find((id, index) => ids.indexOf(id) !== index);
  if (repeated !== undefined) throw new BridgeError("CONFIG", `${DELEGATE_TOOL_NAME}: agent ${repeated} is listed twice`, { field: "targets" });
  const roster = targets.map((target) => `${target.id}${target.description === undefined ? "" : `: ${target.description}`}`).join("; ");
  return defineTool({
    name: DELEGATE_TOOL_NAME,
    description: `Hand a task to another agent and get its answer. Write the task so that it stands alone: the agent sees nothing else of this conversation. Agents: ${roster}.`,
    parameters: z.strictObject({
      agent: z.enum([first, ...rest]).describe("the agent to hand the task to"),
      task: z.string().trim().min(1).describe("what the agent should do, with everything it needs to know"),
    }),
    execute: async ({ agent, task }, ctx) => {
      const reply = await ctx.ask(agent, task, options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs });
      return reply.text;
    },
  });
}
