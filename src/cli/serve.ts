/**
 * `troupe serve`: a runtime with the built-in agents and an agent.yaml team (server-agents.ts) behind the
 * communication bus (its HTTP routes, agent WebSockets, `GET /health` and `POST /bridge/:tool`), until SIGINT
 * or SIGTERM. It logs the hub's events. Its options are defined in `serve-command.ts`.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { CommunicationBus } from "../bus/bus.js";
import { checkKeyForHost } from "../bus/options.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { createRuntime } from "../runtime/runtime.js";
import { BUS_API_KEY_ENV, DEFAULT_DATA_DIR, ENCRYPTION_KEY_ENV } from "../server/defaults.js";
import { API_KEY_HEADER } from "../server/http-server.js";
import { openPostgresStore, redactedPostgresUrl } from "../store/postgres-store.js";
import { openSqliteStore, SQLITE_STORE_FILE } from "../store/sqlite-store.js";
import type { Store } from "../store/store.js";
import { loadServerConfig, type ServerConfig } from "./config.js";
import { asUsage, CliFailure, EXIT_USAGE } from "./exit-codes.js";
import { logRuntimeToStderr, type CliLogLevel } from "./logger.js";
import type { ServeFlags } from "./serve-command.js";
import { describeTeam, serverAgents, type AgentsOption } from "./server-agents.js";
import { handleSignals } from "./signals.js";
import { NODE_ID } from "../cluster/node.js";

/** Options of `troupe serve`, after parsing. */
export interface ServeOptions {
  port: number;
  host: string;
  apiKey?: string;
  /** `--agent-auth token|shared`; default: shared on a loopback host, token on any other. */
  agentAuth?: "token" | "shared";
  /** From `--config <file.json>`: ACP workers to run, remote A2A agents to use and the bus's limits. */
  config?: ServerConfig;
  /** `--agents DIR` or `--no-agents` (false); default: `./agents` when it holds agent.yaml files. */
  agents?: AgentsOption;
  /** `--data DIR` (default `./.troupe`): where the SQLite store lives; `undefined` with `--in-memory` or `--store`. */
  dataDir?: string;
  /** `--store postgres://…`: the PostgreSQL store, instead of SQLite. */
  storeUrl?: string;
  /** `$TROUPE_ENCRYPTION_KEY`: encrypts the store at rest. */
  encryptionKey?: string;
  /** `--cluster` and `--node-id`: this process is one node of a cluster, sharing the PostgreSQL store of `storeUrl`. */
  cluster?: { url: string; nodeId?: string };
  /** `--tls-key` and `--tls-cert`: PEM files, read at start, for HTTPS and WSS. */
  tls?: { key: Buffer; cert: Buffer };
  /** `--log-level` (default `info`): what goes to stderr. */
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
  if (flags.cluster !== undefined && !/^(nats|tls):\/\/./.test(flags.cluster)) {
    throw new BridgeError("CONFIG", "--cluster: give a nats:// (or tls://) URL of a NATS server with JetStream", { field: "cluster" });
  }
  if (flags.cluster !== undefined && flags.store === undefined) {
    throw new BridgeError("CONFIG", "--cluster needs --store postgres://…: the nodes of a cluster share one PostgreSQL store", { field: "store" });
  }
  if (flags.nodeId !== undefined && flags.cluster === undefined) {
    throw new BridgeError("CONFIG", "--node-id names a node of a cluster: give --cluster nats://… with it", { field: "node-id" });
  }
  if (flags.nodeId !== undefined && !NODE_ID.test(flags.nodeId)) {
    throw new BridgeError("CONFIG", "--node-id: letters, digits, '.', '_' and '-', 1 to 64 of them", { field: "node-id" });
  }
  if ((flags.tlsKey === undefined) !== (flags.tlsCert === undefined)) {
    throw new BridgeError("CONFIG", "--tls-key and --tls-cert: give both, or neither", { field: flags.tlsKey === undefined ? "tls-key" : "tls-cert" });
  }
  // An empty AGENT_BUS_API_KEY (or TROUPE_ENCRYPTION_KEY) counts as unset, as shells make it easy to export one by accident.
  const apiKey = flags.apiKey ?? (env[BUS_API_KEY_ENV] || undefined);
  // Bad usage, found before the runtime, its store or its workers start (the bus would refuse it only then).
  checkKeyForHost(flags.host, apiKey, "--api-key");
  const encryptionKey = env[ENCRYPTION_KEY_ENV] || undefined;
  if (encryptionKey !== undefined && flags.inMemory === true) {
    throw new BridgeError("CONFIG", `$${ENCRYPTION_KEY_ENV} is set but --in-memory keeps nothing at rest`, { field: "encryptionKey" });
  }
  const config = flags.config === undefined ? undefined : loadServerConfig(flags.config);
  // A setting that would be silently ignored is a mistake to say, not to swallow.
  if (config?.cluster !== undefined && flags.cluster === undefined) {
    throw new BridgeError(
      "CONFIG",
      `${flags.config ?? "--config"}: its cluster section needs --cluster nats://… (and --store postgres://…); remove it to run one troupe`,
      {
        field: "cluster",
      },
    );
  }
  return {
    ...(flags.inMemory === true ? {} : flags.store !== undefined ? { storeUrl: flags.store } : { dataDir: flags.data ?? DEFAULT_DATA_DIR }),
    ...(encryptionKey === undefined ? {} : { encryptionKey }),
    ...(flags.cluster === undefined ? {} : { cluster: { url: flags.cluster, ...(flags.nodeId === undefined ? {} : { nodeId: flags.nodeId }) } }),
    ...(flags.tlsKey === undefined || flags.tlsCert === undefined
      ? {}
      : { tls: { key: readPem(flags.tlsKey, "tls-key"), cert: readPem(flags.tlsCert, "tls-cert") } }),
    port: flags.port,
    host: flags.host,
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(flags.agentAuth === undefined ? {} : { agentAuth: flags.agentAuth }),
    ...(config === undefined ? {} : { config }),
    ...(flags.agents === undefined ? {} : { agents: flags.agents }),
    logLevel: flags.logLevel,
  };
}

/** A `--data` folder that cannot be created is bad usage naming the flag (exit 2); any other failure stays as it is. */
function dataDirFailure(error: unknown): Error {
  const bridgeError = toBridgeError(error);
  if (bridgeError.type !== "CONFIG" || bridgeError.details.field !== "dir") return bridgeError;
  return new CliFailure(`--data: ${bridgeError.message}`, EXIT_USAGE);
}

/**
 * Runs the bus until SIGINT or SIGTERM, then stops the bus and the runtime. Resolves when both are stopped.
 * `dev-key`, or no key at all, on a non-loopback host is CONFIG.
 */
export async function serve(options: ServeOptions): Promise<void> {
  const workers = options.config?.workers ?? [];
  const { agents, defaultAgentId, liveProviders, defaultProvider, team } = asUsage(() => serverAgents(options.agents, workers));
  const { dataDir, storeUrl, encryptionKey } = options;
  const keyOption = encryptionKey === undefined ? {} : { encryptionKey };
  const openStore: (() => Promise<Store>) | undefined =
    // The nodes of a cluster share the store: none takes it for itself (docs/cluster.md).
    storeUrl !== undefined
      ? () => openPostgresStore({ url: storeUrl, ...keyOption, exclusive: options.cluster === undefined })
      : dataDir !== undefined
        ? () => openSqliteStore({ dir: dataDir, ...keyOption }).catch((error: unknown) => Promise.reject(dataDirFailure(error)))
        : undefined;
  const storeName =
    storeUrl !== undefined ? `PostgreSQL at ${redactedPostgresUrl(storeUrl)}` : dataDir !== undefined ? join(dataDir, SQLITE_STORE_FILE) : undefined;
  const limits = options.config?.bus ?? {};
  // The bus bounds the workflows of a runtime it creates; this one is created here, so it takes the bound itself.
  const runtime = createRuntime({
    agents,
    defaultAgentId,
    workers,
    a2aAgents: options.config?.a2aAgents ?? [],
    ...(openStore === undefined ? {} : { store: openStore }),
    ...(limits.maxWorkflowSessions === undefined ? {} : { maxWorkflowSessions: limits.maxWorkflowSessions }),
  });
  // Listening before start: the workers' first lines (a command that cannot run) are events of the start.
  const logger = await logRuntimeToStderr(runtime, options.logLevel);
  const answering =
    liveProviders.length === 0
      ? `answering with the offline mock provider (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY for real models)`
      : `answering with ${defaultProvider} (providers: ${liveProviders.join(", ")}, mock)`;
  // A cluster node's bus starts its runtime itself, once the node holds its lease: the runtime must not restore
  // the sessions of other nodes from the shared store first (docs/cluster.md).
  if (options.cluster === undefined) await runtime.start();
  // serveOptionsFrom has read the environment already: the bus takes the key from the options only.
  const bus = new CommunicationBus({
    ...limits,
    port: options.port,
    host: options.host,
    apiKey: options.apiKey,
    ...(options.agentAuth === undefined ? {} : { agentAuth: options.agentAuth }),
    runtime,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    // The configuration file's `cluster` timings (lease, ack wait) with the flags' URL and node id.
    ...(options.cluster === undefined ? {} : { cluster: { ...options.config?.cluster, ...options.cluster } }),
    env: {},
  });
  await bus.start().catch(async (error: unknown) => {
    await runtime.stop();
    throw error;
  });
  const keyNote = options.apiKey === undefined ? "no API key required" : `${API_KEY_HEADER} required`;
  const storeNote =
    storeName === undefined ? "store: memory, nothing survives a restart" : `store: ${storeName}${encryptionKey === undefined ? "" : " (encrypted)"}`;
  const clusterNote = bus.cluster === undefined ? "" : `; cluster node ${bus.cluster.nodeId} on ${bus.cluster.connection.where}`;
  const authNote = bus.options.agentAuth === "token" ? "agent auth: token (each agent's own agent_token)" : "agent auth: shared (the key alone)";
  // In place before the line below is printed: whoever waits for it may signal at once. A second Ctrl-C (not the
  // same one seen twice through npm) ends the process without waiting for the stop.
  let stopHandling = (): void => undefined;
  const signalled = new Promise<NodeJS.Signals>((resolve) => {
    stopHandling = handleSignals(["SIGINT", "SIGTERM"], resolve);
  });
  if (team !== undefined) process.stdout.write(`troupe: agents from ${describeTeam(team)}\n`);
  process.stdout.write(
    `troupe listening on ${bus.url} (${keyNote}; ${authNote}; ${storeNote}${clusterNote}); agent "${defaultAgentId}" ${answering}; ` +
      `bus: POST /messages/send, agents on ws /agents/connect; visualizer and playground: ${bus.url}/ui\n`,
  );
  logger.info(
    {
      url: bus.url,
      agentAuth: bus.options.agentAuth,
      store: storeName ?? "memory",
      ...(bus.cluster === undefined ? {} : { nodeId: bus.cluster.nodeId }),
      defaultAgentId,
      defaultProvider,
      ...(team === undefined ? {} : { agentsDir: team.dir }),
    },
    "troupe listening",
  );
  const signal = await signalled;
  logger.info({ signal }, "stopping: the bus, then the runtime");
  // The runtime stops with the bus: a cluster node lets its lease go, and the others take its work over at once.
  await bus.stop({ withRuntime: true });
  await runtime.stop();
  stopHandling();
  logger.info("stopped");
}
