/**
 * `troupe mcp`: the bridge tools of a runtime with the agents of `troupe serve`, served to one MCP client over stdio,
 * until the client closes stdin or the process gets SIGINT or SIGTERM. stdout carries MCP alone.
 */
import { Console } from "node:console";
import { parseArgs } from "node:util";
import { BridgeError, toBridgeError } from "../errors.js";
import { serveMcp } from "../mcp/serve-mcp.js";
import { createRuntime } from "../runtime/runtime.js";
import { loadServerConfig } from "./config.js";
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
import { describeTeam, serverAgents, type AgentsOption } from "./server-agents.js";
import { handleSignals } from "./signals.js";

/** `troupe mcp --help`. */
export const MCP_USAGE = `Usage: troupe mcp [options]

Serves the eight bridge tools (sessions_create, sessions_prompt, tasks_delegate, ...) to an MCP client over
stdio: JSON-RPC on stdin and stdout, messages about the server on stderr. The agents are those of troupe serve
("assistant", "mock", and the agent.yaml team of ./agents or --agents). The client's configuration runs the
built clone by absolute path (troupe is not on npm), naming the team's folder too:
node /absolute/path/to/troupe/dist/src/cli/main.js mcp --agents /absolute/path/to/troupe/agents

Options:
  --config <file>  A JSON configuration: { "workers": [{ "id", "command", "args", ... }] }
  --agents <dir>   A folder of agent.yaml files (default: ./agents when it holds any)
  --no-agents      The built-in agents only
  -h, --help       Show this help
`;

/** Runs `troupe mcp` with the arguments after `mcp`; resolves with the exit code. */
export async function runMcp(args: string[]): Promise<number> {
  let config;
  let agentsOption: AgentsOption;
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: { config: { type: "string" }, agents: { type: "string" }, "no-agents": { type: "boolean" }, help: { type: "boolean", short: "h" } },
    });
    if (values.help === true) {
      process.stdout.write(MCP_USAGE);
      return EXIT_OK;
    }
    config = values.config === undefined ? undefined : loadServerConfig(values.config);
    if (values.agents !== undefined && values["no-agents"] === true)
      throw new BridgeError("CONFIG", "--agents and --no-agents: give one, or neither", { field: "agents" });
    agentsOption = values["no-agents"] === true ? false : values.agents;
  } catch (error) {
    process.stderr.write(`troupe mcp: ${toBridgeError(error, "CONFIG").message}\n\n${MCP_USAGE}`);
    return EXIT_USAGE;
  }
  // stdout is the protocol's: a stray console.log (or table, dir, …) from any agent or library would corrupt it.
  globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });
  const workers = config?.workers ?? [];
  let serverAgentsLoaded;
  try {
    serverAgentsLoaded = serverAgents(agentsOption, workers);
  } catch (error) {
    process.stderr.write(`troupe mcp: ${toBridgeError(error, "CONFIG").message}\n`);
    return EXIT_USAGE;
  }
  const { agents, defaultAgentId, liveProviders, defaultProvider, team } = serverAgentsLoaded;
  const runtime = createRuntime({ agents, defaultAgentId, workers });
  // From the start: a signal that comes while the runtime starts ends it as cleanly as one that comes later. A
  // second signal (not the same Ctrl-C seen twice through npx) ends the process without waiting for the stop.
  let stopHandling = (): void => undefined;
  const signalled = new Promise<void>((resolve) => {
    stopHandling = handleSignals(["SIGINT", "SIGTERM"], () => resolve());
  });
  try {
    await runtime.start();
    const service = await serveMcp(runtime, { transport: "stdio" });
    const answering = liveProviders.length === 0 ? "the offline mock provider" : `${defaultProvider} (providers: ${liveProviders.join(", ")}, mock)`;
    if (team !== undefined) process.stderr.write(`troupe mcp: agents from ${describeTeam(team)}\n`);
    process.stderr.write(`troupe mcp: serving the bridge tools on stdio; agent "${defaultAgentId}" answering with ${answering}\n`);
    await Promise.race([service.closed, signalled]);
    await service.close();
    return EXIT_OK;
  } catch (error) {
    process.stderr.write(`troupe mcp: ${toBridgeError(error).message}\n`);
    return EXIT_FAILED;
  } finally {
    await runtime.stop();
    stopHandling();
    // The transport only pauses stdin; a client that keeps it open must not keep this process alive.
    process.stdin.destroy();
  }
}
