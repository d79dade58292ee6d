/**
 * `troupe serve`: a runtime with the default agents behind the communication bus (its HTTP routes, agent
 * WebSockets, `GET /health` and `POST /bridge/:tool`), until SIGINT or SIGTERM. It logs the hub's events.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Option, type Command } from "commander";
import { CommunicationBus } from "../bus/bus.js";
import { BUS_API_KEY_ENV, DEFAULT_DATA_DIR } from "../bus/options.js";
import { ENCRYPTION_KEY_ENV } from "../store/encryption.js";
import { openSqliteStore, SQLITE_STORE_FILE } from "../store/sqlite-store.js";
import { BridgeError } from "../errors.js";
import { logRuntimeEvents } from "../events/event-log.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import { API_KEY_HEADER, DEFAULT_HOST, DEFAULT_PORT } from "../server/http-server.js";
import { configOption, loadServerConfig, type ServerConfig } from "./config.js";
import { defaultAgents } from "./default-agents.js";
import { asUsage } from "./exit-codes.js";
import { createCliLogger, type CliLogLevel } from "./logger.js";
import { logLevelOption, parsePort } from "./options.js";
import { handleSignals } from "./signals.js";

/** The environment variable read when `--api-key` is not given. */
export const API_KEY_ENV = BUS_API_KEY_ENV;

/** Options of `troupe serve`, after parsing. */
export interface ServeOptions {
  port: number;
  host: string;
  apiKey?: string;
  /** `--agent-auth token|shared`; default: shared on a loopback host, token on any other. */
  agentAuth?: "token" | "shared";
  /** From `--config <file.json>`: ACP workers to run. */
  config?: ServerConfig;
  /** `--data DIR` (default `./.troupe`): where the SQLite store lives; `undefined` with `--in-memory`. */
  dataDir?: string;
  /** `$TROUPE_ENCRYPTION_KEY`: encrypts the store at rest. */
  encryptionKey?: string;
  /** `--tls-key` and `--tls-cert`: PEM files, read at start, for HTTPS and WSS. */
  tls?: { key: Buffer; cert: Buffer };
  /** `--log-level` (default `info`): what goes to stderr. */
  logLevel: CliLogLevel;
}

/** The flags of `troupe serve` as commander parses them. */
export interface ServeFlags {
  port: number;
  host: string;
  apiKey?: string;
  agentAuth?: "token" | "shared";
  config?: string;
  data?: string;
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
    ...(flags.inMemory === true ? {} : { dataDir: flags.data ?? DEFAULT_DATA_DIR }),
    ...(encryptionKey === undefined ? {} : { encryptionKey }),
    ...(flags.tlsKey === undefined || flags.tlsCert === undefined ? {} : { tls: { key: readPem(flags.tlsKey, "tls-key"), cert: readPem(flags.tlsCert, "tls-cert") } }),
    port: flags.port,
    host: flags.host,
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(flags.agentAuth === undefined ? {} : { agentAuth: flags.agentAuth }),
    ...(flags.config === undefined ? {} : { config: loadServerConfig(flags.config) }),
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
    .addOption(
      new Option(
        "--data <dir>",
        `where the SQLite store keeps registrations, messages, workflows and sessions across restarts (default: ${DEFAULT_DATA_DIR}); ` +
          `encrypted at rest when $${ENCRYPTION_KEY_ENV} is set`,
      ).conflicts("inMemory"),
    )
    .option("--in-memory", "keep everything in memory instead: nothing survives a restart")
    .option("--tls-key <file>", "serve HTTPS and WSS with this PEM key (and --tls-cert)")
    .option("--tls-cert <file>", "the PEM certificate of --tls-key")
    .addOption(logLevelOption("info"))
    .action(async (flags: ServeFlags) => {
      const options = asUsage(() => serveOptionsFrom(flags, process.env));
      await serve(options);
    });
}

/**
 * Runs the bus until SIGINT or SIGTERM, then stops the bus and the runtime. Resolves when both are stopped.
 * `dev-key`, or no key at all, on a non-loopback host is CONFIG.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const { agents, defaultAgentId, liveProviders, defaultProvider } = defaultAgents();
  const { dataDir, encryptionKey } = options;
  const runtime = createRuntime({
    agents,
    defaultAgentId,
    workers: options.config?.workers ?? [],
    ...(dataDir === undefined ? {} : { store: () => openSqliteStore({ dir: dataDir, ...(encryptionKey === undefined ? {} : { encryptionKey }) }) }),
  });
  const logger = await createCliLogger(options.logLevel);
  // Listening before start: the workers' first lines (a command that cannot run) are events of the start.
  logRuntimeEvents(runtime, logger, { agentOfSession: (sessionId) => agentOfSession(runtime, sessionId) });
  const answering =
    liveProviders.length === 0
      ? `answering with the offline mock provider (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY for real models)`
      : `answering with ${defaultProvider} (providers: ${liveProviders.join(", ")}, mock)`;
  await runtime.start();
  // parseServeArgs has read the environment already: the bus takes the key from the options only.
  const bus = new CommunicationBus({
    port: options.port,
    host: options.host,
    apiKey: options.apiKey,
    ...(options.agentAuth === undefined ? {} : { agentAuth: options.agentAuth }),
    runtime,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    env: {},
  });
  await bus.start().catch(async (error: unknown) => {
    await runtime.stop();
    throw error;
  });
  const keyNote = options.apiKey === undefined ? "no API key required" : `${API_KEY_HEADER} required`;
  const storeNote =
    dataDir === undefined ? "store: memory, nothing survives a restart" : `store: ${join(dataDir, SQLITE_STORE_FILE)}${encryptionKey === undefined ? "" : " (encrypted)"}`;
  const authNote = bus.options.agentAuth === "token" ? "agent auth: token (each agent's own agent_token)" : "agent auth: shared (the key alone)";
  // In place before the line below is printed: whoever waits for it may signal at once. A second Ctrl-C (not the
  // same one seen twice through npm) ends the process without waiting for the stop.
  let stopHandling = (): void => undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    stopHandling = handleSignals(["SIGINT", "SIGTERM"], resolve);
  });
  process.stdout.write(
    `troupe listening on ${bus.url} (${keyNote}; ${authNote}; ${storeNote}); agent "${defaultAgentId}" ${answering}; ` +
      `bus: POST /messages/send, agents on ws /agents/connect\n`,
  );
  logger.info({ url: bus.url, agentAuth: bus.options.agentAuth, store: dataDir ?? "memory", defaultAgentId, defaultProvider }, "troupe listening");
  const signal = await signalled;
  logger.info({ signal }, "stopping: the bus, then the runtime");
  await bus.stop();
  await runtime.stop();
  stopHandling();
  logger.info("stopped");
}

/** The agent of a bridge session, while it exists: the `agentId` of its prompts' log lines. */
export function agentOfSession(runtime: Runtime, sessionId: string): string | undefined {
  return runtime.hasSession(sessionId) ? runtime.sessionStatus(sessionId).agentId : undefined;
}
