/**
 * The agents `troupe serve` runs until agent.yaml loading replaces them: one offline, echoing mock agent.
 */
import { createMockAgent } from "../agents/mock-agent.js";
import type { RuntimeOptions } from "../runtime/options.js";

/** The id of the built-in mock agent, also the default agent. */
export const MOCK_AGENT_ID = "mock";

/** The embedded default agent set, ready to spread into `createRuntime`. */
export function defaultAgents(): Required<Pick<RuntimeOptions, "agents" | "defaultAgentId">> {
  const mock = createMockAgent({
    id: MOCK_AGENT_ID,
    name: "Mock",
    description: "Offline mock agent: answers every prompt with `Echo: <prompt>`",
    capabilities: ["chat"],
  });
  return { agents: [mock], defaultAgentId: MOCK_AGENT_ID };
}
