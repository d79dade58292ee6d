/**
 * The README's runnable example (examples/workflow.ts) runs offline and prints a completed workflow summary.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

describe("examples/workflow.ts", () => {
  it("runs design → implementation → review with an LLM agent, a worker and a WebSocket agent to completed", async () => {
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ["--import", "tsx", "examples/workflow.ts"], { cwd: ROOT, timeout: 15_000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      );
    });

    expect(stdout).toMatch(/^# Session sess_\w+: completed$/m);
    expect(stdout).toContain("- design, troupe://designer: Design for");
    expect(stdout).toContain("- implementation, troupe://coder: Implemented");
    expect(stdout).toContain("- review, claude-code://qa: Approved");
  });
});
