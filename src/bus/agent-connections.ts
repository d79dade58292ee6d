/**
 * Agent connections: the `ws` server behind `ws://host:port/agents/connect?agent_id=…` (and `/?agent_id=…`
 * for the seed project's adapters), one socket per agent, its key check, `maxConnections`, and the heartbeat
 * that terminates a socket after two missed pongs.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { RawData, WebSocket, WebSocketServer } from "ws";
import { unrefClock, type Clock } from "../clock.js";
import { BridgeError, httpStatusOf, toBridgeError } from "../errors.js";
import { AGENT_TOKEN_HEADER } from "../protocol/headers.js";
import { RouteQuery, type ApiKeyCheck } from "../server/http-server.js";
import { AGENT_ID_PATTERN, isAgentId } from "../protocol/envelope.js";
import {
  AGENT_CONNECT_PATH,
  CLOSE_CODES,
  CLOSE_REASONS,
  CONTROL_PARAM,
  ROOT_CONNECT_PATH,
  TOKEN_PROTOCOL_PREFIX,
  TROUPE_PROTOCOL,
  encodeAnswerFrame,
  frameText,
  type SendAnswerFrame,
} from "../protocol/frames.js";
import { checkJsonInput } from "../protocol/json-depth.js";
import { wsPackage } from "../protocol/ws-package.js";
import { isRuntimeFramework } from "../runtime/bus-agents.js";
import type { RateLimiter } from "../server/quotas.js";
import { TurnCork } from "../server/turn-cork.js";
import { CLOSE_HANDSHAKE_WAIT_MS, MAX_MISSED_PONGS, offeredProtocolValue, presentedUpgradeKey, refuseUpgrade } from "../server/upgrades.js";

/** One agent's socket, and the messages written to it that wait for their ack. */
export class AgentConnection {
  /** Keys (sender and message id) of messages written to this socket and not yet acknowledged (bookkept by the deliveries). */
  readonly inFlight = new Set<string>();
  /** Pings sent since the last pong. */
  missedPongs = 0;
  /** Frames written in one turn of the event loop leave the TCP socket in one write. */
  private readonly cork: TurnCork;
  /** Not read until its frame rate allows again. */
  paused = false;

  constructor(
    readonly agentId: string,
    readonly socket: WebSocket,
    /** The TCP socket under the WebSocket: frames written in one tick leave it in one write. */
    private readonly transport: Duplex,
    /** Whether the socket asked for control frames (`?control=1`); others never get `accepted` or `rejected`. */
    readonly control: boolean,
    /** What may wait to be written to this socket; past it the socket is closed with 1013. */
    private readonly maxBufferBytes: number,
  ) {
    this.cork = new TurnCork(transport);
  }

  /** Stops reading the socket for `ms` (the agent is over its frame rate); TCP holds back what it sends. */
  pause(ms: number, clock: Clock): void {
    this.paused = true;
    this.socket.pause();
    clock.setTimeout(() => {
      this.paused = false;
      this.socket.resume();
    }, ms);
  }

  /** Whether frames can be written. */
  get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  /**
   * Writes one message's text frame of `frameBytes` UTF-8 bytes (closing the socket instead fails its attempt,
   * it is not lost).
   */
  send(frame: string, frameBytes: number): void {
    this.write(frame, frameBytes);
  }

  /**
   * Whether a frame of `frameBytes` fits in what may wait to be written (`maxBufferBytes`). The deliveries write a
   * message only when it does and leave the rest in the agent's queue until the socket drains, so an agent that
   * reads is never closed for a backlog its senders built up. An empty buffer takes any frame; so does one below
   * the stream's high-water mark, as no 'drain' would come to say it emptied.
   */
  canWrite(frameBytes: number): boolean {
    return !this.backedUp() || this.socket.bufferedAmount + frameBytes <= this.maxBufferBytes;
  }

  /** Writes one control frame, when the socket asked for them. */
  answer(frame: SendAnswerFrame): void {
    if (!this.open || !this.control) return;
    this.write(encodeAnswerFrame(frame), undefined);
  }

  /** Something waits to be written, past the stream's high-water mark: only then does a frame's size matter. */
  private backedUp(): boolean {
    return this.socket.bufferedAmount !== 0 && this.transport.writableNeedDrain;
  }

  /**
   * Writes a frame unless the agent has stopped reading: memory held for a socket is bounded by
   * `maxBufferBytes`, not by what a client chooses not to read. A frame that does not fit (an answer to the
   * agent's own frames: messages wait until `canWrite`) closes the socket with 1013; its unacknowledged
   * messages fail their attempt and are delivered again when it reconnects.
   */
  private write(frame: string, frameBytes: number | undefined): void {
    if (!this.open) return;
    // A control frame is measured only when the buffer is backed up.
    if (this.backedUp() && !this.canWrite(frameBytes ?? Buffer.byteLength(frame))) {
      this.socket.close(CLOSE_CODES.tryAgainLater, "Socket buffer full: read your socket");
      // The close frame waits behind what the agent does not read: cut the connection if it never gets there.
      setTimeout(() => this.socket.terminate(), CLOSE_HANDSHAKE_WAIT_MS).unref();
      return;
    }
    this.cork.hold();
    this.socket.send(frame);
  }
}

/** What the connections tell the bus. */
export interface ConnectionEvents {
  /** Registered, or a participant of a workflow session (and not one of the runtime's own agents): may connect. */
  isKnown(agentId: string): boolean;
  /** One of the runtime's own agents: never a socket's (its close reason says so). */
  isRuntimeAgent(agentId: string): boolean;
  /** Checks the token an upgrade presents for `agentId` (`agentAuth: "token"`); throws AUTH when it is wrong. */
  authorize(agentId: string, token: string | undefined): void;
  connected(connection: AgentConnection): void;
  disconnected(connection: AgentConnection): void;
  /** A parsed JSON frame from the agent. */
  frame(connection: AgentConnection, frame: unknown): void;
  /** A pong: the agent is alive. */
  alive(connection: AgentConnection): void;
  /** What waited to be written to the socket is written: it can take more. */
  drained(connection: AgentConnection): void;
}

/** Options of the agent connections. */
export interface AgentConnectionsOptions {
  maxConnections: number;
  heartbeatIntervalMs: number;
  maxPayloadBytes: number;
  /** What may wait to be written to one agent's socket before it is closed with 1013. */
  maxSocketBufferBytes: number;
  /** Frames a second each agent may send: past it its socket is not read until its rate allows. */
  frameRate: RateLimiter;
  checkApiKey: ApiKeyCheck;
  clock: Clock;
}

/** The agent sockets of one bus. */
export class AgentConnections {
  private readonly server: WebSocketServer;
  private readonly byAgent = new Map<string, AgentConnection>();
  private heartbeat: unknown;
  private stopping = false;

  constructor(
    private readonly options: AgentConnectionsOptions,
    private readonly events: ConnectionEvents,
  ) {
    this.server = new (wsPackage().WebSocketServer)({
      noServer: true,
      maxPayload: options.maxPayloadBytes,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(TROUPE_PROTOCOL) ? TROUPE_PROTOCOL : false),
    });
  }

  /** Sockets open now (also those being closed for a policy reason). */
  get count(): number {
    return this.server.clients.size;
  }

  /** The agent's socket, when it is connected. */
  get(agentId: string): AgentConnection | undefined {
    return this.byAgent.get(agentId);
  }

  /**
   * Who an upgrade asks to connect as, once its path, its key and its query are checked (the error the handshake
   * answers otherwise): its agent id, and whether it asks for control frames.
   */
  private checkedRequest(req: IncomingMessage): { agentId: string; control: boolean } {
    const url = new URL(req.url ?? "/", "http://bus");
    if (url.pathname !== AGENT_CONNECT_PATH && url.pathname !== ROOT_CONNECT_PATH) {
      throw new BridgeError("NOT_FOUND", `No WebSocket endpoint at ${url.pathname}`);
    }
    this.options.checkApiKey(presentedUpgradeKey(req));
    const query = new RouteQuery(url.search);
    const agentId = query.get("agent_id") ?? "";
    if (!AGENT_ID_PATTERN.test(agentId)) {
      throw new BridgeError("CONFIG", 'agent_id: expected an agent id such as "claude-code://orchestrator" in the query', { field: "agent_id" });
    }
    return { agentId, control: ["1", "true"].includes(query.get(CONTROL_PARAM) ?? "") };
  }

  /** The agent an upgrade asks to connect as, or `undefined` when the handshake would refuse it before looking (path, key, query). */
  requestedAgent(req: IncomingMessage): string | undefined {
    try {
      const { agentId } = this.checkedRequest(req);
      return isAgentId(agentId) ? agentId : undefined;
    } catch {
      return undefined;
    }
  }

  /** Handles an HTTP upgrade: path, key, agent id and capacity, then the WebSocket handshake. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      const { agentId, control } = this.checkedRequest(req);
      const headerToken = req.headers[AGENT_TOKEN_HEADER];
      this.events.authorize(agentId, (Array.isArray(headerToken) ? headerToken[0] : headerToken) ?? offeredProtocolValue(req, TOKEN_PROTOCOL_PREFIX));
      if (this.stopping || this.count >= this.options.maxConnections) {
        const limit = this.options.maxConnections;
        refuseUpgrade(socket, 503, new BridgeError("CAPACITY", `The bus has reached maxConnections (${limit})`, { limit }));
        return;
      }
      this.server.handleUpgrade(req, socket, head, (ws) => this.accept(agentId, ws, socket, control));
    } catch (error) {
      const bridgeError = toBridgeError(error);
      refuseUpgrade(socket, httpStatusOf(bridgeError), bridgeError);
    }
  }

  private accept(agentId: string, ws: WebSocket, transport: Duplex, control: boolean): void {
    if (!this.events.isKnown(agentId)) {
      const why = this.events.isRuntimeAgent(agentId) || isRuntimeFramework(agentId) ? CLOSE_REASONS.runtimeAgent : CLOSE_REASONS.notRegistered;
      ws.close(CLOSE_CODES.policy, `${why}: ${agentId}`.slice(0, 123));
      return;
    }
    const previous = this.byAgent.get(agentId);
    const connection = new AgentConnection(agentId, ws, transport, control, this.options.maxSocketBufferBytes);
    this.byAgent.set(agentId, connection);
    if (previous !== undefined) {
      this.events.disconnected(previous);
      previous.socket.close(CLOSE_CODES.replaced, "Replaced by a newer connection");
    }
    ws.on("message", (data: RawData, isBinary: boolean) => this.receive(connection, data, isBinary));
    transport.on("drain", () => {
      if (this.byAgent.get(agentId) === connection) this.events.drained(connection);
    });
    ws.on("pong", () => {
      connection.missedPongs = 0;
      this.events.alive(connection);
    });
    // A socket error is followed by 'close', where the connection is dropped; nothing else to do here.
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.byAgent.get(agentId) !== connection) return;
      this.byAgent.delete(agentId);
      this.events.disconnected(connection);
    });
    this.events.connected(connection);
  }

  private receive(connection: AgentConnection, data: RawData, isBinary: boolean): void {
    this.throttle(connection);
    let frame: unknown;
    let text: string;
    try {
      if (isBinary) throw new Error("binary frames are not accepted; send JSON text frames");
      text = frameText(data);
      frame = JSON.parse(text);
    } catch (error) {
      connection.answer({
        type: "rejected",
        error: new BridgeError("CONFIG", `Malformed frame: ${toBridgeError(error).message}`, { field: "(frame)" }).toJSON(),
      });
      return;
    }
    try {
      checkJsonInput(frame, text, "(frame)");
    } catch (error) {
      connection.answer({ type: "rejected", error: toBridgeError(error).toJSON() });
      return;
    }
    this.events.frame(connection, frame);
  }

  /**
   * Takes the frame's token of the agent's rate; past its rate, its socket is not read again until a token is
   * there. Backpressure, not refusal: TCP makes the agent wait, and nothing it sent is lost.
   */
  private throttle(connection: AgentConnection): void {
    const waitMs = this.options.frameRate.take(connection.agentId);
    if (waitMs === 0 || connection.paused) return;
    connection.pause(waitMs, unrefClock(this.options.clock));
  }

  /** Closes an agent's socket, e.g. when it is deregistered. */
  disconnect(agentId: string, code: number, reason: string): void {
    this.byAgent.get(agentId)?.socket.close(code, reason);
  }

  /** Pings every socket each `heartbeatIntervalMs`; a socket that missed two pongs is terminated instead. */
  startHeartbeat(): void {
    const tick = (): void => {
      for (const connection of [...this.byAgent.values()]) {
        if (connection.missedPongs >= MAX_MISSED_PONGS) {
          connection.socket.terminate();
          continue;
        }
        connection.missedPongs += 1;
        connection.socket.ping();
      }
      this.heartbeat = this.options.clock.setTimeout(tick, this.options.heartbeatIntervalMs);
    };
    this.heartbeat = this.options.clock.setTimeout(tick, this.options.heartbeatIntervalMs);
  }

  /** Refuses new sockets and stops the heartbeat. */
  stopAccepting(): void {
    this.stopping = true;
    if (this.heartbeat !== undefined) this.options.clock.clearTimeout(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Closes every socket with `code` (1001 at shutdown); sockets that do not finish the close in `graceMs` are cut. */
  async closeAll(code: number, reason: string, graceMs: number): Promise<void> {
    this.stopAccepting();
    const sockets = [...this.server.clients];
    await Promise.all(
      sockets.map(
        (ws) =>
          new Promise<void>((resolve) => {
            if (ws.readyState === ws.CLOSED) return resolve();
            const cut = setTimeout(() => ws.terminate(), graceMs);
            ws.once("close", () => {
              clearTimeout(cut);
              resolve();
            });
            ws.close(code, reason);
          }),
      ),
    );
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
