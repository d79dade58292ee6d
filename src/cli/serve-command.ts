/**
 * `troupe serve`'s definition: its options and their help. What it runs, and the checks of its options that
 * read files and schemas, are in `serve.ts`, loaded only when the command runs: the server, zod and the SDKs
 * are not `troupe --version`'s to pay for (test/cold-start.test.ts).
 */
import { Option, type Command } from "commander";
import { API_KEY_HEADER } from "../protocol/headers.js";
import { BUS_API_KEY_ENV, DEFAULT_DATA_DIR, DEFAULT_HOST, DEFAULT_PORT, ENCRYPTION_KEY_ENV } from "../server/defaults.js";
import { asUsage } from "./exit-codes.js";
import type { CliLogLevel } from "./logger.js";
import { agentsOption, configOption, logLevelOption, noAgentsOption, parsePort } from "./options.js";

/** The environment variable read when `--api-key` is not given. */
export const API_KEY_ENV = BUS_API_KEY_ENV;

/** The flags of `troupe serve` as commander parses them. */
export interface ServeFlags {
  port: number;
  host: string;
  apiKey?: string;
  agentAuth?: "token" | "shared";
  config?: string;
  /** `--agents DIR`, or false for `--no-agents`. */
  agents?: string | false;
  data?: string;
  /** `--store postgres://…`: the PostgreSQL store instead of SQLite. */
  store?: string;
  inMemory?: boolean;
  /** `--cluster nats://…`: this process is one node of a cluster (needs `--store`). */
  cluster?: string;
  /** `--node-id ID`: this node's id in its cluster. */
  nodeId?: string;
  tlsKey?: string;
  tlsCert?: string;
  logLevel: CliLogLevel;
}

/** Adds `troupe serve` to the program. */
export function registerServeCommand(program: Command): void {
  program
    .command("serve")
    .summary("serve the bus and the bridge tools over HTTP and WebSocket")
    .description(
      "Serve the communication bus (agents, messages and workflow sessions over HTTP and WebSocket) and the bridge tools " +
        "(POST /bridge/:tool, GET /health, GET /metrics) until Ctrl-C or SIGTERM. Logs go to stderr.",
    )
    .option("--port <port>", "port to listen on; 0 picks a free one", parsePort, DEFAULT_PORT)
    .option("--host <host>", "address to bind", DEFAULT_HOST)
    .option(
      "--api-key <key>",
      `require this key in the ${API_KEY_HEADER} header on every route but GET /health, and on agent WebSockets ` +
        `(default: $${API_KEY_ENV}; none when unset, which only a loopback --host allows; "dev-key" is refused on any other host)`,
    )
    .addOption(
      new Option(
        "--agent-auth <mode>",
        "token: an agent needs its own agent_token (answered by POST /agents/register) to connect, send, re-register or " +
          "deregister as itself; shared: the key alone does (the seed's model). Default: shared on a loopback --host, token on any other",
      ).choices(["token", "shared"]),
    )
    .addOption(configOption())
    .addOption(agentsOption())
    .addOption(noAgentsOption())
    .addOption(
      new Option(
        "--data <dir>",
        `where the SQLite store keeps registrations, messages, workflows and sessions across restarts (default: ${DEFAULT_DATA_DIR}); ` +
          `encrypted at rest when $${ENCRYPTION_KEY_ENV} is set`,
      ).conflicts("inMemory"),
    )
    .addOption(
      new Option(
        "--store <url>",
        "keep them in PostgreSQL instead (postgres://user:password@host:port/database; tables in its schema troupe, created when missing); " +
          `encrypted at rest when $${ENCRYPTION_KEY_ENV} is set`,
      ).conflicts(["inMemory", "data"]),
    )
    .option("--in-memory", "keep everything in memory instead: nothing survives a restart")
    .addOption(
      new Option(
        "--cluster <url>",
        "run as one node of a cluster: messages between nodes on this NATS JetStream server (nats://host:4222; several comma-separated), " +
          "the store shared by every node (--store postgres://… is required)",
      ).conflicts(["inMemory", "data"]),
    )
    .option("--node-id <id>", "this node's id in its cluster: letters, digits, '.', '_' and '-' (default: the host's name and a random tail)")
    .option("--tls-key <file>", "serve HTTPS and WSS with this PEM key (and --tls-cert)")
    .option("--tls-cert <file>", "the PEM certificate of --tls-key")
    .addOption(logLevelOption("info"))
    .action(async (flags: ServeFlags) => {
      const { serve, serveOptionsFrom } = await import("./serve.js");
      const options = asUsage(() => serveOptionsFrom(flags, process.env));
      await serve(options);
    });
}
