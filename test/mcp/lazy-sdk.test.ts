/**
 * The MCP SDK costs about 300 ms to import: `import "troupe"` must not pay for it, only a use of MCP.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));

/** The MCP SDK modules a script resolves when run with the tracing hook. */
async function sdkModulesResolvedBy(script: string): Promise<string[]> {
  const { stderr } = await promisify(execFile)(
    process.execPath,
    ["--import", "./test/fixtures/trace-mcp-sdk.mjs", "--import", "tsx", "--input-type=module", "-e", script],
    {
      cwd: projectRoot,
    },
  );
  return stderr.split("\n").filter((line) => line.startsWith("mcp-sdk "));
}

describe("loading the MCP SDK", () => {
  it("does not happen on import of troupe, nor on a bus's start", async () => {
    const script = `
      import { CommunicationBus } from "./src/index.ts";
      const bus = new CommunicationBus({ port: 0, env: {} });
      await bus.start();
      await bus.stop();`;
    expect(await sdkModulesResolvedBy(script)).toEqual([]);
  });

  it("happens when MCP is served", async () => {
    const script = `
      import { createRuntime } from "./src/index.ts";
      import { createMcpServer } from "./src/mcp/mcp-server.ts";
      await createMcpServer(createRuntime());`;
    expect(await sdkModulesResolvedBy(script)).toEqual(expect.arrayContaining([expect.stringContaining("@modelcontextprotocol/sdk/server/index.js")]));
  });
});
