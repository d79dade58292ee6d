/**
 * `troupe serve`'s definition: its options, their help and their checks. What it runs is in `serve.ts`,
 * loaded only when the command runs (the SDKs it pulls in are not `troupe --version`'s to pay for).
 */
import { readFileSync } from "node:fs";
import { Option, type Command } from "commander";
import { BUS_API_KEY_ENV, DEFAULT_DATA_DIR } from "../bus/options.js";
import { BridgeError } from "../errors.js";
import { API_KEY_HEADER, DEFAULT_HOST, DEFAULT_PORT } from "../server/http-server.js";
import { ENCRYPTION_KEY_ENV } from "../store/encryption.js";
import { loadServerConfig } from "./config.js";
import { asUsage } from "./exit-codes.js";
import type { CliLogLevel } from "./logger.js";
import { agentsOption, configOption, logLevelOption, noAgentsOption, parsePort } from "./options.js";
import type { ServeOptions } from "./serve.js";

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
  tlsKey?: string;
  tlsCert?: string;
  logLevel: CliLogLevel;
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new BridgeError("CONFIG", `--${field}: cannot read ${path}: ${(error as Error).message}`, { field });
  }
}

/** Checks what commander cannot check alone and reads the files and the environment; a bad one is CONFIG. */
export function serveOptionsFrom(flags: ServeFlags, env: NodeJS.ProcessEnv): ServeOptions {
  if (flags.host === "") throw new BridgeError("CONFIG", "--host: must not be empty", { field: "host" });
  if (flags.apiKey === "") throw new BridgeError("CONFIG", "--api-key: must not be empty", { field: "apiKey" });
  if (flags.data === "") throw new BridgeError("CONFIG", "--data: must not be empty", { field: "data" });
  if (flags.store !== undefined && !/^postgres(ql)?:\/\/./.test(flags.store)) {
    throw new BridgeError("CONFIG", "--store: give a postgres:// (or postgresql://) URL; the SQLite store is --data DIR", { field: "store" });
  }
  if ((flags.tlsKey === undefined) !== (flags.tlsCert === undefined)) {
    throw new BridgeError("CONFIG", "--tls-key and --tls-cert: give both, or neither", { field: flags.tlsKey === undefined ? "tls-key" : "tls-cert" });
  }
  // An empty AGENT_BUS_API_KEY (or TROUPE_ENCRYPTION_KEY) counts as unset, as shells make it easy to export one by accident.
  const apiKey = flags.apiKey ?? (env[API_KEY_ENV] || undefined);
  const encryptionKey = env[ENCRYPTION_KEY_ENV] || undefined;
  if (encryptionKey !== undefined && flags.inMemory === true) {
    throw new BridgeError("CONFIG", `$${ENCRYPTION_KEY_ENV} is set but --in-memory keeps nothing at rest`, { field: "encryptionKey" });
  }
  return {
    ...(flags.inMemory === true ? {} : flags.store !== undefined ? { storeUrl: flags.store } : { dataDir: flags.data ?? DEFAULT_DATA_DIR }),
    ...(encryptionKey === undefined ? {} : { encryptionKey }),
    ...(flags.tlsKey === undefined || flags.tlsCert === undefined ? {} : { tls: { key: readPem(flags.tlsKey, "tls-key"), cert: readPem(flags.tlsCert, "tls-cert") } }),
    port: flags.port,
    host: flags.host,
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(flags.agentAuth === undefined ? {} : { agentAuth: flags.agentAuth }),
    ...(flags.config === undefined ? {} : { config: loadServerConfig(flags.config) }),
    ...(flags.agents === undefined ? {} : { agents: flags.agents }),
    logLevel: flags.logLevel,
  };
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
    .option("--tls-key <file>", "serve HTTPS and WSS with this PEM key (and --tls-cert)")
    .option("--tls-cert <file>", "the PEM certificate of --tls-key")
    .addOption(logLevelOption("info"))
    .action(async (flags: ServeFlags) => {
      const options = asUsage(() => serveOptionsFrom(flags, process.env));
      const { serve } = await import("./serve.js");
      await serve(options);
    });
}
