/**
 * The HTTP server: `GET /health` and the eight bridge tools as `POST /bridge/:tool`, on `node:http` alone.
 * Every answer is JSON (but a route's `HttpStream`: `GET /events`, MCP's `/mcp`); every error is
 * `{ error: { type, message, details } }` with the status of `httpStatusOf`. Other parts (the communication bus,
 * MCP) mount their routes and their WebSocket upgrades on the same server.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { unrefClock, type Clock } from "../clock.js";
import { BridgeError, httpStatusOf, toBridgeError } from "../errors.js";
import { API_KEY_HEADER } from "../protocol/headers.js";
import { checkJsonInput } from "../protocol/json-depth.js";
import type { Runtime } from "../runtime/runtime.js";
import { clientOf, ConnectionCounts, OwnedSessions, quotaExceeded, RateLimiter } from "./quotas.js";
import { DEFAULT_HOST, DEFAULT_PORT } from "./defaults.js";
import { refuseUpgrade } from "./upgrades.js";

export { API_KEY_HEADER };
/** Largest request body accepted (1 MiB); a larger one is answered with 413. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** How long `close()` lets requests in flight finish before cutting their connections. */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** How long a connection may stay open without sending its first byte. */
export const DEFAULT_CONNECTION_IDLE_MS = 30_000;
/** How long a request body may take to arrive once its route reads it; a slower one is answered 408. */
const DEFAULT_BODY_TIMEOUT_MS = 30_000;
/** Connections one client (remote address) may hold open at once. */
export const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 256;
/** Requests a second one client may make on average (a burst of twice as many passes). */
export const DEFAULT_REQUESTS_PER_SECOND_PER_CLIENT = 1_000;

/** What one client (a remote address) may take (SPEC §3.8); each past it is 429 with `retry-after`. */
export interface ClientQuotaOptions {
  /** Connections open at once; past it a new one is answered 429 and closed. Default 256. */
  maxConnectionsPerClient?: number;
  /** Requests a second on average (token bucket; `GET /health` is free); 0 turns the limit off. Default 1,000. */
  requestsPerSecondPerClient?: number;
  /** Requests at once before the rate applies. Default twice `requestsPerSecondPerClient`. */
  requestBurstPerClient?: number;
  /** Bridge sessions one client may hold open (`POST /bridge/sessions_create`). Default a quarter of the runtime's `maxSessions`. */
  maxBridgeSessionsPerClient?: number;
}

/** A key and certificate (PEM) to serve HTTPS and WSS with. */
export interface TlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
}

/** Options of `startHttpServer`. */
export interface HttpServerOptions {
  /** Serves HTTPS (and WSS upgrades) instead of plain HTTP. */
  tls?: TlsOptions;
  /** Port to listen on; 0 picks a free one. Default 8080. */
  port?: number;
  /** Address to bind. Default 127.0.0.1. */
  host?: string;
  /** When set, every route but `GET /health` needs it in the `x-agent-api-key` header. */
  apiKey?: string;
  /** Largest request body in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Time `close()` waits for requests in flight. Default 5000. */
  closeGraceMs?: number;
  /**
   * What a cluster node adds to `GET /health` (docs/cluster.md): its view of the cluster, and whether it can
   * take messages now; a node that cannot answers 503, for load balancers to send clients elsewhere.
   */
  clusterHealth?: () => Promise<{ ready: boolean; view: Record<string, unknown> }>;
  /** Further routes, matched after `GET /health` and `POST /bridge/:tool`, under the same key rules. */
  routes?: HttpRoute[];
  /** Handles WebSocket upgrades; without it an upgrade request is answered 404. */
  onUpgrade?: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** A connection that has sent nothing this long after it opened is closed. Default 30,000. */
  connectionIdleMs?: number;
  /**
   * A request body still arriving this long after its route began to read it is answered 408 (TIMEOUT) and its
   * connection closed: a body trickled a byte at a time would hold its connection for ever. Default 30,000.
   */
  bodyTimeoutMs?: number;
  /** What one client may take. */
  quotas?: ClientQuotaOptions;
}

/** A running server. */
export interface HttpServer {
  /** Where it listens, e.g. `http://127.0.0.1:8080`. */
  readonly url: string;
  /** The port it listens on (the one picked, when 0 was asked for). */
  readonly port: number;
  /** Stops accepting, lets requests in flight finish (up to `closeGraceMs`) and closes every connection. */
  close(): Promise<void>;
}

/**
 * A request's query: `get` gives a parameter's one value and refuses one given twice (CONFIG naming it), so
 * that `?limit=1&limit=1000` is no listing of either; `getAll` reads the parameters that are lists.
 */
export class RouteQuery extends URLSearchParams {
  override get(name: string): string | null {
    const values = this.getAll(name);
    if (values.length > 1) throw new BridgeError("CONFIG", `${name}: given more than once`, { field: name });
    return values[0] ?? null;
  }
}

/** What a route handler gets. */
export interface RouteRequest {
  /** The path's capture groups, still URL-encoded. */
  params: string[];
  query: RouteQuery;
  /** Reads and parses the JSON body; called only by routes that take one. */
  readBody: () => Promise<unknown>;
  /** A request header's value (the first, when repeated). */
  header: (name: string) => string | undefined;
  /** Who asks, for quotas: the remote address. */
  client: string;
  /** A signal aborted when the client goes away before its answer is written (made on first call). */
  signal: () => AbortSignal;
}

/** A signal aborted when the response closes before it was written in full: its client went away. */
export function clientGone(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort(new BridgeError("CANCELLED", "The client went away before its answer"));
  });
  return controller.signal;
}

/** A path parameter, URL-decoded; a malformed escape is CONFIG. */
export function decoded(param: string | undefined, field: string): string {
  try {
    return decodeURIComponent(param ?? "");
  } catch {
    throw new BridgeError("CONFIG", `${field}: malformed URL escape in ${JSON.stringify(param)}`, { field });
  }
}

/** One route. The handler's result is the JSON body of a 200, unless it is an `HttpAnswer` or an `HttpStream`. */
export interface HttpRoute {
  method: "GET" | "POST" | "PATCH" | "DELETE";
  path: RegExp;
  /** Answered without the API key. */
  open?: boolean;
  handle(request: RouteRequest): unknown;
}

/**
 * A route's answer with a status other than 200 (e.g. 201, 202), or a body that is not JSON (`contentType` set,
 * `body` the text or a Buffer), or headers of its own (a redirect's `location`, a page's `content-security-policy`).
 */
export class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly contentType?: string,
    readonly headers: Record<string, string> = {},
  ) {}
}

/**
 * A route's answer that takes the response over instead of a JSON body: a stream of server-sent events, or
 * another protocol's framing (MCP's Streamable HTTP). It gets the response once the route has matched and the
 * key and quotas were checked; from then on it writes the status, the headers and the body itself. What it
 * throws (or rejects with) before it has written anything is answered as JSON like any route's error.
 */
export class HttpStream {
  constructor(readonly open: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>) {}
}

type RouteMatch = { route: HttpRoute; params: string[] } | { allow: string[] } | undefined;

/** The first route of `method` whose path matches; else the methods the path allows (405), or undefined (404). */
function findRoute(routes: HttpRoute[], method: string, pathname: string): RouteMatch {
  let allow: string[] | undefined;
  for (const route of routes) {
    const found = route.path.exec(pathname);
    if (found === null) continue;
    if (route.method === method) return { route, params: found.slice(1) };
    (allow ??= []).push(route.method);
  }
  return allow === undefined ? undefined : { allow };
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/** Checks a presented key; throws AUTH when it is missing or wrong. */
export type ApiKeyCheck = (presented: string | string[] | undefined) => void;

/**
 * The key check for `apiKey` (none: every key passes). It compares SHA-256 digests with `timingSafeEqual`, so
 * the comparison takes the same time whatever the key's length or content.
 */
export function createApiKeyCheck(apiKey: string | undefined): ApiKeyCheck {
  if (apiKey === undefined) return () => {};
  const expectedDigest = sha256(apiKey);
  return (presented) => {
    if (typeof presented !== "string" || presented === "") {
      throw new BridgeError("AUTH", `Missing ${API_KEY_HEADER} header`);
    }
    if (!timingSafeEqual(sha256(presented), expectedDigest)) throw new BridgeError("AUTH", "Invalid API key");
  };
}

/** Whether `readBody` failed because the body is not JSON (routes speaking JSON-RPC answer it their own way). */
export function isMalformedJsonBody(error: unknown): boolean {
  return error instanceof BridgeError && error.type === "CONFIG" && error.details.malformedJson === true;
}

function parseJson(text: string): unknown {
  if (text.trim() === "") return {};
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (error) {
    throw new BridgeError("CONFIG", `Malformed JSON body: ${toBridgeError(error).message}`, { field: "(body)", malformedJson: true });
  }
  checkJsonInput(value, text, "(body)");
  return value;
}

/** How long a body may take, on which clock. */
interface BodyDeadline {
  clock: Clock;
  timeoutMs: number;
}

/**
 * Reads the body up to `maxBodyBytes`; past that it stops reading and rejects with a CONFIG that maps to 413.
 * One that has not all arrived within the deadline rejects with a TIMEOUT that maps to 408.
 */
function readJsonBody(req: IncomingMessage, maxBodyBytes: number, deadline: BodyDeadline): Promise<unknown> {
  const tooLarge = (): BridgeError =>
    new BridgeError("CONFIG", `Request body exceeds maxBodyBytes ${maxBodyBytes}`, { field: "(body)", limitBytes: maxBodyBytes });
  if (Number(req.headers["content-length"]) > maxBodyBytes) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let receivedBytes = 0;
    const { clock, timeoutMs } = deadline;
    const timer = clock.setTimeout(() => {
      stopListening();
      req.pause();
      reject(
        new BridgeError("TIMEOUT", `Request body not received within bodyTimeoutMs ${timeoutMs}`, { field: "(body)", bodyTimeoutMs: timeoutMs, receivedBytes }),
      );
    }, timeoutMs);
    const stopListening = (): void => {
      clock.clearTimeout(timer);
      req.off("data", onData).off("end", onEnd).off("error", onError);
    };
    const onData = (chunk: Buffer): void => {
      receivedBytes += chunk.length;
      if (receivedBytes > maxBodyBytes) {
        stopListening();
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      stopListening();
      try {
        resolve(parseJson(Buffer.concat(chunks).toString("utf8")));
      } catch (error) {
        reject(toBridgeError(error));
      }
    };
    const onError = (error: Error): void => {
      stopListening();
      reject(new BridgeError("TRANSPORT", `Request body could not be read: ${error.message}`));
    };
    req.on("data", onData).on("end", onEnd).on("error", onError);
  });
}

/** A body was announced and has not all arrived: answering now must close the connection, not drain the rest. */
function bodyPending(req: IncomingMessage): boolean {
  if (req.complete) return false;
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
}

/**
 * Refuses a connection past its client's quota: 429 and close (over TLS, where nothing can be written before
 * the handshake, the connection is only closed).
 */
function refuseConnection(socket: Socket, secure: boolean, limit: number, client: string): void {
  socket.on("error", () => socket.destroy());
  if (secure) {
    socket.destroy();
    return;
  }
  refuseUpgrade(socket, 429, quotaExceeded(`${client} holds ${limit} connections, its quota`, limit, 1_000));
}

function urlOf(host: string, port: number, secure = false): string {
  return `${secure ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Serves a runtime's bridge over HTTP. Resolves once it listens; a port in use rejects with CONFIG. */
export async function startHttpServer(runtime: Runtime, options: HttpServerOptions = {}): Promise<HttpServer> {
  const { port = DEFAULT_PORT, host = DEFAULT_HOST, apiKey, maxBodyBytes = DEFAULT_MAX_BODY_BYTES, closeGraceMs = DEFAULT_CLOSE_GRACE_MS } = options;
  if (apiKey === "") throw new BridgeError("CONFIG", "apiKey: must not be empty", { field: "apiKey" });
  const checkApiKey = createApiKeyCheck(apiKey);
  const bodyDeadline: BodyDeadline = { clock: unrefClock(runtime.clock), timeoutMs: options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS };
  const quotas = options.quotas ?? {};
  const connections = new ConnectionCounts(quotas.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
  const rate = quotas.requestsPerSecondPerClient ?? DEFAULT_REQUESTS_PER_SECOND_PER_CLIENT;
  const requestRate = new RateLimiter(rate, quotas.requestBurstPerClient ?? 2 * rate, runtime.clock);
  const bridgeSessions = new OwnedSessions(
    "bridge sessions",
    quotas.maxBridgeSessionsPerClient ?? Math.max(1, Math.floor(runtime.limits.maxSessions / 4)),
    (sessionId) => runtime.hasSession(sessionId),
  );
  const startedAt = performance.now();
  let closing: Promise<void> | undefined;

  const routes: HttpRoute[] = [
    {
      method: "GET",
      path: /^\/health$/,
      open: true,
      handle: async () => {
        const health = { status: "healthy", uptime: Math.round(performance.now() - startedAt) / 1000, bridge: runtime.health() };
        if (options.clusterHealth === undefined) return health;
        const { ready, view } = await options.clusterHealth();
        return ready ? { ...health, cluster: view } : new HttpAnswer(503, { ...health, status: "unavailable", cluster: view });
      },
    },
    {
      method: "POST",
      path: /^\/bridge\/([^/]+)$/,
      // The bridge answers an unknown tool with NOT_FOUND, as it does for every caller.
      handle: async ({ params: [toolName = ""], readBody, client, signal }) => {
        // A client that goes away before its prompt's answer cancels the prompt (as an MCP client's cancel does).
        if (toolName === "sessions_prompt" || toolName === "tasks_delegate") return runtime.bridge.call(toolName, await readBody(), { signal: signal() });
        if (toolName !== "sessions_create") return runtime.bridge.call(toolName, await readBody());
        bridgeSessions.check(client);
        const created = await runtime.bridge.call("sessions_create", await readBody());
        bridgeSessions.add(client, created.sessionId);
        return created;
      },
    },
    ...(options.routes ?? []),
  ];

  /** Writes one JSON answer; the connection closes when the server is closing or a body is still arriving. */
  function send(req: IncomingMessage, res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}, contentType?: string): void {
    if (res.headersSent || res.destroyed) return;
    const payload = contentType === undefined ? JSON.stringify(body) : Buffer.isBuffer(body) ? body : String(body);
    const connection = bodyPending(req) || closing !== undefined ? { connection: "close" } : {};
    res.writeHead(status, {
      ...headers,
      ...connection,
      "content-type": contentType ?? "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(payload),
    });
    res.end(payload);
  }

  /** The one mapping from an error to a response; a quota's CAPACITY says when to come back (`retry-after`, seconds). */
  function sendError(req: IncomingMessage, res: ServerResponse, error: unknown, status?: number, headers: Record<string, string> = {}): void {
    const bridgeError = toBridgeError(error);
    const { retryAfterMs } = bridgeError.details;
    const retryAfter: Record<string, string> = typeof retryAfterMs === "number" ? { "retry-after": String(Math.max(1, Math.ceil(retryAfterMs / 1000))) } : {};
    const answered = status ?? httpStatusOf(bridgeError);
    if (answered === 500) {
      // A bug in troupe: the operator's log says so (the client gets the message, never the stack).
      const cause = error instanceof Error ? error : bridgeError;
      const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
      runtime.hub.emit("server.error", "server", {
        method: req.method ?? "GET",
        path,
        message: bridgeError.message,
        ...(cause.stack === undefined ? {} : { stack: cause.stack }),
      });
    }
    send(req, res, answered, { error: bridgeError.toJSON() }, { ...headers, ...retryAfter });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const target = req.url ?? "/";
    const queryAt = target.indexOf("?");
    const pathname = queryAt < 0 ? target : target.slice(0, queryAt);
    const search = queryAt < 0 ? "" : target.slice(queryAt + 1);
    // HEAD is GET without the body (Node leaves the body out of a HEAD response by itself).
    const match = findRoute(routes, method === "HEAD" ? "GET" : method, pathname);
    const open = match !== undefined && "route" in match && match.route.open === true;
    const client = clientOf(req.socket.remoteAddress);
    if (!open) {
      const waitMs = requestRate.take(client);
      if (waitMs > 0) {
        const { ratePerSecond } = requestRate;
        throw quotaExceeded(`${client} is over its quota of ${ratePerSecond} requests a second`, ratePerSecond, waitMs);
      }
      checkApiKey(req.headers[API_KEY_HEADER]);
    }
    if (match === undefined) throw new BridgeError("NOT_FOUND", `No route: ${method} ${pathname}`, { method, path: pathname });
    if ("allow" in match) {
      const allow = match.allow.join(", ");
      const error = new BridgeError("CONFIG", `Method ${method} not allowed on ${pathname}; use ${allow}`, { method, allow: match.allow });
      return sendError(req, res, error, 405, { allow });
    }
    let gone: AbortSignal | undefined;
    const request: RouteRequest = {
      params: match.params,
      query: new RouteQuery(search),
      readBody: () => readJsonBody(req, maxBodyBytes, bodyDeadline),
      header: (name) => {
        const value = req.headers[name.toLowerCase()];
        return Array.isArray(value) ? value[0] : value;
      },
      client,
      signal: () => (gone ??= clientGone(res)),
    };
    const result = await match.route.handle(request);
    // What it throws before it has written anything is answered as JSON like any route's error.
    if (result instanceof HttpStream) await result.open(req, res);
    else if (result instanceof HttpAnswer) send(req, res, result.status, result.body, result.headers, result.contentType);
    else send(req, res, 200, result);
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res)
      .catch((error: unknown) => sendError(req, res, error))
      // Not even the error could be written (e.g. a result that is not serializable): cutting the connection is the answer left.
      .catch(() => res.destroy());
  };
  const { tls } = options;
  let server;
  try {
    server = tls === undefined ? createServer(onRequest) : createTlsServer({ key: tls.key, cert: tls.cert }, onRequest);
  } catch (error) {
    throw new BridgeError("CONFIG", `tls: the key and certificate cannot be used: ${toBridgeError(error).message}`, { field: "tls" });
  }
  // A handshake that fails (a client that is not TLS, a reset) is that connection's end, nothing more.
  server.on("tlsClientError", (_error: Error, socket: Duplex) => socket.destroy());
  // Node leaves a connection that never sends a byte open for ever (headersTimeout starts at the first byte):
  // without this, idle connections would take every file descriptor.
  const idleMs = options.connectionIdleMs ?? DEFAULT_CONNECTION_IDLE_MS;
  server.on("connection", (socket: Socket) => {
    const client = clientOf(socket.remoteAddress);
    if (!connections.open(client)) {
      refuseConnection(socket, tls !== undefined, connections.limit, client);
      return;
    }
    socket.once("close", () => connections.close(client));
    // Read from the byte count, not a 'data' listener, which would change how the HTTP parser reads the socket.
    const idle = setTimeout(() => {
      if (socket.bytesRead === 0) socket.destroy();
    }, idleMs).unref();
    socket.once("close", () => clearTimeout(idle));
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node stops handling this socket's errors once it hands it over: a reset during the refusal or the
    // handshake would be an uncaught exception. A reset is a closed connection, nothing more.
    socket.on("error", () => socket.destroy());
    if (options.onUpgrade !== undefined && closing === undefined) return options.onUpgrade(req, socket, head);
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    throw new BridgeError("CONFIG", `Cannot listen on ${urlOf(host, port)}: ${toBridgeError(error).message}`, { host, port, code });
  });

  const boundPort = (server.address() as AddressInfo).port;
  return {
    url: urlOf(host, boundPort, tls !== undefined),
    port: boundPort,
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        const cutOff = setTimeout(() => server.closeAllConnections(), closeGraceMs);
        server.close(() => {
          clearTimeout(cutOff);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}
