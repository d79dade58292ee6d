import { describe, expect, it } from "vitest";
import { createMockAgent, type RuntimeEvent } from "../../src/index.js";
import { rejectionOf, settle, startTestRuntime } from "../support/runtime.js";

function collect(events: RuntimeEvent[], sessionId: string): Array<Record<string, unknown>> {
  return events
    .filter((event) => event.actorId === sessionId || ("sessionId" in event && event.sessionId === sessionId))
    .map(({ seq: _seq, ts: _ts, ...rest }) => rest);
}

describe("event stream (SPEC §5)", () => {
  it("tells a session's life: spawned, transitions, prompt events with deltas, stopped with its reason", async () => {
    const { runtime } = await startTestRuntime({
      agents: [createMockAgent({ id: "echo", script: [{ text: "two words", usage: { inputTokens: 1, outputTokens: 2 } }] })],
    });
    const events: RuntimeEvent[] = [];
    runtime.on("*", (event) => events.push(event));
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "echo" });
    const { requestId } = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "hi", requestId: "r1" });
    await runtime.bridge.sessionsClose({ sessionId });

    expect(collect(events, sessionId)).toEqual([
      { type: "actor.spawned", actorId: sessionId, parentId: "shard-0", machine: "session", state: "active" },
      { type: "actor.transition", actorId: sessionId, from: "active", to: "busy", event: "PROMPT" },
      { type: "prompt.started", actorId: sessionId, sessionId, requestId, agentId: "echo" },
      { type: "prompt.delta", actorId: sessionId, sessionId, requestId, delta: "two ", agentId: "echo" },
      { type: "prompt.delta", actorId: sessionId, sessionId, requestId, delta: "words", agentId: "echo" },
      { type: "actor.transition", actorId: sessionId, from: "busy", to: "idle", event: "xstate.done.actor.prompt" },
      {
        type: "prompt.completed",
        actorId: sessionId,
        sessionId,
        requestId,
        stopReason: "end_turn",
        usage: { inputTokens: 1, outputTokens: 2 },
        agentId: "echo",
      },
      { type: "actor.stopped", actorId: sessionId, reason: "closed" },
    ]);
    const seqs = events.map((event) => event.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it("names the prompt actor under its session and reports failed and cancelled prompts", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const events: RuntimeEvent[] = [];
    runtime.on("actor.spawned", (event) => events.push(event));
    runtime.on("prompt.failed", (event) => events.push(event));
    runtime.on("prompt.cancelled", (event) => events.push(event));
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const failing = runtime.bridge.sessionsPrompt({ sessionId, prompt: "a", requestId: "r1" });
    await settle();
    controlled.current().fail("UPSTREAM", "503");
    await rejectionOf(failing);
    const cancelled = runtime.bridge.sessionsPrompt({ sessionId, prompt: "b", requestId: "r2" });
    await settle();
    await runtime.bridge.sessionsCancel({ sessionId });
    await rejectionOf(cancelled);

    const promptActorId = `${sessionId}/prompt`;
    expect(events.filter((event) => event.actorId === sessionId || event.actorId === promptActorId).map(({ seq: _seq, ts: _ts, ...rest }) => rest)).toEqual([
      { type: "actor.spawned", actorId: sessionId, parentId: "shard-0", machine: "session", state: "active" },
      { type: "actor.spawned", actorId: promptActorId, parentId: sessionId, machine: "runPrompt" },
      {
        type: "prompt.failed",
        actorId: sessionId,
        sessionId,
        requestId: "r1",
        error: { type: "UPSTREAM", message: "503", retryable: true, sessionValid: true, details: {} },
        agentId: "controlled",
      },
      { type: "actor.spawned", actorId: promptActorId, parentId: sessionId, machine: "runPrompt" },
      { type: "prompt.cancelled", actorId: sessionId, sessionId, requestId: "r2", cause: "cancel", agentId: "controlled" },
    ]);
  });

  it("stops delivering to a listener once it unsubscribes, and reports a throwing one as a warning without stopping the others", async () => {
    const { runtime } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
    const kept: string[] = [];
    const dropped: string[] = [];
    const unsubscribe = runtime.on("prompt.completed", (event) => dropped.push(event.requestId));
    runtime.on("prompt.completed", () => {
      throw new Error("a broken listener");
    });
    runtime.on("prompt.completed", (event) => kept.push(event.requestId));
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.message);
    };
    process.on("warning", onWarning);
    try {
      await runtime.bridge.tasksDelegate({ agentId: "echo", prompt: "one" });
      unsubscribe();
      await runtime.bridge.tasksDelegate({ agentId: "echo", prompt: "two" });
      await settle();
    } finally {
      process.off("warning", onWarning);
    }
    expect(kept).toHaveLength(2);
    expect(dropped).toHaveLength(1);
    expect(warnings).toEqual(["troupe: a prompt.completed listener threw: a broken listener", "troupe: a prompt.completed listener threw: a broken listener"]);
  });

  it("survives a listener that throws a value with no string form", async () => {
    const { runtime } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
    runtime.on("*", () => {
      throw Object.create(null);
    });
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.message);
    };
    process.on("warning", onWarning);
    try {
      expect((await runtime.bridge.tasksDelegate({ agentId: "echo", prompt: "one" })).text).toBe("Echo: one");
      expect((await runtime.bridge.tasksDelegate({ agentId: "echo", prompt: "two" })).text).toBe("Echo: two");
      await settle();
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toContain("troupe: a prompt.completed listener threw: [object Object]");
  });

  it("reports expiry as the reason a session stopped", async () => {
    const { runtime, clock } = await startTestRuntime({ sessionIdleMs: 500 });
    const stopped: Array<{ actorId: string; reason: string }> = [];
    runtime.on("actor.stopped", ({ actorId, reason }) => stopped.push({ actorId, reason }));
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    clock.increment(500);
    await settle();
    expect(stopped).toContainEqual({ actorId: sessionId, reason: "expired" });
  });
});
