/**
 * `BusOptions`: what `new CommunicationBus(options)` accepts, their defaults and the key rules of SPEC §3.
 */
import type { InspectionEvent } from "xstate";
import { z } from "zod";
import type { Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import { parseWith } from "../validation.js";
import type { ClusterOptions } from "../cluster/node.js";
import type { Store } from "../store/store.js";
import { DEFAULT_MAX_MCP_SESSIONS, DEFAULT_MCP_SESSION_IDLE_MS } from "../mcp/streamable-http.js";
import { BUS_API_KEY_ENV, DEFAULT_DATA_DIR, ENCRYPTION_KEY_ENV } from "../server/defaults.js";
import { DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_REQUESTS_PER_SECOND_PER_CLIENT, type TlsOptions } from "../server/http-server.js";

/** The key of the tutorials: accepted on a loopback host only. */
export const DEV_KEY = "dev-key";

/** Options of the communication bus. Durations are milliseconds. */
export interface BusOptions {
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** Agent WebSocket connections at once; past it the upgrade is answered 503. Default 1000. */
  maxConnections?: number;
  /** Ping period; a socket that misses two pongs is terminated. Default 30,000. */
  heartbeatInterval?: number;
  /** A message's timeout when its `routing.timeout` is omitted. Default 300,000. */
  messageTimeout?: number;
  /**
   * Keeps registrations, messages, workflows and bridge sessions in SQLite under `dataDir` across restarts
   * (SPEC §3.5, docs/durability.md). Default false: the runtime the bus creates keeps them in memory.
   */
  persistenceEnabled?: boolean;
  /** The directory of the SQLite store when `persistenceEnabled`. Default `./.troupe`. */
  dataDir?: string;
  /** Encrypts what the store holds with AES-256-GCM (needs `persistenceEnabled` and a key). Default false. */
  encryptionEnabled?: boolean;
  /** The key of `encryptionEnabled`: 64 hex characters or a passphrase of 16+. Default `$TROUPE_ENCRYPTION_KEY`. */
  encryptionKey?: string;
  /** The store of the runtime the bus creates (instead of `persistenceEnabled`); with `runtime`, give it to that runtime. */
  store?: Store | (() => Promise<Store>);
  /** Serves HTTPS and WSS with this key and certificate (PEM). */
  tls?: TlsOptions;
  /** Makes this bus one node of a cluster on NATS JetStream (docs/cluster.md); needs a PostgreSQL `store` shared by the nodes. */
  cluster?: ClusterOptions;
  /** The key every route but `GET /health` needs. Default: `$AGENT_BUS_API_KEY`; none (open) when both are unset. */
  apiKey?: string;
  /** Largest request body or WebSocket frame in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** How long a written message waits for its ack before the attempt counts as failed. Default 30,000. */
  ackTimeout?: number;
  /** The first retry's wait; linear backoff adds it per retry, exponential doubles it. Default 1,000. */
  retryDelay?: number;
  /** Unacknowledged messages written to one agent at once; the rest wait in its priority queue. Default 100. */
  maxInFlightPerAgent?: number;
  /** Messages waiting for one agent; past it sends to that agent fail with CAPACITY (429). Default 10,000. */
  maxQueuedPerAgent?: number;
  /** Finished messages remembered for `GET /messages/:id` and for dedupe by `message_id`. Default 100,000. */
  maxRetainedMessages?: number;
  /**
   * Delivery actors kept idle, without a payload, for the next messages (an actor carries one message at a time,
   * and is reused); past it, an actor whose message ended is stopped. Default 256.
   */
  maxIdleDeliveries?: number;
  /** How long an ended workflow session stays readable before it is evicted (then 404); 0 evicts at once. Default 3,600,000. */
  workflowRetentionMs?: number;
  /** Workflow sessions alive at once (ended, not yet evicted ones included), for the runtime the bus creates. Default 10,000. */
  maxWorkflowSessions?: number;
  /** How long `stop()` waits for written messages to be acknowledged and requests to finish. Default 5,000. */
  closeGraceMs?: number;
  /** A connection that sends nothing this long after it opened is closed. Default 30,000. */
  connectionIdleMs?: number;
  /** A request body still arriving this long after it began is answered 408 and its connection closed. Default 30,000. */
  bodyTimeoutMs?: number;
  /**
   * What may wait to be written to one agent's socket: messages past it wait in its queue; an answer past it
   * closes it with 1013. Also what may wait for one subscriber of `/events`: past it, its events wait in the
   * event buffer. Default 8 MiB.
   */
  maxSocketBufferBytes?: number;
  /** Bytes of all messages not yet acknowledged or dead, together; past it sends are 429 CAPACITY. Default 256 MiB. */
  maxQueuedBytes?: number;
  /**
   * `"token"`: an agent's own token (from its registration) is needed to connect as it, replace its socket,
   * deregister it or send as it; `"shared"`: the bus key alone does (the seed project's model). Default
   * `"shared"` on a loopback host, `"token"` on any other.
   */
  agentAuth?: "token" | "shared";
  /** Agents registered at once; past it registration is 429 CAPACITY. Default 10,000. */
  maxAgents?: number;
  /** Largest `shared_context` of a workflow session, as JSON in UTF-8 bytes; past it 413. Default 64 KiB. */
  maxSharedContextBytes?: number;
  /** The longest chain of `ctx.ask`s (an agent asking one that asks …); the next ask is CONFIG. Default 8. */
  maxAskDepth?: number;
  /**
   * Bridge sessions the runtime's agents may hold for the bus's senders at once; past it their tasks are
   * answered CAPACITY, so that bus traffic never takes every session from the bridge. Default: half the
   * runtime's `maxSessions`.
   */
  maxBusSessions?: number;
  /**
   * Connections one client (a remote address) may hold open at once, HTTP and WebSocket together; past it a
   * new connection is answered 429 (`retry-after`) and closed. Default 256.
   */
  maxConnectionsPerClient?: number;
  /**
   * Requests a second one client may make on average, and the frames a second one agent may send over its
   * socket (token bucket; `GET /health` is free). Past it an HTTP request is 429 with `retry-after`; an
   * agent's socket is read again once its rate allows (nothing is refused or lost). 0 turns it off. Default 1,000.
   */
  requestsPerSecondPerClient?: number;
  /** Requests (or frames) at once before the rate applies. Default twice `requestsPerSecondPerClient`. */
  requestBurstPerClient?: number;
  /** Bridge sessions one client may hold open. Default a quarter of the runtime's `maxSessions`. */
  maxBridgeSessionsPerClient?: number;
  /** Workflow sessions one client may hold (ended ones count until evicted). Default a quarter of `maxWorkflowSessions`. */
  maxWorkflowSessionsPerClient?: number;
  /** Conversations one client may have started and alive (`POST /converse`). Default a quarter of the runtime's `maxSessions`. */
  maxConversationsPerClient?: number;
  /** MCP sessions open at once on `/mcp` (Streamable HTTP); past it an `initialize` is 429. Default 100. */
  maxMcpSessions?: number;
  /** An MCP session on `/mcp` without a request in flight this long is closed. Default 600,000. */
  mcpSessionIdleMs?: number;
  /**
   * Events the event stream keeps for `?since=<seq>` (SPEC §5, docs/events.md); 0 keeps none, and a
   * reconnecting client is then only told what it missed. Default 10,000.
   */
  eventBufferSize?: number;
  /** Length of the JSON of the kept events, together; the oldest go first past it. Default 16 MiB. */
  eventBufferBytes?: number;
  /**
   * When the event stream keeps events for replay: `"watched"` from the first subscriber of `/events` until
   * `eventBufferIdleMs` after the last one left (nothing is built for the stream while nobody watches), or
   * `"always"` from the bus's start (a first client can replay what happened before it came, at a cost:
   * docs/events.md). Default `"watched"`.
   */
  eventBuffer?: "always" | "watched";
  /** How long the event buffer keeps recording after the last subscriber left (`eventBuffer: "watched"`). Default 300,000. */
  eventBufferIdleMs?: number;
  /** Subscribers of `/events` (WebSocket and SSE together) at once; past it 503. Default 100. */
  maxEventSubscribers?: number;
  /** Subscribers of `/events` one client may hold at once; past it 429. Default a quarter of `maxEventSubscribers`. */
  maxEventSubscribersPerClient?: number;
  /** The runtime behind `POST /bridge/:tool`. Default: a runtime without agents, started and stopped with the bus. */
  runtime?: Runtime;
  /** The clock of every timer and timestamp; XState's `SimulatedClock` drives it in tests. */
  clock?: Clock;
  /** Receives XState's inspection events of every actor of the runtime the bus creates (with `runtime`, give it to that runtime). */
  inspect?: (event: InspectionEvent) => void;
  /** Where `AGENT_BUS_API_KEY` is read. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

const positiveInt = z.number().int().positive();
const delay = positiveInt.max(MAX_TIMER_DELAY_MS);

const optionsSchema = z.object({
  port: z.number().int().min(0).max(65_535).default(8080),
  host: z.string().min(1).default("127.0.0.1"),
  maxConnections: positiveInt.default(1_000),
  heartbeatInterval: delay.default(30_000),
  messageTimeout: delay.default(300_000),
  persistenceEnabled: z.boolean().default(false),
  dataDir: z.string().min(1).default(DEFAULT_DATA_DIR),
  encryptionEnabled: z.boolean().default(false),
  encryptionKey: z.string().min(1, "must not be empty").optional(),
  apiKey: z.string().min(1, "must not be empty").optional(),
  maxBodyBytes: positiveInt.default(1024 * 1024),
  ackTimeout: delay.default(30_000),
  retryDelay: delay.default(1_000),
  maxInFlightPerAgent: positiveInt.default(100),
  maxQueuedPerAgent: positiveInt.default(10_000),
  maxRetainedMessages: positiveInt.default(100_000),
  maxIdleDeliveries: z.number().int().min(0).default(256),
  workflowRetentionMs: z.number().int().min(0).max(MAX_TIMER_DELAY_MS).default(3_600_000),
  maxWorkflowSessions: positiveInt.default(10_000),
  closeGraceMs: z.number().int().min(0).default(5_000),
  connectionIdleMs: delay.default(30_000),
  bodyTimeoutMs: delay.default(30_000),
  maxSocketBufferBytes: positiveInt.default(8 * 1024 * 1024),
  maxQueuedBytes: positiveInt.default(256 * 1024 * 1024),
  maxAgents: positiveInt.default(10_000),
  agentAuth: z.enum(["token", "shared"]).optional(),
  maxSharedContextBytes: positiveInt.default(64 * 1024),
  maxAskDepth: positiveInt.default(8),
  maxBusSessions: positiveInt.optional(),
  maxConnectionsPerClient: positiveInt.default(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
  requestsPerSecondPerClient: z.number().int().min(0).default(DEFAULT_REQUESTS_PER_SECOND_PER_CLIENT),
  requestBurstPerClient: positiveInt.optional(),
  maxBridgeSessionsPerClient: positiveInt.optional(),
  maxWorkflowSessionsPerClient: positiveInt.optional(),
  maxConversationsPerClient: positiveInt.optional(),
  maxMcpSessions: positiveInt.default(DEFAULT_MAX_MCP_SESSIONS),
  mcpSessionIdleMs: delay.default(DEFAULT_MCP_SESSION_IDLE_MS),
  eventBufferSize: z.number().int().min(0).default(10_000),
  eventBufferBytes: positiveInt.default(16 * 1024 * 1024),
  eventBuffer: z.enum(["always", "watched"]).default("watched"),
  eventBufferIdleMs: delay.default(300_000),
  maxEventSubscribers: positiveInt.default(100),
  maxEventSubscribersPerClient: positiveInt.optional(),
});

/**
 * The bus's limits and timings, each optional, unknown keys refused: what the `bus` section of
 * `troupe serve --config` may set. Where it listens, its key and its agent auth are flags, not in here.
 */
export const busLimitsSchema = optionsSchema
  .omit({ port: true, host: true, apiKey: true, agentAuth: true, persistenceEnabled: true, encryptionEnabled: true })
  .partial()
  .strict();

/** What `busLimitsSchema` accepts. */
export type BusLimits = z.output<typeof busLimitsSchema>;

/** The options with every default applied. */
export type ResolvedBusOptions = Omit<z.output<typeof optionsSchema>, "apiKey" | "agentAuth" | "encryptionKey"> & {
  apiKey: string | undefined;
  agentAuth: "token" | "shared";
  encryptionKey: string | undefined;
};

/** Validates the options and applies defaults; the key comes from `apiKey`, then `$AGENT_BUS_API_KEY`. */
export function resolveBusOptions(options: BusOptions): ResolvedBusOptions {
  const { runtime: _runtime, clock: _clock, inspect: _inspect, store: _store, tls: _tls, cluster: _cluster, env = process.env, ...plain } = options;
  const resolved = parseWith(optionsSchema, plain, "(options)");
  // An empty AGENT_BUS_API_KEY counts as unset, as shells make it easy to export one by accident.
  // A broker's guest account is local-only: the shared key is the model on loopback, tokens anywhere else.
  const agentAuth = resolved.agentAuth ?? (isLoopbackHost(resolved.host) ? "shared" : "token");
  return {
    ...resolved,
    agentAuth,
    apiKey: resolved.apiKey ?? (env[BUS_API_KEY_ENV] || undefined),
    encryptionKey: resolved.encryptionKey ?? (env[ENCRYPTION_KEY_ENV] || undefined),
  };
}

/** Whether a host name or address only reaches this machine. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  return bare === "localhost" || bare === "::1" || bare === "ip6-localhost" || /^127\.\d+\.\d+\.\d+$/.test(bare) || bare === "::ffff:127.0.0.1";
}

/**
 * Throws CONFIG when `host` may not be served with `apiKey` (undefined: none): `dev-key`, or no key, off loopback. `keyName`
 * is how the caller names the key (`apiKey`, `--api-key`), so `troupe serve` can refuse it before it starts anything.
 */
export function checkKeyForHost(host: string, apiKey: string | undefined, keyName = "apiKey"): void {
  if (isLoopbackHost(host)) return;
  if (apiKey === DEV_KEY) {
    throw new BridgeError("CONFIG", `${keyName}: "${DEV_KEY}" is refused on the non-loopback host ${host}; set a real key`, { field: "apiKey" });
  }
  if (apiKey === undefined) {
    throw new BridgeError("CONFIG", `${keyName}: a key is required on the non-loopback host ${host} (${keyName} or $${BUS_API_KEY_ENV})`, { field: "apiKey" });
  }
}

/** The rules checked by `start()`: no `dev-key` and no missing key off loopback, no unavailable feature. */
export function checkStartRules(options: ResolvedBusOptions): void {
  checkKeyForHost(options.host, options.apiKey);
  if (options.encryptionEnabled && !options.persistenceEnabled) {
    throw new BridgeError("CONFIG", "encryptionEnabled: encryption at rest needs persistenceEnabled (memory holds nothing at rest)", {
      field: "encryptionEnabled",
    });
  }
  if (options.encryptionEnabled && options.encryptionKey === undefined) {
    throw new BridgeError("CONFIG", `encryptionEnabled: a key is needed (encryptionKey or $${ENCRYPTION_KEY_ENV})`, { field: "encryptionKey" });
  }
}
