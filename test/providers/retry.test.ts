import { describe, expect, it } from "vitest";
import { BridgeError } from "../../src/index.js";
import { retryAfterMsOf, retryDelayMs, runWithRetries } from "../../src/providers/retry.js";
import { recordingClock } from "../support/recording-clock.js";
import { rejectionOf } from "../support/runtime.js";

const NOW = Date.parse("2025-01-01T00:00:00Z");
const POLICY = { maxRetries: 3, baseDelayMs: 500, maxDelayMs: 8000 };

describe("retry-after", () => {
  it.each([
    [{ "retry-after": "2" }, 2000],
    [{ "retry-after": "0" }, 0],
    [{ "retry-after": "1.5" }, 1500],
    [{ "retry-after-ms": "250", "retry-after": "9" }, 250],
    [{ "retry-after": "Wed, 01 Jan 2025 00:00:03 GMT" }, 3000],
    [{ "retry-after": "Tue, 31 Dec 2024 23:00:00 GMT" }, 0],
    [{ "retry-after": "soon" }, undefined],
    [{}, undefined],
  ])("reads %j as %s ms", (headers, expected) => {
    expect(retryAfterMsOf(new Headers(headers), NOW)).toBe(expected);
  });
});

describe("retry delay", () => {
  it("honours the server's wait, and gives up on one longer than maxDelayMs", () => {
    expect(retryDelayMs(POLICY, 0, 1000)).toBe(1000);
    expect(retryDelayMs(POLICY, 0, 8001)).toBeUndefined();
  });

  it("backs off exponentially with up to 25 % jitter, capped at maxDelayMs", () => {
    expect([0, 1, 2, 3, 4, 5].map((retry) => retryDelayMs(POLICY, retry, undefined, () => 0))).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
    expect(retryDelayMs(POLICY, 1, undefined, () => 1)).toBe(750);
  });
});

describe("runWithRetries", () => {
  it("waits the retry-after of a retryable failure before the next attempt", async () => {
    const clock = recordingClock();
    let attempts = 0;
    const result = runWithRetries(
      async () => {
        attempts += 1;
        if (attempts === 1) throw new BridgeError("UPSTREAM", "429", { retryAfterMs: 1000 });
        return "ok";
      },
      { policy: POLICY, clock, signal: new AbortController().signal, mayRetry: () => true },
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(clock.delays).toEqual([1000]);
    clock.increment(999);
    await new Promise((resolve) => setImmediate(resolve));
    expect(attempts).toBe(1);
    clock.increment(1);

    expect(await result).toBe("ok");
    expect(attempts).toBe(2);
  });

  it("does not retry a non-retryable failure, nor once mayRetry says no", async () => {
    const clock = recordingClock();
    const signal = new AbortController().signal;
    const auth = await rejectionOf(
      runWithRetries(() => Promise.reject(new BridgeError("AUTH", "no")), { policy: POLICY, clock, signal, mayRetry: () => true }),
    );
    const streamed = await rejectionOf(
      runWithRetries(() => Promise.reject(new BridgeError("UPSTREAM", "cut")), { policy: POLICY, clock, signal, mayRetry: () => false }),
    );

    expect(auth).toMatchObject({ type: "AUTH", details: { attempts: 1 } });
    expect(streamed).toMatchObject({ type: "UPSTREAM", details: { attempts: 1 } });
    expect(clock.delays).toEqual([]);
  });

  it("stops waiting with CANCELLED when the prompt is cancelled between attempts", async () => {
    const clock = recordingClock();
    const controller = new AbortController();
    const result = runWithRetries(() => Promise.reject(new BridgeError("UPSTREAM", "busy")), {
      policy: POLICY,
      clock,
      signal: controller.signal,
      mayRetry: () => true,
    });
    await new Promise((resolve) => setImmediate(resolve));
    controller.abort();

    expect(await rejectionOf(result)).toMatchObject({ type: "CANCELLED" });
  });
});
