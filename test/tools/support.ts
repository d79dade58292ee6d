/**
 * Runtimes whose default agent calls tools, and the tools the tests give it.
 */
import { SimulatedClock } from "xstate";
import { z } from "zod";
import {
  createMultiProviderAgent,
  defineTool,
  type Provider,
  type Runtime,
  type RuntimeEvent,
  type RuntimeEventType,
  type Tool,
  type ToolContext,
} from "../../src/index.js";
import { startTestRuntime } from "../support/runtime.js";

/** A runtime whose default agent (`assistant`) answers with one provider and may call tools. */
export interface ToolRuntime {
  runtime: Runtime;
  /** The clock of the runtime and of the agent's tool timings. */
  clock: SimulatedClock;
  events: RuntimeEvent[];
  /** The recorded events of these types, without `seq` and `ts`. */
  eventsOf(...types: RuntimeEventType[]): Array<Record<string, unknown>>;
}

/** Starts a runtime on a simulated clock whose default agent `assistant` answers with `provider` and `tools`. */
export async function startToolRuntime(provider: Provider, tools: Tool[], options: { maxToolRounds?: number } = {}): Promise<ToolRuntime> {
  const clock = new SimulatedClock();
  clock.set(1_700_000_000_000);
  const agent = createMultiProviderAgent({ id: "assistant", providers: [provider], tools, clock, ...options });
  const { runtime } = await startTestRuntime({ agents: [agent], defaultAgentId: "assistant", clock });
  const events: RuntimeEvent[] = [];
  runtime.on("*", (event) => events.push(event));
  const eventsOf = (...types: RuntimeEventType[]): Array<Record<string, unknown>> =>
    events.filter((event) => types.includes(event.type)).map(({ seq: _seq, ts: _ts, ...rest }) => rest);
  return { runtime, clock, events, eventsOf };
}

/** A weather tool (zod parameters) that records its calls and answers `{ city, sky: "sunny" }`. */
export function weatherTool(calls: Array<{ args: { city: string }; ctx: ToolContext }> = []): Tool<{ city: string }> {
  return defineTool({
    name: "get_weather",
    description: "The current weather in a city",
    parameters: z.object({ city: z.string() }),
    execute: (args, ctx) => {
      calls.push({ args, ctx });
      return { city: args.city, sky: "sunny" };
    },
  });
}

/** A tool (JSON Schema parameters) that answers the local time of a timezone as text. */
export function timeTool(): Tool<{ zone: string }> {
  return defineTool<{ zone: string }>({
    name: "get_time",
    description: "The local time in a timezone",
    parameters: { type: "object", properties: { zone: { type: "string" } }, required: ["zone"] },
    execute: ({ zone }) => `12:00 in ${zone}`,
  });
}

/** A tool that throws. */
export function failingTool(message = "the weather service is down"): Tool {
  return defineTool({
    name: "get_weather",
    description: "The current weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } } },
    execute: () => {
      throw new Error(message);
    },
  });
}

/** A tool that runs until its signal aborts; `started` resolves when it runs, `aborted` when its signal fires. */
export function slowTool(): { tool: Tool; started: Promise<ToolContext>; aborted: Promise<void> } {
  let markStarted = (_ctx: ToolContext): void => undefined;
  let markAborted = (): void => undefined;
  const started = new Promise<ToolContext>((resolve) => {
    markStarted = resolve;
  });
  const aborted = new Promise<void>((resolve) => {
    markAborted = resolve;
  });
  const tool = defineTool({
    name: "slow_search",
    description: "Searches for a long time",
    parameters: { type: "object", properties: {} },
    execute: (_args, ctx) =>
      new Promise((_resolve, reject) => {
        ctx.signal.addEventListener("abort", () => {
          markAborted();
          reject(new Error("search aborted"));
        });
        markStarted(ctx);
      }),
  });
  return { tool, started, aborted };
}
