/**
 * The runtime's agents as bus agents (SPEC §3.6): the agent `coder` is `troupe://coder` on the bus, and an id
 * that already names a framework (`claude-code://qa`) is used as it is.
 */
import type { AgentKind, AgentState } from "../../machines/agent.machine.js";
import type { AgentDescriptor } from "../executors/executor.js";
import { AGENT_ID_PATTERN } from "../protocol/envelope.js";

/** The framework of the runtime's own agents on the bus. */
export const RUNTIME_FRAMEWORK = "troupe";
/** The initiator an auto workflow can name when no agent of its own should receive the answers (the bus plays it). */
export const ORCHESTRATOR_AGENT_ID = "troupe://orchestrator";
/** The sender of the messages the bus writes itself (the `DELIVERY_FAILED` errors). */
export const BUS_AGENT_ID = "troupe://bus";

/** Whether an id is in the runtime's own framework (`troupe://…`): only its agents and the bus's endpoints are. */
export function isRuntimeFramework(agentId: string): boolean {
  return agentId.startsWith(`${RUNTIME_FRAMEWORK}://`);
}

/** The bus id of a runtime agent: `writer` → `troupe://writer`; `opencode://backend` stays as it is. */
export function busAgentIdOf(agentId: string): string {
  return AGENT_ID_PATTERN.test(agentId) ? agentId : `${RUNTIME_FRAMEWORK}://${agentId}`;
}

/** The runtime agent ids a bus id may stand for: itself (an id with a framework), then the name after `troupe://`. */
export function runtimeAgentIdCandidates(busAgentId: string): string[] {
  const prefix = `${RUNTIME_FRAMEWORK}://`;
  if (!busAgentId.startsWith(prefix)) return [busAgentId];
  const name = busAgentId.slice(prefix.length);
  // `troupe://opencode://x` names no runtime agent: `opencode://x` is its own bus id.
  return AGENT_ID_PATTERN.test(name) ? [busAgentId] : [busAgentId, name];
}

/** One of the runtime's agents as the bus lists it. */
export interface RuntimeBusAgent {
  busAgentId: string;
  agentId: string;
  kind: AgentKind;
  name: string;
  description: string;
  capabilities: string[];
  /** Its actor's state; `offline` while the runtime is not running (its actors are gone). */
  state: AgentState;
  /** While the runtime runs. */
  online: boolean;
}

/** What `agents_discover` says of an actor's state: its enum has no `offline`, which is `unavailable` there. */
export function discoverStatusOf(state: AgentState): AgentDescriptor["status"] {
  return state === "offline" ? "unavailable" : state;
}

/**
 * The workflow session whose tasks a bridge session answers: the bus opens those sessions with
 * `metadata.bus.session_id` (src/bus/bus-sessions.ts). Prompts' events name it as their `workflowId`.
 */
export function workflowOfSession(metadata: Record<string, unknown>): string | undefined {
  const bus = metadata["bus"];
  if (typeof bus !== "object" || bus === null) return undefined;
  const workflowId = (bus as { session_id?: unknown }).session_id;
  return typeof workflowId === "string" ? workflowId : undefined;
}
