/**
 * `runtime.converse` (SPEC §4): which agent answers a message, which conversation (and so which bridge session
 * and history) it goes to, follow-ups in threads, idle conversations ending on simulated time, handoffs and
 * capability state. Every agent answers with the mock provider.
 */
import { describe, expect, it } from "vitest";
import { createMockAgent, createMultiProviderAgent, mock, readCapabilityState, writeCapabilityState, type Agent, type PromptContext } from "../../src/index.js";
import { capabilityStateGet, capabilityStateSet } from "../../src/conversations/capability-tools.js";
import { startBus } from "../bus/support.js";
import { rejectionOf } from "../support/runtime.js";
import { heard, settle, startTeam, teamAgent, toolContextOf } from "./support.js";

const MINUTE = 60_000;

describe("which agent answers", () => {
  it("answers with the default agent, and keeps one conversation whose session remembers the earlier turns", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator"), teamAgent("backend")], defaultAgentId: "orchestrator" });

    const first = await runtime.converse({ userId: "ada", threadId: "t1", text: "hello" });
    const second = await runtime.converse({ userId: "ada", threadId: "t1", text: "what did I say?" });

    expect(first).toEqual({ agentId: "orchestrator", sessionId: expect.any(String), text: heard("orchestrator", "hello", 0), handoffs: [] });
    expect(second).toMatchObject({ agentId: "orchestrator", sessionId: first.sessionId, text: heard("orchestrator", "what did I say?", 2) });
    expect((await runtime.bridge.sessionsStatus({ sessionId: first.sessionId })).status).toBe("idle");
  });

  it("hands a message that mentions @agent to that agent, and the thread's follow-ups stay with it", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator"), teamAgent("backend")], defaultAgentId: "orchestrator" });

    const mentioned = await runtime.converse({ userId: "ada", threadId: "t1", text: "@backend add an endpoint" });
    const followUp = await runtime.converse({ userId: "ada", threadId: "t1", text: "and test it" });
    const otherThread = await runtime.converse({ userId: "ada", threadId: "t2", text: "hi" });

    expect(mentioned).toMatchObject({ agentId: "backend", text: heard("backend", "@backend add an endpoint", 0) });
    expect(followUp).toMatchObject({ agentId: "backend", sessionId: mentioned.sessionId, text: heard("backend", "and test it", 2) });
    expect(otherThread.agentId).toBe("orchestrator");
  });

  it("follows a thread up with the conversation that took its latest turn, until another agent is mentioned", async () => {
    const { runtime } = await startTeam({
      agents: [teamAgent("orchestrator"), teamAgent("backend"), teamAgent("frontend")],
      defaultAgentId: "orchestrator",
    });
    const say = (text: string) => runtime.converse({ userId: "ada", threadId: "t1", text }).then((answer) => answer.agentId);

    expect(await say("hi")).toBe("orchestrator");
    expect(await say("@backend the API")).toBe("backend");
    expect(await say("more API")).toBe("backend");
    expect(await say("@frontend the page")).toBe("frontend");
    expect(await say("more page")).toBe("frontend");
    expect(await say("@orchestrator status?")).toBe("orchestrator");
    expect(await say("thanks")).toBe("orchestrator");
  });

  it("reads a mention only as @<agentId> ending where the id ends, the longest id winning", async () => {
    const { runtime } = await startTeam({
      agents: [teamAgent("orchestrator"), teamAgent("ops"), teamAgent("ops-lead")],
      defaultAgentId: "orchestrator",
    });
    const agentOf = (userId: string, text: string) => runtime.converse({ userId, text }).then((answer) => answer.agentId);

    expect(await agentOf("u1", "mail me at me@ops.io")).toBe("orchestrator");
    expect(await agentOf("u2", "@opsy are you there")).toBe("orchestrator");
    expect(await agentOf("u3", "ask @ops-lead, please")).toBe("ops-lead");
    expect(await agentOf("u4", "(@ops) restart it")).toBe("ops");
  });

  it("hands a mention of an inlined agent to the agent it is inlined into; an @ of no agent is no mention", async () => {
    const orchestrator = createMultiProviderAgent({
      id: "orchestrator",
      providers: [mock({ script: (ctx: PromptContext) => ({ text: heard("orchestrator", ctx.prompt, ctx.history.length) }) })],
      inlined: ["frontend"],
    });
    const { runtime } = await startTeam({ agents: [orchestrator, teamAgent("backend")], defaultAgentId: "orchestrator" });
    const say = (threadId: string, text: string) => runtime.converse({ userId: "ada", threadId, text }).then((answer) => answer.agentId);

    expect(await say("t1", "@backend the API")).toBe("backend");
    expect(await say("t1", "@frontend the page copy")).toBe("orchestrator");
    expect(await say("t2", "@backend more API")).toBe("backend");
    // Not an agent: the thread's follow-up answers, as if it named no one.
    expect(await say("t2", "@nobody are you there")).toBe("backend");
  });

  it("does not start a mention-triggered agent's conversation without its mention, and answers with an `always` agent instead", async () => {
    const { runtime } = await startTeam({
      agents: [teamAgent("orchestrator", { trigger: "mention" }), teamAgent("helper", { trigger: "always" }), teamAgent("backend")],
      defaultAgentId: "orchestrator",
    });

    expect((await runtime.converse({ userId: "ada", threadId: "t1", text: "anyone?" })).agentId).toBe("helper");
    expect((await runtime.converse({ userId: "ada", threadId: "t2", text: "@orchestrator you?" })).agentId).toBe("orchestrator");
    expect((await runtime.converse({ userId: "ada", threadId: "t2", text: "and then?" })).agentId).toBe("orchestrator");
  });

  it("answers NOT_FOUND when no agent takes a message that mentions none", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator", { trigger: "mention" }), teamAgent("backend")], defaultAgentId: "orchestrator" });

    const error = await rejectionOf(runtime.converse({ userId: "ada", text: "hello?" }));

    expect(error).toMatchObject({ type: "NOT_FOUND", details: { field: "text" } });
    expect((await runtime.converse({ userId: "ada", text: "@backend hello" })).agentId).toBe("backend");
  });

  it("takes a runtime without a default agent when an agent's trigger is `always`", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("quiet"), teamAgent("chatty", { trigger: "always" })] });

    expect((await runtime.converse({ userId: "ada", text: "hello" })).agentId).toBe("chatty");
  });
});

describe("isolation", () => {
  it("shared: a mention in another thread picks up the user's conversation with that agent, its session and history", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator"), teamAgent("backend", { isolation: "shared" })], defaultAgentId: "orchestrator" });

    const inFirstThread = await runtime.converse({ userId: "ada", threadId: "t1", text: "@backend schema" });
    const inSecondThread = await runtime.converse({ userId: "ada", threadId: "t2", text: "@backend migrations" });
    const anotherUser = await runtime.converse({ userId: "grace", threadId: "t1", text: "@backend schema" });

    expect(inSecondThread).toMatchObject({ sessionId: inFirstThread.sessionId, text: heard("backend", "@backend migrations", 2) });
    expect(anotherUser.sessionId).not.toBe(inFirstThread.sessionId);
    expect(runtime.conversation(inFirstThread.sessionId)).toMatchObject({ isolation: "shared", threads: ["t1", "t2"], userId: "ada" });
  });

  it("per_thread: each thread has its own conversation, session and history", async () => {
    const { runtime } = await startTeam({
      agents: [teamAgent("orchestrator"), teamAgent("reviewer", { isolation: "per_thread" })],
      defaultAgentId: "orchestrator",
    });

    const inFirstThread = await runtime.converse({ userId: "ada", threadId: "t1", text: "@reviewer PR 1" });
    const inSecondThread = await runtime.converse({ userId: "ada", threadId: "t2", text: "@reviewer PR 2" });
    const backInFirst = await runtime.converse({ userId: "ada", threadId: "t1", text: "and the tests?" });

    expect(inSecondThread.sessionId).not.toBe(inFirstThread.sessionId);
    expect(inSecondThread.text).toBe(heard("reviewer", "@reviewer PR 2", 0));
    expect(backInFirst).toMatchObject({ sessionId: inFirstThread.sessionId, text: heard("reviewer", "and the tests?", 2) });
    expect(runtime.conversation(inSecondThread.sessionId)).toMatchObject({ isolation: "per_thread", threadId: "t2", threads: ["t2"] });
  });
});

describe("history window", () => {
  it("sends the model at most the agent's historyWindow messages of the conversation", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator", { historyWindow: 4 })], defaultAgentId: "orchestrator" });

    const answers = [];
    for (let turn = 1; turn <= 4; turn += 1) answers.push(await runtime.converse({ userId: "ada", text: `turn ${turn}` }));

    expect(answers.map((answer) => answer.text)).toEqual([
      heard("orchestrator", "turn 1", 0),
      heard("orchestrator", "turn 2", 2),
      heard("orchestrator", "turn 3", 4),
      heard("orchestrator", "turn 4", 4),
    ]);
  });

  it("keeps a rolling window of 30 messages by default", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator")], defaultAgentId: "orchestrator" });

    let last = "";
    for (let turn = 1; turn <= 17; turn += 1) last = (await runtime.converse({ userId: "ada", text: `turn ${turn}` })).text;

    expect(last).toBe(heard("orchestrator", "turn 17", 30));
  });
});

describe("idle conversations", () => {
  it("end after idleTimeoutMinutes without a turn: their session is closed, and the next message starts afresh", async () => {
    const { runtime, clock } = await startTeam({ agents: [teamAgent("orchestrator", { idleTimeoutMinutes: 5 })], defaultAgentId: "orchestrator" });
    const first = await runtime.converse({ userId: "ada", text: "hello" });

    clock.increment(5 * MINUTE - 1);
    await settle();
    const beforeTimeout = await runtime.converse({ userId: "ada", text: "still there?" });
    expect(beforeTimeout).toMatchObject({ sessionId: first.sessionId, text: heard("orchestrator", "still there?", 2) });
    expect(runtime.conversation(first.sessionId)?.expiresAt).toBe(clock.now() + 5 * MINUTE);

    clock.increment(5 * MINUTE);
    await settle();
    expect(runtime.conversation(first.sessionId)).toBeUndefined();
    await expect(runtime.bridge.sessionsStatus({ sessionId: first.sessionId })).rejects.toMatchObject({ type: "NOT_FOUND" });

    const afresh = await runtime.converse({ userId: "ada", text: "back again" });
    expect(afresh.sessionId).not.toBe(first.sessionId);
    expect(afresh.text).toBe(heard("orchestrator", "back again", 0));
  });

  it("last 30 minutes by default, and their sessions never expire by the bridge's own idle time", async () => {
    const { runtime, clock } = await startTeam({
      agents: [teamAgent("orchestrator")],
      defaultAgentId: "orchestrator",
      sessionIdleMs: 60_000,
      sessionTtlMs: 120_000,
    });
    const first = await runtime.converse({ userId: "ada", text: "hello" });
    expect((await runtime.bridge.sessionsStatus({ sessionId: first.sessionId })).expiresAt).toBeUndefined();

    clock.increment(30 * MINUTE - 1);
    await settle();
    expect(runtime.conversation(first.sessionId)?.status).toBe("ready");

    clock.increment(1);
    await settle();
    expect(runtime.conversation(first.sessionId)).toBeUndefined();
    expect(runtime.hasSession(first.sessionId)).toBe(false);
  });

  it("end follow-ups: after the thread's conversation ended, a message without mention goes to the default agent", async () => {
    const { runtime, clock } = await startTeam({
      agents: [teamAgent("orchestrator"), teamAgent("backend", { idleTimeoutMinutes: 1 })],
      defaultAgentId: "orchestrator",
    });
    await runtime.converse({ userId: "ada", threadId: "t1", text: "@backend deploy" });

    clock.increment(MINUTE);
    await settle();

    expect((await runtime.converse({ userId: "ada", threadId: "t1", text: "done?" })).agentId).toBe("orchestrator");
  });
});

describe("turns", () => {
  it("answers the turns of one conversation in order, and refuses one past maxQueuedPrompts with BUSY", async () => {
    const { runtime, clock } = await startTeam({
      agents: [teamAgent("orchestrator", undefined, (ctx) => ({ text: heard("orchestrator", ctx.prompt, ctx.history.length), delayMs: 10 }))],
      defaultAgentId: "orchestrator",
      maxQueuedPrompts: 1,
    });
    const answers: string[] = [];
    const first = runtime.converse({ userId: "ada", text: "one" }).then((answer) => answers.push(answer.text));
    // The first turn in flight (its session opened and its prompt running; more than one turn under load), then the next.
    for (let turn = 0; turn < 1_000 && runtime.health().sessions.busy === 0; turn += 1) await settle();
    expect(runtime.health().sessions.busy).toBe(1);
    const second = runtime.converse({ userId: "ada", text: "two" }).then((answer) => answers.push(answer.text));
    const third = await rejectionOf(runtime.converse({ userId: "ada", text: "three" }));

    expect(third).toMatchObject({ type: "BUSY", details: { retryable: true, maxQueuedTurns: 1 } });
    for (let step = 0; step < 2; step += 1) {
      await settle();
      clock.increment(10);
    }
    await Promise.all([first, second]);
    expect(answers).toEqual([heard("orchestrator", "one", 0), heard("orchestrator", "two", 2)]);
  });

  it("fails a turn the agent fails, and the conversation goes on", async () => {
    const { runtime } = await startTeam({
      agents: [teamAgent("orchestrator", undefined, [{ error: { type: "UPSTREAM", message: "provider is down" } }, { text: "back" }])],
      defaultAgentId: "orchestrator",
    });

    const failed = await rejectionOf(runtime.converse({ userId: "ada", text: "one" }));
    const answered = await runtime.converse({ userId: "ada", text: "two" });

    expect(failed).toMatchObject({ type: "UPSTREAM", message: "provider is down" });
    expect(answered.text).toBe("back");
  });

  it("ends a conversation whose session was closed under it, and the next message opens a new one", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator")], defaultAgentId: "orchestrator" });
    const first = await runtime.converse({ userId: "ada", text: "one" });
    await runtime.bridge.sessionsClose({ sessionId: first.sessionId });

    const lost = await rejectionOf(runtime.converse({ userId: "ada", text: "two" }));
    await settle();
    const afresh = await runtime.converse({ userId: "ada", text: "three" });

    expect(lost).toMatchObject({ type: "NOT_FOUND", message: "Session not found" });
    expect(afresh.sessionId).not.toBe(first.sessionId);
    expect(afresh.text).toBe(heard("orchestrator", "three", 0));
  });

  it("fails the turn when the conversation's session cannot be opened (capacity)", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator")], defaultAgentId: "orchestrator", maxSessions: 1 });
    await runtime.converse({ userId: "ada", text: "hello" });

    const refused = await rejectionOf(runtime.converse({ userId: "grace", text: "hello" }));

    expect(refused).toMatchObject({ type: "CAPACITY" });
    expect((await runtime.converse({ userId: "ada", text: "again" })).agentId).toBe("orchestrator");
  });

  it("validates the request: CONFIG naming the field, and a text over maxPromptBytes", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator")], defaultAgentId: "orchestrator", maxPromptBytes: 8 });

    await expect(runtime.converse({ userId: "", text: "hi" })).rejects.toMatchObject({ type: "CONFIG", details: { field: "userId" } });
    await expect(runtime.converse({ userId: "ada", text: "" })).rejects.toMatchObject({ type: "CONFIG", details: { field: "text" } });
    await expect(runtime.converse({ userId: "ada", text: "hi", extra: 1 } as never)).rejects.toMatchObject({ type: "CONFIG", details: { field: "extra" } });
    await expect(runtime.converse({ userId: "a".repeat(257), text: "hi" })).rejects.toMatchObject({ type: "CONFIG", details: { field: "userId" } });
    await expect(runtime.converse({ userId: "ada\u202Emallory", text: "hi" })).rejects.toMatchObject({ type: "CONFIG", details: { field: "userId" } });
    await expect(runtime.converse({ userId: "ada", threadId: "t\u0000", text: "hi" })).rejects.toMatchObject({
      type: "CONFIG",
      details: { field: "threadId" },
    });
    await expect(runtime.converse({ userId: "ada", text: "far too long" })).rejects.toMatchObject({
      type: "CONFIG",
      details: { field: "text", limitBytes: 8 },
    });
  });

  it("refuses an agent whose conversation settings are wrong when the runtime is created", async () => {
    await expect(startTeam({ agents: [teamAgent("orchestrator", { trigger: "sometimes" as never })] })).rejects.toMatchObject({
      type: "CONFIG",
      details: { field: "agents[0].conversation.trigger" },
    });
    await expect(startTeam({ agents: [teamAgent("orchestrator", { idleTimeoutMinutes: -1 })] })).rejects.toMatchObject({
      details: { field: "agents[0].conversation.idleTimeoutMinutes" },
    });
  });

  it("cancels the turns still waiting when the runtime stops", async () => {
    const { runtime } = await startTeam({ agents: [teamAgent("orchestrator", undefined, [{ hang: true }])], defaultAgentId: "orchestrator" });
    const pending = runtime.converse({ userId: "ada", text: "hello" });
    await settle();

    await runtime.stop();

    await expect(pending).rejects.toMatchObject({ type: "CANCELLED" });
    await expect(runtime.converse({ userId: "ada", text: "again" })).rejects.toMatchObject({ type: "INTERNAL" });
  });
});

describe("handoffs", () => {
  /** An orchestrator that asks `backend` (through the bus) when the message says "backend", and relays the answer. */
  const relaying: Agent = {
    id: "orchestrator",
    prompt: async (ctx) => {
      if (!ctx.prompt.includes("backend")) return { text: "handled it myself" };
      const reply = await ctx.ask("backend", ctx.prompt);
      return { text: `backend says: ${reply.text}` };
    },
  };

  it("lists the agents the answer was handed to through ctx.ask (what delegate_to_agent uses), and none otherwise", async () => {
    const { runtime } = await startTeam({ agents: [relaying, createMockAgent({ id: "backend" })], defaultAgentId: "orchestrator" });
    await startBus({ runtime });

    const delegated = await runtime.converse({ userId: "ada", text: "ask the backend" });
    const alone = await runtime.converse({ userId: "ada", text: "do it yourself" });

    expect(delegated).toMatchObject({ agentId: "orchestrator", text: "backend says: Echo: ask the backend", handoffs: ["backend"] });
    expect(alone.handoffs).toEqual([]);
  });

  it("does not count an ask that failed", async () => {
    const persistent: Agent = {
      id: "orchestrator",
      prompt: async (ctx) => {
        const reached = await ctx.ask("nobody", ctx.prompt).then(
          () => "reached",
          (error: { type: string }) => error.type,
        );
        return { text: `asking failed with ${reached}` };
      },
    };
    const { runtime } = await startTeam({ agents: [persistent], defaultAgentId: "orchestrator" });
    await startBus({ runtime });

    const answer = await runtime.converse({ userId: "ada", text: "ask nobody" });

    expect(answer).toMatchObject({ text: "asking failed with NOT_FOUND", handoffs: [] });
  });
});

describe("capability state", () => {
  /** A deploy capability in two steps: the first turn records the service, the second reads it and finishes. */
  const deployer: Agent = {
    id: "deployer",
    prompt: async (ctx: PromptContext) => {
      const state = readCapabilityState(ctx).deploy as { service: string } | undefined;
      if (state === undefined) {
        writeCapabilityState(ctx, "deploy", { service: ctx.prompt.split(" ").at(-1), step: "confirm" });
        return { text: "Which environment?" };
      }
      writeCapabilityState(ctx, "deploy", null);
      return { text: `Deploying ${state.service} to ${ctx.prompt}` };
    },
  };

  it("keeps a multi-step capability's state in the conversation between turns, readable in its snapshot", async () => {
    const { runtime } = await startTeam({ agents: [deployer], defaultAgentId: "deployer" });

    const asked = await runtime.converse({ userId: "ada", text: "deploy billing" });
    expect(runtime.conversation(asked.sessionId)?.capabilityState).toEqual({ deploy: { service: "billing", step: "confirm" } });
    const done = await runtime.converse({ userId: "ada", text: "staging" });

    expect(done.text).toBe("Deploying billing to staging");
    expect(runtime.conversation(asked.sessionId)?.capabilityState).toEqual({});
  });

  it("is per conversation: another user's conversation starts without it", async () => {
    const { runtime } = await startTeam({ agents: [deployer], defaultAgentId: "deployer" });

    await runtime.converse({ userId: "ada", text: "deploy billing" });
    const other = await runtime.converse({ userId: "grace", text: "deploy search" });

    expect(other.text).toBe("Which environment?");
    expect(runtime.conversation(other.sessionId)?.capabilityState).toEqual({ deploy: { service: "search", step: "confirm" } });
  });

  it("is what the built-in capability_state_get and capability_state_set tools read and write", async () => {
    const results: unknown[] = [];
    const agent: Agent = {
      id: "tooled",
      prompt: async (ctx) => {
        const tool = toolContextOf(ctx, "tooled");
        results.push(await capabilityStateSet.execute(capabilityStateSet.parse({ capability: "onboarding", state: { step: 2 } }), tool));
        results.push(await capabilityStateGet.execute(capabilityStateGet.parse({ capability: "onboarding" }), tool));
        results.push(await capabilityStateGet.execute(capabilityStateGet.parse({}), tool));
        return { text: "ok" };
      },
    };
    const { runtime } = await startTeam({ agents: [agent], defaultAgentId: "tooled" });

    await runtime.converse({ userId: "ada", text: "start" });

    expect(results).toEqual([
      { capability: "onboarding", state: { step: 2 } },
      { capability: "onboarding", state: { step: 2 } },
      { state: { onboarding: { step: 2 } } },
    ]);
    expect(() => capabilityStateSet.parse({ capability: "onboarding" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "state" }) }),
    );
  });

  it("is refused outside a conversation, over 64 KiB, and outside a prompt", async () => {
    const errors: unknown[] = [];
    const agent: Agent = {
      id: "tooled",
      prompt: async (ctx) => {
        for (const write of [() => writeCapabilityState(ctx, "big", "x".repeat(70 * 1024)), () => writeCapabilityState(ctx, "", 1)]) {
          try {
            write();
          } catch (error) {
            errors.push(error);
          }
        }
        return { text: "ok" };
      },
    };
    const { runtime } = await startTeam({ agents: [agent], defaultAgentId: "tooled" });

    await runtime.converse({ userId: "ada", text: "go" });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "tooled" });
    const outside = { session: { sessionId, agentId: "tooled", metadata: {} } };

    expect(errors).toMatchObject([
      { type: "CONFIG", details: { field: "state", limitBytes: 64 * 1024 } },
      { type: "CONFIG", details: { field: "capability" } },
    ]);
    expect(() => readCapabilityState(outside)).toThrow(expect.objectContaining({ type: "CONFIG", message: expect.stringContaining("inside a prompt") }));
    expect(runtime.conversation(sessionId)).toBeUndefined();
    expect(runtime.conversation("supervisor")).toBeUndefined();
  });

  it("is refused for a bridge session that belongs to no conversation", async () => {
    let refusal: unknown;
    const agent: Agent = {
      id: "tooled",
      prompt: async (ctx) => {
        try {
          readCapabilityState(ctx);
        } catch (error) {
          refusal = error;
        }
        return { text: "ok" };
      },
    };
    const { runtime } = await startTeam({ agents: [agent], defaultAgentId: "tooled" });

    await runtime.bridge.tasksDelegate({ prompt: "hi" });

    expect(refusal).toMatchObject({ type: "CONFIG", message: expect.stringContaining("belongs to no conversation") });
  });
});
