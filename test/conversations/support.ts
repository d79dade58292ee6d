/**
 * Conversations for tests: a team of agents answering with the mock provider, a runtime on a simulated clock,
 * and cleanup after each test.
 */
import { afterEach } from "vitest";
import { SimulatedClock } from "xstate";
import {
  createMultiProviderAgent,
  createRuntime,
  mock,
  type Agent,
  type ConversationSettings,
  type MockScript,
  type PromptContext,
  type Runtime,
  type RuntimeOptions,
} from "../../src/index.js";
import type { ToolContext } from "../../src/tools/tool.js";

const started: Runtime[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((runtime) => runtime.stop()));
});

/** Where the simulated clock starts. */
export const CLOCK_START = 1_700_000_000_000;

/** What a team member answers: who it is, what it heard, and how many messages of history its model was sent. */
export function heard(agentId: string, prompt: string, historyLength: number): string {
  return `${agentId} heard "${prompt}" after ${historyLength} messages`;
}

/** An agent answering with the mock provider: `heard(...)`, unless a script is given. */
export function teamAgent(id: string, conversation?: ConversationSettings, script?: MockScript): Agent {
  return createMultiProviderAgent({
    id,
    providers: [mock({ script: script ?? ((ctx: PromptContext) => ({ text: heard(id, ctx.prompt, ctx.history.length) })) })],
    ...(conversation === undefined ? {} : { conversation }),
  });
}

/** A started runtime on a simulated clock, stopped after the test. */
export async function startTeam(options: RuntimeOptions): Promise<{ runtime: Runtime; clock: SimulatedClock }> {
  const clock = new SimulatedClock();
  clock.set(CLOCK_START);
  const runtime = createRuntime({ clock, ...options });
  await runtime.start();
  started.push(runtime);
  return { runtime, clock };
}

/** Lets promise callbacks (sessions closing, answers reaching the actors) run. */
export async function settle(): Promise<void> {
  for (let turn = 0; turn < 5; turn += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The `ToolContext` the tool loop gives a tool called during the prompt `ctx`. */
export function toolContextOf(ctx: PromptContext, agentId: string, callId = "call-1"): ToolContext {
  return { session: ctx.session, agentId, requestId: ctx.requestId, callId, signal: ctx.signal, ask: ctx.ask };
}
