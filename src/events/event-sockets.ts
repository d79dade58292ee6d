/**
 * The event stream over WebSocket: `ws://host:port/events?types=…&session=…&since=…`, one JSON text frame per
 * event. The key rules are the agent sockets': the `x-agent-api-key` header or the subprotocol `key.<key>`;
 * a refused upgrade is answered as theirs are (401 without the key, 400 for a bad query, 503 when full, 429
 * past the client's own quota).
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket, WebSocketServer } from "ws";
import { httpStatusOf, toBridgeError } from "../errors.js";
import { EVENTS_PATH, type EventStreamControlFrame } from "../protocol/event-frames.js";
import { CLOSE_CODES, TROUPE_PROTOCOL } from "../protocol/frames.js";
import { wsPackage } from "../protocol/ws-package.js";
import { RouteQuery, type ApiKeyCheck } from "../server/http-server.js";
import { clientOf } from "../server/quotas.js";
import { CLOSE_HANDSHAKE_WAIT_MS, MAX_MISSED_PONGS, presentedUpgradeKey, refuseUpgrade } from "../server/upgrades.js";
import { parseEventQuery, type EventStreamRequest } from "./event-filter.js";
import { refusalStatus, type EventBatch, type EventSink, type EventStream } from "./event-stream.js";

/** Clients of the stream have nothing to say: a larger frame is closed with 1009. */
const MAX_CLIENT_FRAME_BYTES = 4_096;

/** Whether an upgrade request is for the event stream. */
export function isEventStreamUpgrade(req: IncomingMessage): boolean {
  const target = req.url ?? "/";
  const queryAt = target.indexOf("?");
  return (queryAt < 0 ? target : target.slice(0, queryAt)) === EVENTS_PATH;
}

/** One subscriber's WebSocket. */
class WebSocketSink implements EventSink {
  private missedPongs = 0;
  private readonly gone: Promise<void>;

  constructor(
    private readonly socket: WebSocket,
    /** The TCP socket under the WebSocket, where the encoded frames are written. */
    private readonly transport: Duplex,
    private readonly closeGraceMs: number,
  ) {
    this.gone = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("pong", () => {
      this.missedPongs = 0;
    });
  }

  get bufferedBytes(): number {
    return this.socket.bufferedAmount;
  }

  private get open(): boolean {
    return this.socket.readyState === this.socket.OPEN;
  }

  writeEvents(batch: EventBatch, flushed?: () => void): void {
    // A socket that is going away is not written to; its close removes the subscriber.
    if (!this.open) return;
    // The frames are encoded already (websocket-frame.ts), one turn's in one buffer: `ws` writes only pings and
    // the close frame here, and nothing of it is queued (no compression), so nothing interleaves with them.
    this.transport.write(batch.webSocketFrames, flushed === undefined ? undefined : () => flushed());
  }

  writeControl(frame: EventStreamControlFrame): void {
    if (this.open) this.socket.send(JSON.stringify(frame));
  }

  heartbeat(): void {
    if (this.missedPongs >= MAX_MISSED_PONGS) {
      this.socket.terminate();
      return;
    }
    this.missedPongs += 1;
    if (this.open) this.socket.ping();
  }

  close(reason: "overflow" | "stopping"): Promise<void> {
    if (this.socket.readyState === this.socket.CLOSED) return this.gone;
    if (reason === "overflow") this.socket.close(CLOSE_CODES.tryAgainLater, "Too slow: read your socket");
    else this.socket.close(CLOSE_CODES.goingAway, "Bus stopping");
    // The close frame waits behind what the client does not read: cut the connection if it never gets there.
    const cut = setTimeout(() => this.socket.terminate(), reason === "overflow" ? CLOSE_HANDSHAKE_WAIT_MS : this.closeGraceMs).unref();
    return this.gone.then(() => clearTimeout(cut));
  }
}

/** Options of the stream's sockets. */
export interface EventSocketsOptions {
  checkApiKey: ApiKeyCheck;
  /** How long a socket closed at shutdown gets to finish the close handshake. */
  closeGraceMs: number;
}

/** The `ws` server of the event stream. */
export class EventSockets {
  private readonly server: WebSocketServer;

  constructor(
    private readonly stream: EventStream,
    private readonly options: EventSocketsOptions,
  ) {
    this.server = new (wsPackage().WebSocketServer)({
      noServer: true,
      maxPayload: MAX_CLIENT_FRAME_BYTES,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(TROUPE_PROTOCOL) ? TROUPE_PROTOCOL : false),
    });
  }

  /** Handles an upgrade to `/events`: key, query and capacity, then the handshake. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      this.options.checkApiKey(presentedUpgradeKey(req));
      const request = parseEventQuery(new RouteQuery(new URL(req.url ?? "/", "http://bus").search));
      const client = clientOf(req.socket.remoteAddress);
      try {
        this.stream.admit(client);
      } catch (error) {
        const bridgeError = toBridgeError(error);
        refuseUpgrade(socket, refusalStatus(bridgeError), bridgeError);
        return;
      }
      this.server.handleUpgrade(req, socket, head, (ws) => this.accept(ws, socket, request, client));
    } catch (error) {
      const bridgeError = toBridgeError(error);
      refuseUpgrade(socket, httpStatusOf(bridgeError), bridgeError);
    }
  }

  private accept(ws: WebSocket, transport: Duplex, request: EventStreamRequest, client: string): void {
    // A socket error is followed by 'close', where the subscriber is removed; nothing else to do here.
    ws.on("error", () => {});
    const sink = new WebSocketSink(ws, transport, this.options.closeGraceMs);
    let unsubscribe: () => void;
    try {
      unsubscribe = this.stream.subscribe(request, sink, client);
    } catch (error) {
      ws.close(CLOSE_CODES.tryAgainLater, toBridgeError(error).message.slice(0, 120));
      return;
    }
    ws.once("close", () => unsubscribe());
  }

  /** Stops the `ws` server (the stream closes its sockets). */
  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
