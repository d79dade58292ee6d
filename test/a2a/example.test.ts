/**
 * The README's A2A example (examples/a2a-client.ts) calls a troupe agent with the SDK's client: it streams an
 * answer, then continues the context.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { createMockAgent } from "../../src/index.js";
import { TEST_KEY } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("examples/a2a-client.ts", () => {
  it("streams an answer from a troupe agent and continues its context", async () => {
    const { bus } = await startRuntimeBus({ agents: [createMockAgent({ id: "assistant" })] });

    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        ["--import", "tsx", "examples/a2a-client.ts", `${bus.url}/a2a/assistant/`, "Hello over A2A"],
        { cwd: ROOT, timeout: 15_000, env: { ...process.env, AGENT_BUS_API_KEY: TEST_KEY } },
        (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
      );
    });

    expect(stdout).toBe("Echo: Hello over A2A\n[TASK_STATE_COMPLETED]\nEcho: And once more\n[TASK_STATE_COMPLETED] context continued\n");
  });
});
