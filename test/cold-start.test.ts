/**
 * What a cold start loads. Importing troupe as a library loads no provider SDK, no ACP or MCP SDK, no ajv,
 * ELK, yaml, ws or SQLite driver, and no logger, metrics library or CLI parser: each loads when first used
 * (src/lazy-modules.ts). `troupe --version` loads the command line's parser alone. The times these starts take
 * are the bench's to measure (bench/cold-start.bench.ts), never a test's.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RECORDER = fileURLToPath(new URL("./support/record-loaded-modules.mjs", import.meta.url));

/** Loaded only by the code that needs them. */
const LOADED_ON_FIRST_USE = [
  "openai",
  "@anthropic-ai/sdk",
  "@google/genai",
  "@agentclientprotocol/sdk",
  "@modelcontextprotocol/sdk",
  "ajv",
  "elkjs",
  "yaml",
  "ws",
  "better-sqlite3",
  "pino",
  "pino-pretty",
  "prom-client",
  "commander",
];

/** The packages of the TypeScript loader the tests run the sources with, which a user's process does not load. */
const TEST_LOADER = new Set(["tsx", "esbuild"]);

const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** The packages under node_modules that a fresh `node --import tsx <args>` loads, ES modules and CommonJS alike. */
function packagesLoadedBy(args: string[]): Promise<string[]> {
  const directory = mkdtempSync(join(tmpdir(), "troupe-cold-start-"));
  directories.push(directory);
  const log = join(directory, "loaded.log");
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "--import", RECORDER, ...args],
      { cwd: ROOT, timeout: 15_000, env: { ...process.env, TROUPE_LOADED_MODULES_LOG: log } },
      (error, _stdout, stderr) => {
        if (error) return reject(new Error(`${error.message}\n${stderr}`));
        const packages = readFileSync(log, "utf8")
          .split("\n")
          .map((path) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1])
          .filter((name): name is string => name !== undefined && !TEST_LOADER.has(name));
        resolve([...new Set(packages)]);
      },
    );
  });
}

/** The packages loaded by a fresh process that runs `code` (an ES module) from the repository's root. */
function packagesLoadedByCode(code: string): Promise<string[]> {
  return packagesLoadedBy(["--input-type=module", "-e", code]);
}

describe("import troupe", () => {
  it("loads none of the packages that are loaded when first used", async () => {
    const loaded = await packagesLoadedByCode(`await import("./src/index.ts");`);
    for (const name of LOADED_ON_FIRST_USE) expect(loaded, name).not.toContain(name);
    // The check sees what loads: an ES module package and a CommonJS one.
    expect(loaded).toContain("zod");
    expect(loaded).toContain("xstate");
  });

  it("loads no provider SDK when providers are constructed, only at their first request", async () => {
    const loaded = await packagesLoadedByCode(
      `const { openAI, anthropic, gemini } = await import("./src/index.ts");
openAI({ credentials: { apiKey: "k" } }); anthropic({ credentials: { apiKey: "k" } }); gemini({ credentials: { apiKey: "k" } });`,
    );
    for (const name of ["openai", "@anthropic-ai/sdk", "@google/genai"]) expect(loaded, name).not.toContain(name);
  });

  it("loads ajv with the first JSON Schema tool and yaml with the first agent file (CommonJS, required when first used)", async () => {
    const loaded = await packagesLoadedByCode(
      `const { defineTool, parseAgentFile } = await import("./src/index.ts");
defineTool({ name: "echo", description: "Echoes", parameters: { type: "object", properties: {} }, execute: () => "" });
parseAgentFile("agent.yaml", "name: a", { toolNames: [], providerIds: [] });`,
    );
    expect(loaded).toContain("ajv");
    expect(loaded).toContain("yaml");
  });

  it("shows pino once the CLI's logger is made", async () => {
    expect(await packagesLoadedByCode(`await (await import("./src/cli/logger.ts")).createCliLogger("silent");`)).toContain("pino");
  });
});

describe("troupe --version", () => {
  it("loads the command line's parser and nothing else", async () => {
    expect(await packagesLoadedBy(["src/cli/main.ts", "--version"])).toEqual(["commander"]);
  });
});
