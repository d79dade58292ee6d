/**
 * How conversations use each agent: its `ConversationSettings` (agent.yaml `session:`) with their defaults,
 * validated once when the runtime is created.
 */
import { z } from "zod";
import type { Agent, ConversationSettings } from "../agents/agent.js";
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import type { ConversationIsolation } from "../../machines/conversation.machine.js";
import { parseWith } from "../validation.js";

/** An agent's conversation settings with every default applied. */
export interface ResolvedConversationSettings {
  trigger: "mention" | "always";
  isolation: ConversationIsolation;
  idleTimeoutMs: number;
  historyWindow: number;
}

/** How long a conversation may idle by default (SPEC §4). */
const DEFAULT_IDLE_TIMEOUT_MINUTES = 30;
/** Messages of a conversation its model is sent by default (SPEC §4). `trigger` depends on the agent (see `resolveSettings`). */
const DEFAULT_CONVERSATION_HISTORY_WINDOW = 30;

const settingsSchema = z.strictObject({
  trigger: z.enum(["mention", "always"]).optional(),
  isolation: z.enum(["shared", "per_thread"]).optional(),
  // 0 never ends a conversation for idleness; the longest is the longest timer delay.
  idleTimeoutMinutes: z
    .number()
    .min(0)
    .max(MAX_TIMER_DELAY_MS / 60_000)
    .optional(),
  historyWindow: z.number().int().min(0).optional(),
});

/** Checks the `conversation` settings of each agent; a bad value is CONFIG naming `agents[i].conversation.<field>`. */
export function checkConversationSettings(agents: readonly Agent[]): Map<string, ConversationSettings> {
  const byAgent = new Map<string, ConversationSettings>();
  agents.forEach((agent, index) => {
    if (agent.conversation === undefined) return;
    byAgent.set(agent.id, parseWith(settingsSchema, agent.conversation, { prefix: [`agents[${index}]`, "conversation"] }));
  });
  return byAgent;
}

/**
 * The settings of one agent. The runtime's default agent is the entry point of conversations: unless its
 * settings say `trigger: mention`, it takes every message that mentions no agent (`always`); every other
 * agent's trigger defaults to `mention`.
 */
export function resolveSettings(settings: ConversationSettings | undefined, isDefaultAgent: boolean): ResolvedConversationSettings {
  return {
    trigger: settings?.trigger ?? (isDefaultAgent ? "always" : "mention"),
    isolation: settings?.isolation ?? "shared",
    idleTimeoutMs: Math.round((settings?.idleTimeoutMinutes ?? DEFAULT_IDLE_TIMEOUT_MINUTES) * 60_000),
    historyWindow: settings?.historyWindow ?? DEFAULT_CONVERSATION_HISTORY_WINDOW,
  };
}
