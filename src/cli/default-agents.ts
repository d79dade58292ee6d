/**
 * The built-in agents of `troupe serve` (next to a team of agent.yaml files, see server-agents.ts): `assistant`, a
 * `MultiProviderCompanionAgent` over every provider whose key is set (and the offline mock), and `mock`, an
 * echoing agent that never leaves the machine.
 */
import { createMockAgent } from "../agents/mock-agent.js";
import { createMultiProviderAgent } from "../agents/multi-provider-agent.js";
import { anthropic } from "../providers/anthropic.js";
import { readProviderEnv } from "../providers/env.js";
import { gemini } from "../providers/gemini.js";
import { mock } from "../providers/mock-provider.js";
import { openAI } from "../providers/openai.js";
import type { Provider } from "../providers/provider.js";
import type { RuntimeOptions } from "../runtime/options.js";

/** The id of the built-in echoing mock agent. */
export const MOCK_AGENT_ID = "mock";
/** The id of the built-in multi-provider agent, the default agent. */
export const ASSISTANT_AGENT_ID = "assistant";

/** The embedded default agents, ready to spread into `createRuntime`, and the providers the assistant uses. */
export interface DefaultAgents extends Required<Pick<RuntimeOptions, "agents" | "defaultAgentId">> {
  /** Ids of the real providers found in the environment (empty: the assistant answers with `mock`). */
  liveProviders: string[];
  defaultProvider: string;
  /** The assistant's providers (the live ones, then `mock`), which agent.yaml agents answer with too. */
  providers: Provider[];
}

/** Builds the default agents from the provider keys in the environment (OPENAI_API_KEY, OPENAI_BASE_URL, …). */
export function defaultAgents(): DefaultAgents {
  const live: Provider[] = [];
  if (readProviderEnv("OPENAI_API_KEY") !== undefined || readProviderEnv("OPENAI_BASE_URL") !== undefined) live.push(openAI());
  if (readProviderEnv("ANTHROPIC_API_KEY") !== undefined) live.push(anthropic());
  if (readProviderEnv("GEMINI_API_KEY") !== undefined) live.push(gemini());
  const defaultProvider = live[0]?.id ?? "mock";
  const providers = [...live, mock()];
  const assistant = createMultiProviderAgent({
    id: ASSISTANT_AGENT_ID,
    name: "Assistant",
    description: `Answers with ${defaultProvider} by default; metadata.provider picks another of its providers`,
    capabilities: ["chat"],
    providers,
    defaultProviderId: defaultProvider,
  });
  const echo = createMockAgent({
    id: MOCK_AGENT_ID,
    name: "Mock",
    description: "Offline mock agent: answers every prompt with `Echo: <prompt>`",
    capabilities: ["chat"],
  });
  return {
    agents: [assistant, echo],
    defaultAgentId: ASSISTANT_AGENT_ID,
    liveProviders: live.map((provider) => provider.id),
    defaultProvider,
    providers,
  };
}
