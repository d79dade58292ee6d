/**
 * Agents asking agents (SPEC §3.6) in chains: an ask is answered in a bridge session of the asking session's
 * own, so recursion works, users do not share the asked agent's session, and a cycle ends at `maxAskDepth`
 * with CONFIG instead of freezing the process; each hop leaves the event loop room for timers and I/O.
 */
import { describe, expect, it } from "vitest";
import type { Agent, PromptContext } from "../../src/index.js";
import { call, flush, until } from "../bus/support.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { rejectionOf } from "../support/runtime.js";
import { startRuntimeBus } from "./support.js";

/** An agent whose prompt is `ask`: what it does with its context, answering with the text it returns. */
function askingAgent(id: string, ask: (ctx: PromptContext) => Promise<string>): Agent {
  return { id, prompt: async (ctx) => ({ text: await ask(ctx) }) };
}

describe("ask chains", () => {
  it("ends an agent asking itself with CONFIG ask depth exceeded, long before its timeout, and closes every session of the chain", async () => {
    let prompts = 0;
    const router = askingAgent("router", async (ctx) => {
      prompts += 1;
      return (await ctx.ask("router", ctx.prompt)).text;
    });
    const { bus, runtime } = await startRuntimeBus({ agents: [router] });

    const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "router", prompt: "route me", timeout: 60_000 }));

    expect(error).toMatchObject({ type: "CONFIG", message: expect.stringContaining("ask depth exceeded") });
    // The first prompt and one per ask of the chain (8 by default).
    expect(prompts).toBe(9);
    expect((await call(bus, "GET", "/health")).status).toBe(200);
    // Each asked session was the asking session's: closing the delegated one closed them all.
    await until(() => runtime.health().sessions.total === 0);
  });

  it("ends a cycle of two agents (a → b → a) the same way, at the bus's maxAskDepth", async () => {
    const asked: string[] = [];
    const a = askingAgent("a", async (ctx) => {
      asked.push("a");
      return (await ctx.ask("b", ctx.prompt)).text;
    });
    const b = askingAgent("b", async (ctx) => {
      asked.push("b");
      return (await ctx.ask("a", ctx.prompt)).text;
    });
    const { runtime } = await startRuntimeBus({ agents: [a, b] }, { maxAskDepth: 3 });

    const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "a", prompt: "ping" }));

    expect(error).toMatchObject({ type: "CONFIG", message: expect.stringMatching(/^ask depth exceeded: .*maxAskDepth 3/) });
    expect(asked).toEqual(["a", "b", "a", "b"]);
  });

  it("answers a finite recursion: an agent asking itself n → n-1 → … → 0", async () => {
    const solver = askingAgent("solver", async (ctx) => {
      const n = Number(ctx.prompt);
      return n === 0 ? "0" : `${n} ${(await ctx.ask("solver", String(n - 1))).text}`;
    });
    const { runtime } = await startRuntimeBus({ agents: [solver] });

    const result = await runtime.bridge.tasksDelegate({ agentId: "solver", prompt: "4" });

    expect(result.text).toBe("4 3 2 1 0");
  });

  it("lets the event loop run between the hops of a chain of asks", async () => {
    let prompts = 0;
    const router = askingAgent("router", async (ctx) => {
      prompts += 1;
      return (await ctx.ask("router", ctx.prompt)).text;
    });
    const { runtime } = await startRuntimeBus({ agents: [router] });
    const promptsAtTurn: number[] = [];
    const countTurns = (): void => {
      promptsAtTurn.push(prompts);
      if (promptsAtTurn.length < 3) setImmediate(countTurns);
    };
    setImmediate(countTurns);

    await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "router", prompt: "route me" }));

    // Without a turn per hop, the whole chain would run in microtasks before the first turn came.
    expect(promptsAtTurn).toEqual([1, 2, 3]);
  });

  it("answers the asks of concurrent users in sessions of their own: none is BUSY, and none sees another's history", async () => {
    const memo = createControlledAgent("memo");
    const front = askingAgent("front", async (ctx) => (await ctx.ask("memo", ctx.prompt)).text);
    const { runtime } = await startRuntimeBus({ agents: [front, memo.agent] });

    const users = Array.from({ length: 20 }, (_, index) => `user ${index}`);
    const replies = users.map((user) => runtime.bridge.tasksDelegate({ agentId: "front", prompt: user }));
    await until(() => memo.prompts.length === 20);
    for (const prompt of memo.prompts) prompt.reply({ text: `noted ${prompt.ctx.prompt}` });

    expect((await Promise.all(replies)).map((reply) => reply.text)).toEqual(users.map((user) => `noted ${user}`));
    expect(new Set(memo.prompts.map((prompt) => prompt.ctx.session.sessionId)).size).toBe(20);
    for (const prompt of memo.prompts) expect(prompt.ctx.history).toEqual([]);
    // Each memo session closed with the delegated session that asked in it.
    await until(() => memo.closes.length === 20);
    expect(runtime.health().sessions.total).toBe(0);
  });

  it("keeps one conversation per asking session: a later ask of the same session sees the earlier one", async () => {
    const memo = createControlledAgent("memo");
    const front = askingAgent("front", async (ctx) => (await ctx.ask("memo", ctx.prompt)).text);
    const { runtime } = await startRuntimeBus({ agents: [front, memo.agent] });
    const alice = await runtime.bridge.sessionsCreate({ agentId: "front" });
    const bob = await runtime.bridge.sessionsCreate({ agentId: "front" });

    const first = runtime.bridge.sessionsPrompt({ sessionId: alice.sessionId, prompt: "alice's secret" });
    await until(() => memo.prompts.length === 1);
    memo.current().reply({ text: "kept" });
    await first;
    const second = runtime.bridge.sessionsPrompt({ sessionId: bob.sessionId, prompt: "bob's question" });
    await until(() => memo.prompts.length === 2);
    memo.current().reply({ text: "answered" });
    await second;
    const third = runtime.bridge.sessionsPrompt({ sessionId: alice.sessionId, prompt: "alice again" });
    await until(() => memo.prompts.length === 3);
    memo.current().reply();
    await third;

    expect(memo.prompts[1]!.ctx.history).toEqual([]);
    expect(memo.prompts[2]!.ctx.history).toEqual([
      { role: "user", content: "alice's secret" },
      { role: "assistant", content: "kept" },
    ]);
    expect(memo.prompts[2]!.ctx.session.sessionId).toBe(memo.prompts[0]!.ctx.session.sessionId);

    await runtime.bridge.sessionsClose({ sessionId: alice.sessionId });
    await until(() => memo.closes.length === 1);
    expect(memo.closes).toEqual([{ sessionId: memo.prompts[0]!.ctx.session.sessionId, reason: "closed" }]);
    await flush();
    expect(runtime.health().sessions.total).toBe(2);
  });
});
