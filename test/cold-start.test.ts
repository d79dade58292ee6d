/**
 * Importing troupe as a library loads no logger, no metrics library and no CLI parser: those are for the CLI
 * and for the first Prometheus scrape. (All three are CommonJS, so the require cache shows whether they loaded.)
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The packages under node_modules loaded by a fresh process after running `code` (an ES module). */
function packagesLoadedBy(code: string): Promise<string[]> {
  const script = `${code}
const { createRequire } = await import("node:module");
const loaded = Object.keys(createRequire(import.meta.url).cache).map((path) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(path)?.[1]).filter(Boolean);
console.log(JSON.stringify([...new Set(loaded)]));`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: ROOT, timeout: 15_000 }, (error, stdout, stderr) =>
      error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as string[]),
    );
  });
}

describe("import troupe", () => {
  it("loads neither pino, prom-client nor commander", async () => {
    const loaded = await packagesLoadedBy(`await import("./src/index.ts");`);
    expect(loaded).not.toContain("pino");
    expect(loaded).not.toContain("pino-pretty");
    expect(loaded).not.toContain("prom-client");
    expect(loaded).not.toContain("commander");
    // The check does see the CommonJS packages that load.
    expect(loaded).toContain("xstate");
  });

  it("shows pino once the CLI's logger is made", async () => {
    expect(await packagesLoadedBy(`await (await import("./src/cli/logger.ts")).createCliLogger("silent");`)).toContain("pino");
  });
});
