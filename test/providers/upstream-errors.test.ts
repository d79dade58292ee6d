import { describe, expect, it } from "vitest";
import { createRedactor, REDACTED, redactingLogger, type SdkLogger } from "../../src/providers/redact.js";
import { isConnectionError, upstreamError } from "../../src/providers/upstream-errors.js";
import { conversationOf } from "../../src/providers/conversation.js";

const keep = createRedactor([]);

describe("provider failures as BridgeError", () => {
  it.each([
    [401, "AUTH", false, false],
    [403, "AUTH", false, false],
    [404, "CONFIG", false, false],
    [400, "CONFIG", false, true],
    [422, "CONFIG", false, true],
    [408, "UPSTREAM", true, true],
    [409, "UPSTREAM", true, true],
    [429, "UPSTREAM", true, true],
    [500, "UPSTREAM", true, true],
    [529, "UPSTREAM", true, true],
    [402, "UPSTREAM", false, true],
  ])("maps HTTP %i to %s (retryable %s, sessionValid %s)", (status, type, retryable, sessionValid) => {
    const error = upstreamError("p", { kind: "status", status, message: "m" }, keep);
    expect(error).toMatchObject({ type, message: `p: ${status} m`, details: { retryable, sessionValid, status, provider: "p" } });
  });

  it("lets x-should-retry override the status, and an invalid key count as AUTH", () => {
    expect(upstreamError("p", { kind: "status", status: 500, message: "m", shouldRetry: false }, keep).details.retryable).toBe(false);
    expect(upstreamError("p", { kind: "status", status: 400, message: "m", invalidKey: true }, keep).type).toBe("AUTH");
  });

  it("maps connection failures to TRANSPORT and the SDK's timeout to TIMEOUT, both leaving the session valid", () => {
    expect(upstreamError("p", { kind: "connection", message: "ECONNREFUSED" }, keep)).toMatchObject({ type: "TRANSPORT", details: { sessionValid: true } });
    expect(upstreamError("p", { kind: "timeout" }, keep)).toMatchObject({ type: "TIMEOUT", details: { sessionValid: true } });
  });

  it("recognises undici's connection failures, directly or as the cause", () => {
    expect(isConnectionError(new TypeError("fetch failed", { cause: Object.assign(new Error("connect"), { code: "ECONNREFUSED" }) }))).toBe(true);
    expect(isConnectionError(new TypeError("terminated"))).toBe(true);
    expect(isConnectionError(new Error("wrapped", { cause: Object.assign(new Error("x"), { code: "UND_ERR_SOCKET" }) }))).toBe(true);
    expect(isConnectionError(new SyntaxError("Unexpected token"))).toBe(false);
  });
});

describe("key redaction", () => {
  it("removes every occurrence of every key from a message", () => {
    const redact = createRedactor(["sk-one", undefined, "", "AIza-two"]);
    expect(redact("sk-one and AIza-two and sk-one")).toBe(`${REDACTED} and ${REDACTED} and ${REDACTED}`);
    expect(upstreamError("p", { kind: "status", status: 401, message: "bad key sk-one" }, redact).message).toBe(`p: 401 bad key ${REDACTED}`);
  });

  it("keeps keys out of what an SDK logs", () => {
    const lines: unknown[][] = [];
    const sink: SdkLogger = {
      error: (...args) => lines.push(args),
      warn: (...args) => lines.push(args),
      info: (...args) => lines.push(args),
      debug: (...args) => lines.push(args),
    };
    const logger = redactingLogger(sink, createRedactor(["sk-secret"]));

    logger.warn("retrying with sk-secret", { body: { message: "echo sk-secret" } }, new Error("sk-secret"), 3);

    expect(JSON.stringify(lines)).not.toContain("sk-secret");
    expect(lines[0]?.[3]).toBe(3);
  });
});

describe("the conversation sent", () => {
  it("starts at the first user turn, drops empty turns, and ends with the prompt", () => {
    expect(
      conversationOf(
        [
          { role: "assistant", content: "orphaned answer" },
          { role: "user", content: "q1" },
          { role: "assistant", content: "" },
          { role: "user", content: "q2" },
          { role: "assistant", content: "a2" },
        ],
        "q3",
      ),
    ).toEqual([
      { role: "user", content: "q1" },
      { role: "user", content: "q2" },
      { role: "assistant", content: "a2" },
      { role: "user", content: "q3" },
    ]);
  });
});
