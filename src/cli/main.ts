#!/usr/bin/env node
/**
 * `troupe`: the command line. Exit codes: 0 done, 1 failed, 2 bad usage.
 */
import { toBridgeError } from "../errors.js";
import { runMcp } from "./mcp.js";
import { API_KEY_ENV, parseServeArgs, serve, type ServeOptions } from "./serve.js";

const USAGE = `Usage: troupe <command> [options]

Commands:
  serve    Serve the communication bus (agents, messages, workflow sessions over HTTP and
           WebSocket) and the bridge tools (POST /bridge/:tool, GET /health, MCP on /mcp)
  mcp      Serve the bridge tools to an MCP client over stdio (troupe mcp --help)

Options of serve:
  --port <port>    Port to listen on; 0 picks a free one (default 8080)
  --host <host>    Address to bind (default 127.0.0.1)
  --api-key <key>  Require this key in the x-agent-api-key header on every route but GET /health and
                   on agent WebSockets (default: $${API_KEY_ENV}; none when unset, which only a loopback
                   --host allows; "dev-key" is refused on any other host)
  --agent-auth <token|shared>
                   token: an agent needs its own agent_token (answered by POST /agents/register) to connect,
                   send, re-register or deregister as itself; shared: the key alone does (the seed's model).
                   Default: shared on a loopback --host, token on any other
  --config <file>  A JSON configuration: { "workers": [{ "id", "command", "args", "env", "capabilities", ... }],
                   "bus": { "maxQueuedBytes", "maxAgents", "connectionIdleMs", ... } } (the bus's limits:
                   docs/security.md)
  --data <dir>     Where the SQLite store keeps registrations, messages, workflows and sessions across
                   restarts (default ./.troupe); encrypted at rest when $TROUPE_ENCRYPTION_KEY is set
  --in-memory      Keep everything in memory instead: nothing survives a restart
  --tls-key <file>, --tls-cert <file>
                   Serve HTTPS and WSS with this PEM key and certificate

  -h, --help       Show this help
`;

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

function isHelp(arg: string | undefined): boolean {
  return arg === "--help" || arg === "-h" || arg === "help";
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === "mcp") return runMcp(args);
  if (isHelp(command) || (command === "serve" && args.some(isHelp))) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command !== "serve") {
    const problem = command === undefined ? "no command given" : `unknown command ${JSON.stringify(command)}`;
    process.stderr.write(`troupe: ${problem}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  let options: ServeOptions;
  try {
    options = parseServeArgs(args, process.env);
  } catch (error) {
    process.stderr.write(`troupe serve: ${toBridgeError(error).message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  try {
    await serve(options);
    return 0;
  } catch (error) {
    process.stderr.write(`troupe serve: ${toBridgeError(error).message}\n`);
    return EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv.slice(2));
