/**
 * `troupe serve`: a runtime with the default agents behind the communication bus (its HTTP routes, agent
 * WebSockets, `GET /health` and `POST /bridge/:tool`), until SIGINT or SIGTERM.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CommunicationBus } from "../bus/bus.js";
import { BUS_API_KEY_ENV, DEFAULT_DATA_DIR } from "../bus/options.js";
import { ENCRYPTION_KEY_ENV } from "../store/encryption.js";
import { openSqliteStore, SQLITE_STORE_FILE } from "../store/sqlite-store.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { createRuntime } from "../runtime/runtime.js";
import { API_KEY_HEADER, DEFAULT_HOST, DEFAULT_PORT } from "../server/http-server.js";
import { loadServerConfig, type ServerConfig } from "./config.js";
import { defaultAgents } from "./default-agents.js";

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
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new BridgeError("CONFIG", `--${field}: cannot read ${path}: ${(error as Error).message}`, { field });
  }
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65_535) {
    throw new BridgeError("CONFIG", `--port: expected 0 to 65535, got ${JSON.stringify(text)}`, { field: "port" });
  }
  return port;
}

/** Parses the arguments after `serve`; a bad one is CONFIG. */
export function parseServeArgs(args: string[], env: NodeJS.ProcessEnv): ServeOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string" },
        host: { type: "string" },
        "api-key": { type: "string" },
        "agent-auth": { type: "string" },
        config: { type: "string" },
        data: { type: "string" },
        "in-memory": { type: "boolean" },
        "tls-key": { type: "string" },
        "tls-cert": { type: "string" },
      },
    }));
  } catch (error) {
    throw toBridgeError(error, "CONFIG");
  }
  if (values.host === "") throw new BridgeError("CONFIG", "--host: must not be empty", { field: "host" });
  if (values["api-key"] === "") throw new BridgeError("CONFIG", "--api-key: must not be empty", { field: "apiKey" });
  const agentAuth = values["agent-auth"];
  if (agentAuth !== undefined && agentAuth !== "token" && agentAuth !== "shared") {
    throw new BridgeError("CONFIG", `--agent-auth: expected token or shared, got ${JSON.stringify(agentAuth)}`, { field: "agentAuth" });
  }
  if (values.data !== undefined && values["in-memory"] === true) {
    throw new BridgeError("CONFIG", "--data and --in-memory: choose one", { field: "data" });
  }
  if (values.data === "") throw new BridgeError("CONFIG", "--data: must not be empty", { field: "data" });
  if ((values["tls-key"] === undefined) !== (values["tls-cert"] === undefined)) {
    throw new BridgeError("CONFIG", "--tls-key and --tls-cert: give both, or neither", { field: values["tls-key"] === undefined ? "tls-key" : "tls-cert" });
  }
  // An empty AGENT_BUS_API_KEY (or TROUPE_ENCRYPTION_KEY) counts as unset, as shells make it easy to export one by accident.
  const apiKey = values["api-key"] ?? (env[API_KEY_ENV] || undefined);
  const encryptionKey = env[ENCRYPTION_KEY_ENV] || undefined;
  if (encryptionKey !== undefined && values["in-memory"] === true) {
    throw new BridgeError("CONFIG", `$${ENCRYPTION_KEY_ENV} is set but --in-memory keeps nothing at rest`, { field: "encryptionKey" });
  }
  return {
    ...(values["in-memory"] === true ? {} : { dataDir: values.data ?? DEFAULT_DATA_DIR }),
    ...(encryptionKey === undefined ? {} : { encryptionKey }),
    ...(values["tls-key"] === undefined || values["tls-cert"] === undefined
      ? {}
      : { tls: { key: readPem(values["tls-key"], "tls-key"), cert: readPem(values["tls-cert"], "tls-cert") } }),
    port: values.port === undefined ? DEFAULT_PORT : parsePort(values.port),
    host: values.host ?? DEFAULT_HOST,
    ...(apiKey === undefined ? {} : { apiKey }),
    ...(agentAuth === undefined ? {} : { agentAuth }),
    ...(values.config === undefined ? {} : { config: loadServerConfig(values.config) }),
  };
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
  const answering =
    liveProviders.length === 0
      ? `answering with the offline mock provider (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY for real models)`
      : `answering with ${defaultProvider} (providers: ${liveProviders.join(", ")}, mock)`;
  await runtime.start();
  // parseServeArgs has read the environment already: the bus takes the key from the options only.
  const bus = new CommunicationBus({
    ...options.config?.bus,
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
  // After the first signal the handlers are gone, so a second Ctrl-C ends the process at once. They are in place
  // before the line below is printed: whoever waits for it may signal at once.
  const signalled = new Promise<void>((resolve) => {
    const onSignal = (): void => {
      process.off("SIGINT", onSignal).off("SIGTERM", onSignal);
      resolve();
    };
    process.on("SIGINT", onSignal).on("SIGTERM", onSignal);
  });
  process.stdout.write(
    `troupe listening on ${bus.url} (${keyNote}; ${authNote}; ${storeNote}); agent "${defaultAgentId}" ${answering}; ` +
      `bus: POST /messages/send, agents on ws /agents/connect\n`,
  );
  await signalled;
  await bus.stop();
  await runtime.stop();
}
