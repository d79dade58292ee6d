/**
 * A troupe node's connection to NATS with JetStream: what the cluster's message stream and leases run on.
 * The NATS client packages (`@nats-io/transport-node`, `@nats-io/jetstream`, `@nats-io/kv`) are loaded when the
 * first connection opens, so importing troupe loads none of them.
 */
import { lazyImport } from "../lazy-modules.js";
import type { JetStreamClient, JetStreamManager, StreamConfig } from "@nats-io/jetstream";
import type { KV, Kvm, KvOptions } from "@nats-io/kv";
import type { NatsConnection, Status } from "@nats-io/transport-node";
import { BridgeError, toBridgeError } from "../errors.js";

/** Where and how to connect. */
export interface NatsConnectionOptions {
  /** `nats://host:4222` (or `tls://`), credentials in the URL if the server wants them; several, comma-separated, for a NATS cluster. */
  url: string;
  /** The connection's name as the server shows it (`troupe` by default; a node gives its id). */
  name?: string;
  /** How long the first connection may take (default 5 s). */
  connectTimeoutMs?: number;
  /** How long a JetStream request (a publish, a KV write) may wait for its answer (default 5 s). */
  requestTimeoutMs?: number;
}

/** Whether the node can reach NATS now. */
export type NatsConnectionState = "connected" | "disconnected" | "closed";

/** An open connection to NATS with JetStream. */
export interface ClusterConnection {
  /** The core connection. */
  readonly nats: NatsConnection;
  /** Publishes to streams and reads their consumers. */
  readonly jetstream: JetStreamClient;
  /** Creates and inspects streams and consumers. */
  readonly manager: JetStreamManager;
  /** The server's URL without credentials, for messages. */
  readonly where: string;
  /** Opens (creating it when missing) a key-value bucket. */
  openBucket(name: string, options?: Partial<KvOptions>): Promise<KV>;
  /** Whether the connection is up now: it reconnects by itself after a server restart or a network cut. */
  state(): NatsConnectionState;
  /** The server (host:port) it is connected to, or was last while it is down. */
  server(): string;
  /** Calls `listener` at each change of `state()`; answers a function that stops the calls. */
  onStateChange(listener: (state: NatsConnectionState) => void): () => void;
  /** Flushes what was published, then closes. Idempotent. */
  close(): Promise<void>;
}

const SCHEMES = new Set(["nats:", "tls:"]);
const DEFAULTS = { name: "troupe", connectTimeoutMs: 5_000, requestTimeoutMs: 5_000 };

/**
 * Connects to the NATS server(s) at `url` and checks that JetStream is enabled. CONFIG for a bad URL, a server
 * without JetStream, or refused credentials; TRANSPORT when no server can be reached. Once connected, the
 * connection reconnects by itself for as long as it is open (`state()` says when it is down).
 */
export async function connectNats(options: NatsConnectionOptions): Promise<ClusterConnection> {
  const servers = parseServers(options.url);
  const where = `NATS at ${servers.map(redactedNatsUrl).join(",")}`;
  const [{ connect }, { jetstream, jetstreamManager }, { Kvm }] = await Promise.all([natsTransport(), natsJetstream(), natsKv()]);
  let nats: NatsConnection;
  try {
    nats = await connect({
      servers,
      name: options.name ?? DEFAULTS.name,
      timeout: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
      // A node stays a node: it reconnects for as long as it runs, and says it is disconnected meanwhile.
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
  } catch (error) {
    throw natsOpenError(error, where);
  }
  try {
    if (nats.info?.jetstream !== true)
      throw new BridgeError("CONFIG", `The server of ${where} has no JetStream: start nats-server with -js (and a store directory, -sd)`);
    const timeout = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    const manager = await jetstreamManager(nats, { timeout });
    const client = jetstream(nats, { timeout });
    const kvm = new Kvm(client);
    return new NatsClusterConnection(nats, client, manager, kvm, where);
  } catch (error) {
    await nats.close().catch(() => undefined);
    throw natsOpenError(error, where);
  }
}

const natsTransport = lazyImport("@nats-io/transport-node", "The cluster", () => import("@nats-io/transport-node"));
/** JetStream's client, shared with message-stream.ts. */
export const natsJetstream = lazyImport("@nats-io/jetstream", "The cluster", () => import("@nats-io/jetstream"));
const natsKv = lazyImport("@nats-io/kv", "The cluster", () => import("@nats-io/kv"));

function parseServers(url: string): string[] {
  if (typeof url !== "string" || url.trim() === "") throw new BridgeError("CONFIG", "The cluster needs a NATS url (nats://host:4222)", { field: "url" });
  return url.split(",").map((server) => {
    let parsed: URL;
    try {
      parsed = new URL(server.trim());
    } catch {
      throw new BridgeError("CONFIG", `The NATS url ${JSON.stringify(redactedNatsUrl(server.trim()))} is not a URL (nats://host:4222)`, { field: "url" });
    }
    if (!SCHEMES.has(parsed.protocol)) throw new BridgeError("CONFIG", `A NATS url starts with nats:// or tls://, not ${parsed.protocol}//`, { field: "url" });
    return server.trim();
  });
}

/** A NATS URL without its credentials (user and password, or token), as troupe shows it. */
function redactedNatsUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.protocol}//${parsed.host}`;
  } catch {
    return "(not a URL)";
  }
}

/** A server as the client names it, without credentials should it carry any. */
function hostPort(server: string): string {
  return server.slice(server.lastIndexOf("@") + 1);
}

function natsOpenError(error: unknown, where: string): BridgeError {
  if (error instanceof BridgeError) return error;
  const cause = toBridgeError(error);
  const name = error instanceof Error ? error.name : "";
  if (name === "AuthorizationError" || name === "UserAuthenticationExpiredError" || /authoriz|authenticat/i.test(cause.message)) {
    return new BridgeError("CONFIG", `${where} refused the connection's credentials: ${cause.message}`);
  }
  return new BridgeError("TRANSPORT", `Cannot reach ${where}: ${cause.message}`);
}

class NatsClusterConnection implements ClusterConnection {
  readonly #listeners = new Set<(state: NatsConnectionState) => void>();
  readonly #kvm: Kvm;
  #state: NatsConnectionState = "connected";
  #server: string;
  #closing: Promise<void> | undefined;

  constructor(
    readonly nats: NatsConnection,
    readonly jetstream: JetStreamClient,
    readonly manager: JetStreamManager,
    kvm: Kvm,
    readonly where: string,
  ) {
    this.#kvm = kvm;
    this.#server = hostPort(nats.getServer());
    void this.#followStatus();
    void nats.closed().then(() => this.#setState("closed"));
  }

  async openBucket(name: string, options: Partial<KvOptions> = {}): Promise<KV> {
    const failed = (error: unknown): BridgeError =>
      replicasError(error, this.where, `KV_${name}`, options.replicas ?? 1) ?? natsError(error, this.where, `opening the bucket ${name}`);
    const create = async (): Promise<KV> => {
      try {
        return await this.#kvm.create(name, options);
      } catch (error) {
        // Two nodes starting at once both create the bucket's stream: the one that loses sees the other's, once.
        if (!(error instanceof Error && /subjects overlap|already in use/i.test(error.message))) throw failed(error);
      }
      try {
        return await this.#kvm.create(name, options);
      } catch (error) {
        throw failed(error);
      }
    };
    return openedPatiently(`the bucket ${name}`, create);
  }

  state(): NatsConnectionState {
    return this.#state;
  }

  server(): string {
    return this.#server;
  }

  onStateChange(listener: (state: NatsConnectionState) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): Promise<void> {
    this.#closing ??= this.nats
      .drain()
      .catch(() => this.nats.close())
      .then(() => this.#setState("closed"));
    return this.#closing;
  }

  async #followStatus(): Promise<void> {
    for await (const status of this.nats.status()) this.#onStatus(status);
  }

  #onStatus(status: Status): void {
    if (status.type !== "disconnect" && status.type !== "reconnect") return;
    this.#server = hostPort(status.server);
    this.#setState(status.type === "disconnect" ? "disconnected" : "connected");
  }

  #setState(state: NatsConnectionState): void {
    if (this.#state === state || this.#state === "closed") return;
    this.#state = state;
    for (const listener of this.#listeners) listener(state);
  }
}

/** How many copies of a stream (or a key-value bucket) a NATS cluster may keep: JetStream's quorums are of an odd number. */
export const REPLICA_COUNTS = [1, 3, 5] as const;

/** A number of copies troupe asks JetStream to keep. */
export type Replicas = (typeof REPLICA_COUNTS)[number];

/** JetStream's errors for copies it cannot keep: not clustered (10074), too few servers (10005), too little room (10023). */
const REPLICAS_REFUSED = new Set([10074, 10005, 10023]);

/** The settings of stream `stream`, or `undefined` when there is none yet. TRANSPORT or INTERNAL when NATS fails. */
export async function streamConfig(connection: ClusterConnection, stream: string): Promise<StreamConfig | undefined> {
  try {
    return (await connection.manager.streams.info(stream)).config;
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw natsError(error, connection.where, `reading the stream ${stream}`);
  }
}

/**
 * Brings stream `stream` (a key-value bucket's is `KV_<bucket>`) to `replicas` copies and to `settings` (JetStream
 * stream fields, e.g. limits or subjects) where it differs (made with other settings, or by hand): the nodes' settings are the
 * cluster's. One read (none when its settings `known` were just read), and one update when something differs.
 * CONFIG when NATS cannot keep as many copies.
 */
export async function keepReplicas(
  connection: ClusterConnection,
  stream: string,
  replicas: Replicas | undefined,
  settings: Record<string, unknown> = {},
  known?: StreamConfig,
): Promise<void> {
  const wanted: Record<string, unknown> = { ...settings, ...(replicas === undefined ? {} : { num_replicas: replicas }) };
  try {
    const config = known ?? (await connection.manager.streams.info(stream)).config;
    const current = config as unknown as Record<string, unknown>;
    // Compared as JSON: a stream's subjects are a list.
    if (Object.entries(wanted).some(([field, value]) => JSON.stringify(current[field]) !== JSON.stringify(value)))
      await connection.manager.streams.update(stream, { ...config, ...wanted });
  } catch (error) {
    throw (
      (replicas === undefined ? undefined : replicasError(error, connection.where, stream, replicas)) ??
      natsError(error, connection.where, `setting the copies and bounds of the stream ${stream}`)
    );
  }
}

/** CONFIG naming `cluster.replicas` when JetStream refused to keep `replicas` copies of `stream`; `undefined` for any other error. */
export function replicasError(error: unknown, where: string, stream: string, replicas: number): BridgeError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "number" || !REPLICAS_REFUSED.has(code)) return undefined;
  return new BridgeError(
    "CONFIG",
    `cluster.replicas: ${where} cannot keep ${replicas} copies of the stream ${stream} (${toBridgeError(error).message}): it takes a NATS cluster of at least ${replicas} JetStream servers`,
    { field: "cluster.replicas" },
  );
}

/** The BridgeError of a failed NATS or JetStream request: TRANSPORT when the server could not answer, INTERNAL otherwise. */
export function natsError(error: unknown, where: string, doing: string): BridgeError {
  if (error instanceof BridgeError) return error;
  const cause = toBridgeError(error);
  const name = error instanceof Error ? error.name : "";
  // JetStreamNotEnabled: the server answered 503, as it does while a replicated stream has no leader (its server died).
  const unavailable = [
    "TimeoutError",
    "ConnectionError",
    "ClosedConnectionError",
    "DrainingConnectionError",
    "NoRespondersError",
    "RequestError",
    "JetStreamNotEnabled",
  ].includes(name);
  return new BridgeError(unavailable ? "TRANSPORT" : "INTERNAL", `${where}: ${doing} failed: ${cause.message}`, name === "" ? {} : { cause: name });
}

/** Tries of `openedPatiently`: a JetStream request takes at most `requestTimeoutMs` (5 s) each. */
const OPEN_TRIES = 3;

/**
 * `open()` (a stream or bucket opened at a node's start), asked again when JetStream did not answer in time, at most
 * `OPEN_TRIES` times in all, saying so: a NATS cluster still placing its replicated streams and buckets (a cluster
 * that has just started, on a loaded host) can take longer than one request's timeout. Other errors are thrown at once.
 */
export async function openedPatiently<T>(what: string, open: () => Promise<T>, warn: (text: string) => void = warnCluster): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await open();
    } catch (error) {
      const cause = toBridgeError(error);
      if (attempt >= OPEN_TRIES || cause.type !== "TRANSPORT" || cause.details["cause"] !== "TimeoutError") throw error;
      warn(`troupe: ${what} did not answer in time (try ${attempt} of ${OPEN_TRIES}), asking again: ${cause.message}`);
    }
  }
}

function warnCluster(text: string): void {
  process.emitWarning(text, { code: "TROUPE_CLUSTER" });
}

/**
 * A name as one NATS token (a subject token, a durable name, a key-value key): its UTF-8 in base64url, since
 * tokens allow only letters, digits and a few marks, and the names (agent ids, `workflow:sess_…`) are free text.
 * An empty name is INTERNAL with `emptyMessage`: the caller should never have asked.
 */
export function natsToken(name: string, emptyMessage: string): string {
  if (typeof name !== "string" || name.length === 0) throw new BridgeError("INTERNAL", emptyMessage);
  return Buffer.from(name, "utf8").toString("base64url");
}

/** JetStream's error code for a write whose expected last revision is not the key's. */
const WRONG_LAST_SEQUENCE = 10071;

/** Whether JetStream refused a write because the key's last revision is not the one it expected (another was written since). */
export function isWrongLastSequence(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === WRONG_LAST_SEQUENCE;
}

/** Whether JetStream answered that a stream or a consumer does not exist. */
export function isNotFound(error: unknown): boolean {
  return error instanceof Error && /not found/i.test(error.message);
}
