import { describe, expect, it } from "vitest";
import { MAX_HISTORY_BYTES } from "../../machines/session.machine.js";
import { rejectionOf, settle, startTestRuntime } from "../support/runtime.js";

describe("session lifecycle (SPEC §2.2)", () => {
  it("starts active, goes busy while a prompt is in flight, then idle", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { bridge } = runtime;
    const created = await bridge.sessionsCreate({});
    expect(created).toEqual({ sessionId: expect.any(String), agentId: "controlled", status: "active" });
    const { sessionId } = created;
    expect((await bridge.sessionsStatus({ sessionId })).status).toBe("active");

    const reply = bridge.sessionsPrompt({ sessionId, prompt: "hello", requestId: "req-1" });
    await settle();
    const busy = await bridge.sessionsStatus({ sessionId });
    expect(busy).toMatchObject({ status: "busy", activeRequestId: "req-1", queued: 0 });

    controlled.current().reply({ text: "hi", usage: { inputTokens: 3, outputTokens: 5 } });
    expect(await reply).toEqual({ text: "hi", stopReason: "end_turn", requestId: "req-1", usage: { inputTokens: 3, outputTokens: 5 } });
    const idle = await bridge.sessionsStatus({ sessionId });
    expect(idle).toMatchObject({ status: "idle", queued: 0, usage: { inputTokens: 3, outputTokens: 5 } });
    expect(idle.activeRequestId).toBeUndefined();
  });

  it("generates a requestId when the client gives none and shows it while busy", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
    await settle();
    const { activeRequestId } = await runtime.bridge.sessionsStatus({ sessionId });
    expect(activeRequestId).toMatch(/^[0-9a-f-]{36}$/);
    controlled.current().reply();
    expect((await reply).requestId).toBe(activeRequestId);
  });

  it("queues prompts sent while busy and answers them in FIFO order", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const replies = ["one", "two", "three"].map((prompt) => runtime.bridge.sessionsPrompt({ sessionId, prompt, requestId: prompt }));
    await settle();
    expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "one", queued: 2 });
    const order: string[] = [];
    for (let turn = 0; turn < 3; turn += 1) {
      const held = controlled.current();
      order.push(held.ctx.prompt);
      held.reply();
      await settle();
    }
    expect(order).toEqual(["one", "two", "three"]);
    expect((await Promise.all(replies)).map((reply) => reply.requestId)).toEqual(["one", "two", "three"]);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("sends the session's history with each prompt, within the history window", async () => {
    const { runtime, controlled } = await startTestRuntime({ historyWindow: 4 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    for (const prompt of ["a", "b", "c"]) {
      const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt });
      await settle();
      controlled.current().reply({ text: `re ${prompt}` });
      await reply;
    }
    expect(controlled.prompts[2]?.ctx.history).toEqual([
      { role: "user", content: "a" },
      { role: "assistant", content: "re a" },
      { role: "user", content: "b" },
      { role: "assistant", content: "re b" },
    ]);
    const fourth = runtime.bridge.sessionsPrompt({ sessionId, prompt: "d" });
    await settle();
    expect(controlled.current().ctx.history.map((message) => message.content)).toEqual(["b", "re b", "c", "re c"]);
    controlled.current().reply();
    await fourth;
  });

  it(`keeps a session's history to ${MAX_HISTORY_BYTES} bytes of JSON: the oldest messages go first, and an exchange larger alone is cut`, async () => {
    const { runtime, controlled } = await startTestRuntime({ historyWindow: 30 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const quarter = MAX_HISTORY_BYTES / 4;
    /** Prompts, answers with `text`, and gives the history the agent was handed with the prompt. */
    const exchange = async (prompt: string, text = "ok"): Promise<Array<{ role: string; content: string }>> => {
      const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt });
      await settle();
      const handed = controlled.current().ctx.history;
      controlled.current().reply({ text });
      await reply;
      return handed;
    };
    await exchange("a", "A".repeat(quarter));
    await exchange("b", "B".repeat(quarter));
    await exchange("c", "C".repeat(quarter));
    await exchange("d", "D".repeat(quarter));
    // Four replies of a quarter and four short prompts are past the bound: the first exchange went.
    const afterFour = await exchange("e", "Z".repeat(3 * MAX_HISTORY_BYTES));
    expect(afterFour.map((message) => message.content.slice(0, 1))).toEqual(["b", "B", "c", "C", "d", "D"]);
    // One exchange larger than the bound alone: only it is kept, each message cut to half the bound.
    // Bytes, not characters: the next reply, a sixth of the bound in control characters, is 6 bytes each in JSON.
    const cut = await exchange("f", "\u0001".repeat(MAX_HISTORY_BYTES / 6 + 1));
    expect(cut.map((message) => [message.role, message.content.length])).toEqual([
      ["user", 1],
      ["assistant", MAX_HISTORY_BYTES / 2],
    ]);
    const bounded = await exchange("g");
    expect(bounded.map((message) => [message.role, message.content.length])).toEqual([
      ["user", 1],
      ["assistant", Math.floor(MAX_HISTORY_BYTES / 2 / 6)],
    ]);
    expect(Buffer.byteLength(JSON.stringify(bounded.map((message) => message.content)))).toBeLessThanOrEqual(MAX_HISTORY_BYTES);
  });

  it("refuses a prompt past maxQueuedPrompts with BUSY (retryable, session valid)", async () => {
    const { runtime } = await startTestRuntime({ maxQueuedPrompts: 2 });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const accepted = ["a", "b", "c"].map((prompt) => runtime.bridge.sessionsPrompt({ sessionId, prompt }));
    for (const promise of accepted) promise.catch(() => undefined);
    await settle();
    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "d" }));
    expect(error).toMatchObject({ name: "BridgeError", type: "BUSY", details: { retryable: true, sessionValid: true } });
    expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", queued: 2 });
  });

  it("refuses a requestId that is already pending in the session with CONFIG", async () => {
    const { runtime } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    runtime.bridge.sessionsPrompt({ sessionId, prompt: "a", requestId: "same" }).catch(() => undefined);
    await settle();
    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "b", requestId: "same" }));
    expect(error).toMatchObject({ type: "CONFIG", message: expect.stringContaining("requestId") });
  });

  describe("sessions_cancel", () => {
    it("aborts the in-flight prompt: its signal fires, onCancel runs, it fails CANCELLED, the session is idle", async () => {
      const { runtime, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "long", requestId: "r1" });
      await settle();
      const { signal } = controlled.current().ctx;
      expect(signal.aborted).toBe(false);

      expect(await runtime.bridge.sessionsCancel({ sessionId })).toEqual({ cancelled: true, sessionId, requestId: "r1" });
      expect(signal.aborted).toBe(true);
      expect(await rejectionOf(reply)).toMatchObject({ type: "CANCELLED", details: { sessionValid: true } });
      expect(controlled.cancels).toEqual([{ sessionId, requestId: "r1" }]);
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "idle", queued: 0 });
    });

    it("cancels the in-flight prompt by its requestId and starts the next queued one", async () => {
      const { runtime, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "first", requestId: "r1" });
      const second = runtime.bridge.sessionsPrompt({ sessionId, prompt: "second", requestId: "r2" });
      await settle();
      await runtime.bridge.sessionsCancel({ sessionId, requestId: "r1" });
      expect(await rejectionOf(first)).toMatchObject({ type: "CANCELLED" });
      await settle();
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "r2", queued: 0 });
      controlled.current().reply({ text: "done" });
      expect((await second).text).toBe("done");
    });

    it("drops a queued prompt by requestId and leaves the in-flight one running", async () => {
      const { runtime, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "first", requestId: "r1" });
      const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "queued", requestId: "r2" });
      await settle();
      expect(await runtime.bridge.sessionsCancel({ sessionId, requestId: "r2" })).toEqual({ cancelled: true, sessionId, requestId: "r2" });
      expect(await rejectionOf(queued)).toMatchObject({ type: "CANCELLED" });
      expect(controlled.current().ctx.signal.aborted).toBe(false);
      expect(controlled.cancels).toEqual([]);
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "r1", queued: 0 });
      controlled.current().reply();
      await first;
      expect(controlled.prompts.map((held) => held.ctx.prompt)).toEqual(["first"]);
    });

    it("answers an unknown requestId with NOT_FOUND and leaves the session as it was", async () => {
      const { runtime } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      runtime.bridge.sessionsPrompt({ sessionId, prompt: "a", requestId: "r1" }).catch(() => undefined);
      await settle();
      const error = await rejectionOf(runtime.bridge.sessionsCancel({ sessionId, requestId: "nope" }));
      expect(error).toMatchObject({ type: "NOT_FOUND", message: "Request not found: nope" });
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "r1" });
    });

    it("answers a cancel with nothing in flight with NOT_FOUND", async () => {
      const { runtime } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      expect(await rejectionOf(runtime.bridge.sessionsCancel({ sessionId }))).toMatchObject({ type: "NOT_FOUND", message: "No prompt in flight" });
    });
  });

  describe("failures", () => {
    it.each(["UPSTREAM", "TRANSPORT", "TIMEOUT"] as const)(
      "rejects a transient %s failure with sessionValid true and returns the session to idle",
      async (type) => {
        const { runtime, controlled } = await startTestRuntime();
        const { sessionId } = await runtime.bridge.sessionsCreate({});
        const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
        await settle();
        controlled.current().fail(type, "provider said no");
        expect(await rejectionOf(reply)).toMatchObject({ type, message: "provider said no", details: { sessionValid: true } });
        const status = await runtime.bridge.sessionsStatus({ sessionId });
        expect(status.status).toBe("idle");
        expect(status.error).toBeUndefined();
        const next = runtime.bridge.sessionsPrompt({ sessionId, prompt: "again" });
        await settle();
        controlled.current().reply({ text: "fine" });
        expect((await next).text).toBe("fine");
      },
    );

    it.each(["AUTH", "CONFIG"] as const)(
      "moves the session to failed on an unrecoverable %s failure; later prompts fail with it, sessionValid false",
      async (type) => {
        const { runtime, controlled } = await startTestRuntime();
        const { sessionId } = await runtime.bridge.sessionsCreate({});
        const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
        const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "y" });
        await settle();
        // An unknown model is CONFIG that the provider marks unrecoverable; AUTH is unrecoverable by default.
        controlled.current().fail(type, "bad key or model", { sessionValid: false });
        expect(await rejectionOf(reply)).toMatchObject({ type, details: { sessionValid: false } });
        expect(await rejectionOf(queued)).toMatchObject({ type, details: { sessionValid: false } });
        const status = await runtime.bridge.sessionsStatus({ sessionId });
        expect(status).toMatchObject({ status: "failed", error: { type, message: "bad key or model" } });
        const later = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "z" }));
        expect(later).toMatchObject({ type, message: "bad key or model", details: { sessionValid: false } });
        expect(controlled.closes).toEqual([{ sessionId, reason: "failed" }]);
      },
    );

    it("counts the time a prompt waits in the queue against its timeout, and drops it from the queue", async () => {
      const { runtime, clock, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "hangs", requestId: "r1" });
      const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "queued", requestId: "r2", timeout: 1_000 });
      await settle();
      clock.increment(1_000);
      expect(await rejectionOf(queued)).toMatchObject({ type: "TIMEOUT", details: { timeoutMs: 1_000, sessionValid: true } });
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "r1", queued: 0 });
      controlled.current().reply({ text: "first" });
      expect((await first).text).toBe("first");
      expect(controlled.prompts.map((held) => held.ctx.prompt)).toEqual(["hangs"]);
    });

    it("gives a prompt that leaves the queue only the rest of its timeout", async () => {
      const { runtime, clock, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "first" });
      const second = runtime.bridge.sessionsPrompt({ sessionId, prompt: "second", timeout: 1_000 });
      await settle();
      clock.increment(600);
      controlled.current().reply();
      await first;
      await settle();
      expect(controlled.current().ctx.prompt).toBe("second");
      clock.increment(399);
      await settle();
      expect(controlled.current().ctx.signal.aborted).toBe(false);
      clock.increment(1);
      expect(await rejectionOf(second)).toMatchObject({ type: "TIMEOUT" });
    });

    it("fails a prompt that outlives its timeout with TIMEOUT and aborts the agent's signal", async () => {
      const { runtime, clock, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "slow", timeout: 5_000 });
      await settle();
      const { signal } = controlled.current().ctx;
      clock.increment(4_999);
      await settle();
      expect(signal.aborted).toBe(false);
      clock.increment(1);
      expect(await rejectionOf(reply)).toMatchObject({ type: "TIMEOUT", details: { sessionValid: true, retryable: true } });
      expect(signal.aborted).toBe(true);
      expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
    });

    it("reports a queued prompt that times out as prompt.failed TIMEOUT, not as a cancel", async () => {
      const { runtime, clock, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const outcomes: string[] = [];
      runtime.on("prompt.failed", (event) => outcomes.push(`${event.requestId} failed ${event.error.type}`));
      runtime.on("prompt.cancelled", (event) => outcomes.push(`${event.requestId} cancelled`));
      const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "hangs", requestId: "r1" });
      const queued = runtime.bridge.sessionsPrompt({ sessionId, prompt: "queued", requestId: "r2", timeout: 1_000 });
      await settle();
      clock.increment(1_000);
      expect(await rejectionOf(queued)).toMatchObject({ type: "TIMEOUT", message: "Prompt timed out after 1000 ms" });
      expect(outcomes).toEqual(["r2 failed TIMEOUT"]);
      expect(controlled.cancels).toEqual([]);
      controlled.current().reply();
      await first;
    });

    it("starts the next queued prompt when the one in flight times out; the next keeps its own deadline", async () => {
      const { runtime, clock, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const first = runtime.bridge.sessionsPrompt({ sessionId, prompt: "first", requestId: "r1", timeout: 1_000 });
      const second = runtime.bridge.sessionsPrompt({ sessionId, prompt: "second", requestId: "r2", timeout: 3_000 });
      await settle();
      clock.increment(1_000);
      expect(await rejectionOf(first)).toMatchObject({ type: "TIMEOUT", details: { timeoutMs: 1_000, sessionValid: true, retryable: true } });
      await settle();
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "busy", activeRequestId: "r2", queued: 0 });
      const { signal } = controlled.current().ctx;
      clock.increment(1_999);
      await settle();
      expect(signal.aborted).toBe(false);
      clock.increment(1);
      expect(await rejectionOf(second)).toMatchObject({ type: "TIMEOUT", details: { timeoutMs: 3_000 } });
      expect(signal.aborted).toBe(true);
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "idle", lastActivityAt: clock.now() });
    });

    it("lets a prompt answered within its timeout end there: its deadline does not touch the next prompt", async () => {
      const { runtime, clock, controlled } = await startTestRuntime();
      const { sessionId } = await runtime.bridge.sessionsCreate({});
      const answered = runtime.bridge.sessionsPrompt({ sessionId, prompt: "quick", timeout: 1_000 });
      await settle();
      clock.increment(500);
      controlled.current().reply({ text: "in time" });
      expect((await answered).text).toBe("in time");
      const next = runtime.bridge.sessionsPrompt({ sessionId, prompt: "no timeout" });
      await settle();
      const { signal } = controlled.current().ctx;
      clock.increment(1_000);
      await settle();
      expect(signal.aborted).toBe(false);
      expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("busy");
      controlled.current().reply();
      await next;
    });
  });
});
