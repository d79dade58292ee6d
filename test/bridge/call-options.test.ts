/**
 * A bridge call's options: `signal` cancels the prompt of `sessions_prompt` / `tasks_delegate` through
 * `sessions_cancel`, and `onDelta` hears the text that prompt streams (and no other prompt's).
 */
import { describe, expect, it } from "vitest";
import { rejectionOf, settle, startTestRuntime } from "../support/runtime.js";

describe("bridge call options", () => {
  it("cancels the prompt in flight when the signal aborts, and the agent's call is aborted", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const abort = new AbortController();
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "long", requestId: "req-1" }, { signal: abort.signal });
    await settle();

    abort.abort();

    const error = await rejectionOf(reply);
    expect(error.type).toBe("CANCELLED");
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
    expect(controlled.cancels).toEqual([{ sessionId, requestId: "req-1" }]);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("rejects with CANCELLED and sends nothing when the signal has aborted already", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "never" }, { signal: AbortSignal.abort() }));

    expect(error.type).toBe("CANCELLED");
    expect(controlled.prompts).toEqual([]);
  });

  it("closes a delegated task's session when its signal aborts", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const abort = new AbortController();
    const reply = runtime.bridge.tasksDelegate({ prompt: "delegated" }, { signal: abort.signal });
    await settle();
    const sessionId = controlled.prompts[0]?.ctx.session.sessionId ?? "";

    abort.abort();

    expect((await rejectionOf(reply)).type).toBe("CANCELLED");
    expect(controlled.closes).toEqual([{ sessionId, reason: "closed" }]);
  });

  it("gives onDelta the deltas of its own prompt only", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const first = await runtime.bridge.sessionsCreate({});
    const second = await runtime.bridge.sessionsCreate({});
    const heard: string[] = [];
    const reply = runtime.bridge.sessionsPrompt({ sessionId: first.sessionId, prompt: "mine" }, { onDelta: (delta) => heard.push(delta) });
    const other = runtime.bridge.sessionsPrompt({ sessionId: second.sessionId, prompt: "theirs" });
    await settle();
    const [mine, theirs] = controlled.prompts;

    mine?.ctx.emit("a");
    theirs?.ctx.emit("x");
    mine?.ctx.emit("b");
    mine?.reply({ text: "ab" });
    theirs?.reply({ text: "x" });
    await Promise.all([reply, other]);
    controlled.prompts[0]?.ctx.emit("late");

    expect(heard).toEqual(["a", "b"]);
  });
});
