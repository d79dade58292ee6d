import { describe, expect, it } from "vitest";
import { rejectionOf, settle, startTestRuntime } from "../support/runtime.js";

describe("closing and expiry (SPEC §2.2)", () => {
  it("deletes a closed session: status, prompt and close then fail NOT_FOUND 'Session not found'", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    expect(await runtime.bridge.sessionsClose({ sessionId })).toEqual({ closed: true, sessionId });
    for (const call of [
      runtime.bridge.sessionsStatus({ sessionId }),
      runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" }),
      runtime.bridge.sessionsClose({ sessionId }),
      runtime.bridge.sessionsCancel({ sessionId }),
    ]) {
      expect(await rejectionOf(call)).toMatchObject({
        type: "NOT_FOUND",
        message: "Session not found",
        details: { sessionValid: false, retryable: false },
      });
    }
    expect(controlled.closes).toEqual([{ sessionId, reason: "closed" }]);
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("rejects the in-flight and queued prompts of a closed session with CANCELLED and aborts the agent", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const inFlight = runtime.bridge.sessionsPrompt({ sessionId, prompt: "a" });
    const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "b" });
    await settle();
    const { signal } = controlled.current().ctx;
    await runtime.bridge.sessionsClose({ sessionId });
    expect(await rejectionOf(inFlight)).toMatchObject({ type: "CANCELLED", details: { cause: "closed" } });
    expect(await rejectionOf(queued)).toMatchObject({ type: "CANCELLED", details: { cause: "closed" } });
    expect(signal.aborted).toBe(true);
    expect(controlled.cancels).toEqual([]);
  });

  it("answers NOT_FOUND to a prompt that reaches a session while it is being deleted", async () => {
    const { runtime } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    runtime.bridge.sessionsPrompt({ sessionId, prompt: "in flight" }).catch(() => undefined);
    await settle();
    let late: Promise<Error> | undefined;
    // A listener reacting to the cancellation sends while the session is between its release and its stop.
    runtime.on("prompt.cancelled", () => {
      late ??= rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "too late" }));
    });
    await runtime.bridge.sessionsClose({ sessionId });
    expect(await late).toMatchObject({ type: "NOT_FOUND", message: "Session not found" });
  });

  it("expires a session at its TTL, calls onSessionClose('expired') and deletes it", async () => {
    const { runtime, clock, controlled } = await startTestRuntime({ sessionTtlMs: 10_000, sessionIdleMs: 0 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const { createdAt, expiresAt } = await runtime.bridge.sessionsStatus({ sessionId });
    expect(expiresAt).toBe(createdAt + 10_000);
    clock.increment(9_999);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("active");
    clock.increment(1);
    await settle();
    expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId }))).toMatchObject({ type: "NOT_FOUND", message: "Session not found" });
    expect(controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
  });

  it("expires a session at its TTL even while a prompt is in flight, cancelling that prompt", async () => {
    const { runtime, clock, controlled } = await startTestRuntime({ sessionTtlMs: 10_000, sessionIdleMs: 1_000 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "long" });
    await settle();
    clock.increment(10_000);
    expect(await rejectionOf(reply)).toMatchObject({ type: "CANCELLED", details: { cause: "expired" } });
    expect(controlled.prompts[0]?.ctx.signal.aborted).toBe(true);
    expect(controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
  });

  it("expires a session idle past sessionIdleMs, measured from its last activity", async () => {
    const { runtime, clock, controlled } = await startTestRuntime({ sessionIdleMs: 1_000 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    clock.increment(900);
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
    await settle();
    controlled.current().reply();
    await reply;
    const { lastActivityAt, expiresAt } = await runtime.bridge.sessionsStatus({ sessionId });
    expect(expiresAt).toBe(lastActivityAt + 1_000);
    clock.increment(999);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    clock.increment(1);
    await settle();
    expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId }))).toMatchObject({ type: "NOT_FOUND" });
    expect(controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
  });

  it("never idle-expires a busy session", async () => {
    const { runtime, clock, controlled } = await startTestRuntime({ sessionIdleMs: 1_000, sessionTtlMs: 0 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "long" });
    await settle();
    const status = await runtime.bridge.sessionsStatus({ sessionId });
    expect(status.expiresAt).toBeUndefined();
    clock.increment(60_000);
    await settle();
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("busy");
    controlled.current().reply({ text: "finally" });
    expect((await reply).text).toBe("finally");
    clock.increment(999);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    clock.increment(1);
    await settle();
    expect(controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
  });

  it("idle-expires a failed session too, without telling the agent twice", async () => {
    const { runtime, clock, controlled } = await startTestRuntime({ sessionIdleMs: 1_000 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
    await settle();
    controlled.current().fail("AUTH", "bad key");
    await rejectionOf(reply);
    clock.increment(1_000);
    await settle();
    expect(await rejectionOf(runtime.bridge.sessionsStatus({ sessionId }))).toMatchObject({ type: "NOT_FOUND" });
    expect(controlled.closes).toEqual([{ sessionId, reason: "failed" }]);
  });

  it("closes every session with reason shutdown when the runtime stops, cancelling their prompts", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const sessions = await Promise.all([1, 2, 3].map(() => runtime.bridge.sessionsCreate({})));
    const pending = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId: sessions[0]!.sessionId, prompt: "x" }));
    await settle();
    await runtime.stop();
    expect(await pending).toMatchObject({ type: "CANCELLED", details: { cause: "shutdown" } });
    expect(controlled.closes.map((close) => close.reason)).toEqual(["shutdown", "shutdown", "shutdown"]);
    expect(new Set(controlled.closes.map((close) => close.sessionId))).toEqual(new Set(sessions.map((session) => session.sessionId)));
    expect(await rejectionOf(runtime.bridge.health())).toMatchObject({ type: "INTERNAL", message: "Runtime is stopped" });
  });

  it("refuses sessions_create past maxSessions with CAPACITY (retryable), and accepts again after a close", async () => {
    const { runtime } = await startTestRuntime({ maxSessions: 2 });
    const first = await runtime.bridge.sessionsCreate({});
    await runtime.bridge.sessionsCreate({});
    const error = await rejectionOf(runtime.bridge.sessionsCreate({}));
    expect(error).toMatchObject({ type: "CAPACITY", details: { retryable: true, maxSessions: 2 } });
    expect((await runtime.bridge.health()).sessions).toMatchObject({ total: 2, capacity: 2 });
    await runtime.bridge.sessionsClose({ sessionId: first.sessionId });
    expect((await runtime.bridge.sessionsCreate({})).status).toBe("active");
  });

  it("spreads sessions over shards and reaps a shard once it is full and empty", async () => {
    const spawned: Array<{ actorId: string; parentId?: string }> = [];
    const stopped: string[] = [];
    const { runtime } = await startTestRuntime({ shardSize: 2 });
    runtime.on("actor.spawned", (event) => spawned.push({ actorId: event.actorId, ...(event.parentId ? { parentId: event.parentId } : {}) }));
    runtime.on("actor.stopped", (event) => stopped.push(event.actorId));
    const ids = [];
    for (let index = 0; index < 3; index += 1) ids.push((await runtime.bridge.sessionsCreate({})).sessionId);
    const parents = ids.map((id) => spawned.find((event) => event.actorId === id)?.parentId);
    expect(parents).toEqual(["shard-0", "shard-0", "shard-1"]);
    await runtime.bridge.sessionsClose({ sessionId: ids[0]! });
    expect(stopped).not.toContain("shard-0");
    await runtime.bridge.sessionsClose({ sessionId: ids[1]! });
    expect(stopped).toContain("shard-0");
    expect((await runtime.bridge.sessionsStatus({ sessionId: ids[2]! })).status).toBe("active");
  });
});
