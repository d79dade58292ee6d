/**
 * `createMockAgent`: an offline agent driven by a mock script, for tests, demos and the server's defaults.
 */
import type { SessionCloseReason, SessionInfo } from "../../machines/session.machine.js";
import { systemClock, type Clock } from "../clock.js";
import { mockStepPicker, playMockStep, type MockScript } from "../providers/mock.js";
import type { Agent, AgentReply, PromptContext } from "./agent.js";

/** Options of a mock agent. Hooks are optional and called as any agent's would be. */
export interface MockAgentOptions {
  id: string;
  name?: string;
  description?: string;
  capabilities?: string[];
  script?: MockScript;
  /** The clock delays run on; pass the runtime's when tests drive time. */
  clock?: Clock;
  onSessionOpen?(session: SessionInfo): void | Promise<void>;
  onCancel?(ctx: { session: SessionInfo; requestId: string }): void;
  onSessionClose?(session: SessionInfo, reason: SessionCloseReason): void | Promise<void>;
}

/** An agent that answers from a script (default: echo), honouring cancellation. */
export function createMockAgent(options: MockAgentOptions): Agent {
  const pickStep = mockStepPicker(options.script);
  const clock = options.clock ?? systemClock;
  const { script: _script, clock: _clock, ...identityAndHooks } = options;
  return {
    name: options.id,
    description: "Offline mock agent",
    capabilities: [],
    providers: [{ id: "mock", models: ["mock-1"] }],
    defaultProviderId: "mock",
    ...identityAndHooks,
    prompt: (ctx: PromptContext): Promise<AgentReply> => playMockStep(pickStep(ctx), ctx, clock),
  };
}
