/**
 * XState is pinned: the runtime replaces `system.scheduler` and reads an actor's `_parent`, neither of them
 * public API, so a minor update can break them (docs/architecture.md).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

const packageJson = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { dependencies: Record<string, string> };
const lock = JSON.parse(readFileSync(new URL("../package-lock.json", import.meta.url), "utf8")) as {
  packages: Record<string, { dependencies?: Record<string, string> }>;
};

describe("the xstate dependency", () => {
  it("is one exact version, the one installed, in package.json and in the lock", () => {
    const installed = (createRequire(import.meta.url)("xstate/package.json") as { version: string }).version;
    expect(packageJson.dependencies["xstate"]).toBe(installed);
    expect(lock.packages[""]?.dependencies?.["xstate"]).toBe(installed);
  });
});
