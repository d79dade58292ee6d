/**
 * `bridge.forwardSessions`: on a cluster node, the session tools for a session the runtime does not run go to the
 * node that runs it (here a fake `RemoteSessions`), with their arguments validated and the caller's options; a
 * session the runtime runs, every other tool, and `callHere` are answered here.
 */
import { describe, expect, it } from "vitest";
import type { CallOptions, RemoteSessions, SessionToolArguments, SessionToolName } from "../../src/bridge/bridge.js";
import { rejectionOf, settle, startTestRuntime } from "../support/runtime.js";

/** A remote that answers every call it gets with `answer` (or `undefined`: answered here), and records them. */
function fakeRemote(answer: (toolName: SessionToolName) => { result: unknown } | undefined): RemoteSessions & {
  calls: Array<{ toolName: SessionToolName; args: SessionToolArguments; options: CallOptions }>;
} {
  const calls: Array<{ toolName: SessionToolName; args: SessionToolArguments; options: CallOptions }> = [];
  return {
    calls,
    call: async (toolName, args, options) => {
      calls.push({ toolName, args, options });
      return answer(toolName);
    },
  };
}

describe("bridge.forwardSessions", () => {
  it("sends the session tools for a session not here to the remote, with their validated arguments and the caller's options", async () => {
    const { runtime } = await startTestRuntime();
    const remote = fakeRemote((toolName) => ({ result: { from: "elsewhere", toolName } }));
    runtime.bridge.forwardSessions(remote);
    const onDelta = (): void => undefined;

    expect(await runtime.bridge.call("sessions_status", { sessionId: "s-elsewhere" })).toEqual({ from: "elsewhere", toolName: "sessions_status" });
    expect(await runtime.bridge.sessionsPrompt({ sessionId: "s-elsewhere", prompt: "hi", timeout: 500 }, { onDelta })).toEqual({
      from: "elsewhere",
      toolName: "sessions_prompt",
    });
    expect(await runtime.bridge.sessionsCancel({ sessionId: "s-elsewhere", requestId: "r1" })).toMatchObject({ toolName: "sessions_cancel" });
    expect(await runtime.bridge.sessionsClose({ sessionId: "s-elsewhere" })).toMatchObject({ toolName: "sessions_close" });
    expect(remote.calls.map(({ toolName, args }) => [toolName, args])).toEqual([
      ["sessions_status", { sessionId: "s-elsewhere" }],
      ["sessions_prompt", { sessionId: "s-elsewhere", prompt: "hi", timeout: 500 }],
      ["sessions_cancel", { sessionId: "s-elsewhere", requestId: "r1" }],
      ["sessions_close", { sessionId: "s-elsewhere" }],
    ]);
    expect(remote.calls[1]?.options.onDelta).toBe(onDelta);

    // Refused here, before anything travels: a bad argument, a prompt over this node's limit.
    expect(await rejectionOf(runtime.bridge.call("sessions_status", { sessionId: "" }))).toMatchObject({ type: "CONFIG" });
    const limit = runtime.limits.maxPromptBytes;
    expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId: "s-elsewhere", prompt: "x".repeat(limit + 1) }))).toMatchObject({
      type: "CONFIG",
      details: { field: "prompt", limitBytes: limit },
    });
    expect(remote.calls).toHaveLength(4);
  });

  it("answers here a session the runtime runs, an id the remote does not know, every other tool, and every callHere", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const remote = fakeRemote(() => undefined);
    const stopForwarding = runtime.bridge.forwardSessions(remote);
    const { sessionId } = await runtime.bridge.sessionsCreate({});

    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "here" });
    await settle();
    controlled.current().reply({ text: "answered here" });
    expect(await reply).toMatchObject({ text: "answered here" });
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    expect(remote.calls).toEqual([]);

    // The remote knows no node for it: NOT_FOUND, as without a cluster.
    expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId: "s-nowhere" }))).toMatchObject({ type: "NOT_FOUND", message: "Session not found" });
    expect(remote.calls.map(({ toolName }) => toolName)).toEqual(["sessions_status"]);

    expect(await rejectionOf(runtime.bridge.callHere("sessions_status", { sessionId: "s-elsewhere" }))).toMatchObject({ type: "NOT_FOUND" });
    stopForwarding();
    expect(await rejectionOf(runtime.bridge.sessionsClose({ sessionId: "s-elsewhere" }))).toMatchObject({ type: "NOT_FOUND" });
    expect(remote.calls).toHaveLength(1);
  });
});
