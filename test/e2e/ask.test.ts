/**
 * `ctx.ask` (SPEC §3.6): an in-process agent reaches a remote WebSocket agent, an ACP worker and another
 * in-process agent through the bus's delivery, and gets their answers; errors, timeouts and cancellation.
 */
import { SimulatedClock } from "xstate";
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, createRuntime, mock, type Agent, type AskReply, type MessageEnvelope, type PromptContext } from "../../src/index.js";
import { CLOCK_START, connect, flush, register, until } from "../bus/support.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { rejectionOf } from "../support/runtime.js";
import { fixtureWorker } from "../support/workers.js";
import { startRuntimeBus } from "./support.js";

const QA = "claude-code://qa";

/** An agent whose prompt is `ask`: what it does with its context, answering with the text it returns. */
function askingAgent(id: string, ask: (ctx: PromptContext) => Promise<string>): Agent {
  return { id, prompt: async (ctx) => ({ text: await ask(ctx) }) };
}

describe("ctx.ask", () => {
  it("reaches a remote WebSocket agent and an ACP worker through the bus, and gets both answers", async () => {
    const replies: AskReply[] = [];
    const lead = askingAgent("lead", async (ctx) => {
      const answers = await Promise.all([ctx.ask(QA, "Review the plan"), ctx.ask("coder", "hello worker")]);
      replies.push(...answers);
      return answers.map((answer) => answer.text).join(" | ");
    });
    const { bus } = await startRuntimeBus({ agents: [lead], workers: [fixtureWorker("coder")] });
    await register(bus, QA);
    const qa = await connect(bus, QA, {
      onMessage: async (message, context) => {
        qaInbox.push(message);
        await context.reply({ text: "LGTM", usage: { input_tokens: 3, output_tokens: 1 } });
      },
    });
    const qaInbox: MessageEnvelope[] = [];

    const result = await qa.client.ready().then(() => bus["runtime"].bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));

    expect(result.text).toBe("LGTM | Echo: hello worker");
    expect(qaInbox).toHaveLength(1);
    expect(qaInbox[0]).toMatchObject({
      sender: { agent_id: "troupe://lead", framework: "troupe" },
      message_type: "task_request",
      payload: { prompt: "Review the plan" },
    });
    expect(replies[0]).toEqual({
      text: "LGTM",
      usage: { inputTokens: 3, outputTokens: 1 },
      payload: { text: "LGTM", usage: { input_tokens: 3, output_tokens: 1 } },
    });
    expect(replies[1]).toMatchObject({ text: "Echo: hello worker", payload: { status: "completed", text: "Echo: hello worker" } });
  });

  it("reaches another in-process agent by its runtime id, with a whole payload", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "drafted", usage: { inputTokens: 2, outputTokens: 1 } }] })] });
    let asked: AskReply | undefined;
    const lead = askingAgent("lead", async (ctx) => {
      asked = await ctx.ask("writer", { prompt: "draft it", tone: "dry" });
      return asked.text;
    });
    const { runtime } = await startRuntimeBus({ agents: [lead, writer] });

    const result = await runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" });

    expect(result.text).toBe("drafted");
    expect(asked).toEqual({
      text: "drafted",
      usage: { inputTokens: 2, outputTokens: 1 },
      payload: { status: "completed", text: "drafted", stop_reason: "end_turn", usage: { input_tokens: 2, output_tokens: 1 } },
    });
  });

  it("rejects with CONFIG when the runtime has no bus", async () => {
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask("writer", "hi")).text);
    const runtime = createRuntime({ agents: [lead] });
    await runtime.start();
    try {
      const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));
      expect(error).toMatchObject({ type: "CONFIG", message: expect.stringContaining("CommunicationBus") });
    } finally {
      await runtime.stop();
    }
  });

  it("rejects with NOT_FOUND for an agent the bus does not know", async () => {
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask("nobody", "hi")).text);
    const { runtime } = await startRuntimeBus({ agents: [lead] });

    const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));

    expect(error).toMatchObject({ type: "NOT_FOUND", message: expect.stringContaining("troupe://nobody") });
  });

  it("rejects with the type of an error answer", async () => {
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask(QA, "hi")).text);
    const { bus, runtime } = await startRuntimeBus({ agents: [lead] });
    await register(bus, QA);
    await connect(bus, QA, { onMessage: (_message, context) => void context.reply({ code: "AUTH", message: "no access" }, { message_type: "error" }) });

    const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));

    expect(error).toMatchObject({ type: "AUTH", message: "no access", details: expect.objectContaining({ code: "AUTH", agentId: QA }) });
  });

  it("rejects a timeoutMs that is not a positive whole number of milliseconds with CONFIG", async () => {
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask("lead", "hi", { timeoutMs: 0 })).text);
    const { runtime } = await startRuntimeBus({ agents: [lead] });

    expect(await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }))).toMatchObject({
      type: "CONFIG",
      details: expect.objectContaining({ field: "timeoutMs" }),
    });
  });

  it.each([
    ["a BigInt", { n: 1n }, "not JSON-serializable"],
    [
      "a circular object",
      (() => {
        const circular: Record<string, unknown> = {};
        circular["self"] = circular;
        return circular;
      })(),
      "not JSON-serializable",
    ],
    ["a payload over maxBodyBytes", { prompt: "x".repeat(2_000) }, "exceeds maxBodyBytes 1000"],
  ])("rejects %s with CONFIG before sending anything", async (_name, message, text) => {
    const writer = createControlledAgent("writer");
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask("writer", message)).text);
    const { runtime } = await startRuntimeBus({ agents: [lead, writer.agent] }, { maxBodyBytes: 1_000 });

    const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));

    expect(error).toMatchObject({ type: "CONFIG", message: expect.stringContaining(text), details: expect.objectContaining({ field: "message" }) });
    expect(writer.prompts).toEqual([]);
  });

  it.each(["troupe://orchestrator", "troupe://bus"])(
    "refuses an ask to %s, an endpoint of the bus that answers nothing, at once with CONFIG",
    async (agentId) => {
      const clock = new SimulatedClock();
      clock.set(CLOCK_START);
      const lead = askingAgent("lead", async (ctx) => (await ctx.ask(agentId, "hi")).text);
      const { runtime } = await startRuntimeBus({ agents: [lead] }, { clock });

      const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));

      expect(error).toMatchObject({ type: "CONFIG", message: `${agentId} is an endpoint of the bus itself: it answers no task` });
    },
  );

  it("rejects with TIMEOUT when no answer comes within timeoutMs", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask(QA, "hi", { timeoutMs: 5_000 })).text);
    const { bus, runtime } = await startRuntimeBus({ agents: [lead] }, { clock });
    await register(bus, QA);
    const qa = await connect(bus, QA);

    const outcome = rejectionOf(runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "go" }));
    await until(() => qa.received.length === 1);
    clock.increment(5_000);

    expect(await outcome).toMatchObject({ type: "TIMEOUT", details: expect.objectContaining({ agentId: QA, timeoutMs: 5_000 }) });
    await until(() => qa.received.length === 2);
    expect(qa.received[1]).toMatchObject({
      message_type: "status_update",
      payload: { status: "cancelled", reason: "timeout" },
      metadata: { in_reply_to: qa.received[0]!.message_id },
    });
  });

  it("cancels the asked agent's prompt when the asking prompt is cancelled", async () => {
    const planner = createControlledAgent("planner");
    const lead = askingAgent("lead", async (ctx) => (await ctx.ask("planner", "plan")).text);
    const { runtime } = await startRuntimeBus({ agents: [lead, planner.agent] });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "lead" });

    const outcome = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "go" }));
    await until(() => planner.prompts.length === 1);
    await runtime.bridge.sessionsCancel({ sessionId });

    expect(await outcome).toMatchObject({ type: "CANCELLED" });
    await until(() => planner.prompts[0]!.ctx.signal.aborted);
    await flush();
    expect(planner.cancels).toEqual([{ sessionId: planner.prompts[0]!.ctx.session.sessionId, requestId: expect.stringMatching(/^ask_/) }]);
  });
});
