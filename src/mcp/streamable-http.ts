/**
 * `/mcp`: the bridge tools over MCP's Streamable HTTP (the SDK's `StreamableHTTPServerTransport`), mounted as
 * raw routes on the server of `POST /bridge/:tool`, so the bus's key and quotas apply. Each MCP session (one
 * `initialize`) has its own transport and server; sessions are bounded in number (past `maxSessions` an
 * `initialize` is 429 CAPACITY) and in time (one without a request in flight for `sessionIdleMs` is closed).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { unrefClock, type Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { HttpStream, isMalformedJsonBody, type HttpRoute, type RouteRequest } from "../server/http-server.js";
import { PARSE_ERROR, unreadableMessageError } from "./json-rpc-errors.js";
import { createMcpServer, type BridgeMcpServer } from "./mcp-server.js";

/** Where the endpoint is mounted. */
export const MCP_PATH = "/mcp";
/** The header that names an MCP session on every request after `initialize`. */
export const MCP_SESSION_HEADER = "mcp-session-id";
/** MCP sessions open at once by default. */
export const DEFAULT_MAX_MCP_SESSIONS = 100;
/** How long an MCP session may go without a request in flight before it is closed, by default (10 minutes). */
export const DEFAULT_MCP_SESSION_IDLE_MS = 600_000;

/** Options of the `/mcp` endpoint. */
export interface McpHttpOptions {
  /** MCP sessions open at once; past it an `initialize` is answered 429 CAPACITY. Default 100. */
  maxSessions?: number;
  /** A session without a request in flight for this long is closed (its client must initialize again). Default 600,000. */
  sessionIdleMs?: number;
}

interface McpHttpSession {
  transport: StreamableHTTPServerTransport;
  mcp: BridgeMcpServer;
  /** POST requests whose answer is still being written: a tool call that streams keeps its session alive. */
  requestsInFlight: number;
  idleTimer: unknown;
}

/** The MCP sessions of one HTTP server, and the routes that serve them. */
export class McpHttpEndpoint {
  private readonly sessions = new Map<string, McpHttpSession>();
  /** Sessions whose `initialize` is being answered: they count against `maxSessions` already. */
  private opening = 0;
  private closing = false;
  private readonly clock: Clock;
  private readonly maxSessions: number;
  private readonly sessionIdleMs: number;

  constructor(
    private readonly runtime: Runtime,
    options: McpHttpOptions = {},
  ) {
    this.clock = unrefClock(runtime.clock);
    this.maxSessions = options.maxSessions ?? DEFAULT_MAX_MCP_SESSIONS;
    this.sessionIdleMs = options.sessionIdleMs ?? DEFAULT_MCP_SESSION_IDLE_MS;
  }

  /** `GET`, `POST` and `DELETE /mcp`, for `startHttpServer`'s `routes`. */
  routes(): HttpRoute[] {
    return (["GET", "POST", "DELETE"] as const).map((method) => ({
      method,
      path: /^\/mcp$/,
      handle: (request) => new HttpStream((req, res) => this.serve(request, req, res)),
    }));
  }

  /**
   * Closes every session: calls in flight are cancelled and answered, then the streams end. New requests are
   * refused.
   */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.sessions.values()].map((session) => session.mcp.close()));
  }

  private async serve(request: RouteRequest, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.closing) throw new BridgeError("TRANSPORT", "The MCP endpoint is closing");
    let body: unknown;
    try {
      body = req.method === "POST" ? await request.readBody() : undefined;
    } catch (error) {
      if (!isMalformedJsonBody(error)) throw error;
      // What the SDK's transport answers a body that is not JSON (it never sees this one): JSON-RPC's parse error.
      const answer = JSON.stringify(unreadableMessageError(PARSE_ERROR, (error as Error).message));
      res.writeHead(400, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) }).end(answer);
      return;
    }
    const sessionId = request.header(MCP_SESSION_HEADER);
    if (sessionId === undefined) {
      if (req.method !== "POST") throw new BridgeError("CONFIG", `${MCP_SESSION_HEADER}: required on ${req.method} ${MCP_PATH}`, { field: MCP_SESSION_HEADER });
      return this.open(req, res, body);
    }
    const session = this.sessions.get(sessionId);
    // MCP's answer to an unknown (or closed) session: 404, after which the client initializes a new one.
    if (session === undefined) throw new BridgeError("NOT_FOUND", "MCP session not found", { sessionId });
    await this.handleIn(session, req, res, body);
  }

  /** A request without a session: an `initialize` opens one (the transport answers anything else with 400). */
  private async open(req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    if (this.sessions.size + this.opening >= this.maxSessions) {
      throw new BridgeError("CAPACITY", `Too many MCP sessions (maxSessions ${this.maxSessions}); close one with DELETE ${MCP_PATH}`, {
        maxSessions: this.maxSessions,
      });
    }
    this.opening += 1;
    // Once initialized, the session counts in `sessions`: it must not count twice while its answer is written.
    let countedAsOpening = true;
    const stopCountingAsOpening = (): void => {
      if (countedAsOpening) this.opening -= 1;
      countedAsOpening = false;
    };
    let session: McpHttpSession | undefined;
    try {
      const { StreamableHTTPServerTransport } = await import("@modelcontextprotocol/sdk/server/streamableHttp.js");
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sessionId) => {
          if (session === undefined) return;
          this.sessions.set(sessionId, session);
          stopCountingAsOpening();
        },
      });
      const mcp = await createMcpServer(this.runtime, {
        // Nothing answers a cancelled call: end the stream its client would otherwise keep open.
        onCancelled: (requestId) => transport.closeSSEStream(requestId),
      });
      const created: McpHttpSession = { transport, mcp, requestsInFlight: 0, idleTimer: undefined };
      session = created;
      mcp.server.onclose = () => this.forget(created);
      await mcp.server.connect(transport);
      if (this.closing) {
        await mcp.server.close();
        throw new BridgeError("TRANSPORT", "The MCP endpoint is closing");
      }
      await this.handleIn(session, req, res, body);
    } finally {
      stopCountingAsOpening();
    }
    // Not an `initialize` (or a refused one): the transport has answered 400 and no session exists.
    if (session !== undefined && session.transport.sessionId === undefined) await session.mcp.server.close();
  }

  private async handleIn(session: McpHttpSession, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    // A GET is the client's stream for server-sent messages: it may stay open for ever and keeps nothing alive.
    if (req.method === "POST") {
      session.requestsInFlight += 1;
      this.clock.clearTimeout(session.idleTimer);
      res.once("close", () => {
        session.requestsInFlight -= 1;
        if (session.requestsInFlight === 0) this.armIdleTimer(session);
      });
    }
    await session.transport.handleRequest(req, res, body);
  }

  private armIdleTimer(session: McpHttpSession): void {
    this.clock.clearTimeout(session.idleTimer);
    // A request refused before any session existed, or one that ended after its session: nothing to time.
    const { sessionId } = session.transport;
    if (sessionId === undefined || this.sessions.get(sessionId) !== session) return;
    session.idleTimer = this.clock.setTimeout(() => void session.mcp.server.close(), this.sessionIdleMs);
  }

  private forget(session: McpHttpSession): void {
    this.clock.clearTimeout(session.idleTimer);
    const { sessionId } = session.transport;
    if (sessionId !== undefined && this.sessions.get(sessionId) === session) this.sessions.delete(sessionId);
  }
}
