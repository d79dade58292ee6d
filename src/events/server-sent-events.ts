/**
 * The event stream as server-sent events: `GET /events` (`curl -N`, `EventSource`), with the same filters,
 * `since`, bounds and overflow rule as the WebSocket. Each event is `id: <seq>` and `data: <json>`; a frame
 * that is not an event (`missed`, `overflow`) is `data:` alone; a comment every heartbeat keeps proxies from
 * closing a quiet stream. An `EventSource` that reconnects sends `Last-Event-ID`, and misses nothing.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { EventStreamControlFrame } from "../protocol/event-frames.js";
import { toBridgeError } from "../errors.js";
import { HttpAnswer, HttpStream } from "../server/http-server.js";
import { CLOSE_HANDSHAKE_WAIT_MS } from "../server/upgrades.js";
import type { EventStreamRequest } from "./event-filter.js";
import { refusalStatus, type EventBatch, type EventSink, type EventStream } from "./event-stream.js";

/** One subscriber's response. */
class ServerSentEventsSink implements EventSink {
  private readonly gone: Promise<void>;

  constructor(
    private readonly res: ServerResponse,
    private readonly closeGraceMs: number,
  ) {
    this.gone = new Promise((resolve) => res.once("close", () => resolve()));
  }

  get bufferedBytes(): number {
    return this.res.writableLength;
  }

  private get open(): boolean {
    return !this.res.writableEnded && !this.res.destroyed;
  }

  writeEvents(batch: EventBatch, flushed?: () => void): void {
    if (!this.open) return;
    // One turn's events in one write, their text built once for every subscriber that gets them.
    this.res.write(batch.serverSentEvents, flushed === undefined ? undefined : () => flushed());
  }

  writeControl(frame: EventStreamControlFrame): void {
    if (this.open) this.res.write(`data: ${JSON.stringify(frame)}\n\n`);
  }

  heartbeat(): void {
    // Behind a full buffer a comment keeps nothing open: what waits to be written already will.
    if (this.open && this.res.writableLength === 0) this.res.write(": keep-alive\n\n");
  }

  close(reason: "overflow" | "stopping"): Promise<void> {
    if (this.res.destroyed) return this.gone;
    this.res.end();
    // The end waits behind what the client does not read: cut the connection if it never gets there.
    const cut = setTimeout(() => this.res.destroy(), reason === "overflow" ? CLOSE_HANDSHAKE_WAIT_MS : this.closeGraceMs).unref();
    return this.gone.then(() => clearTimeout(cut));
  }
}

/**
 * The answer of `GET /events` (the route has checked the key and parsed the query): the stream; 503 when the
 * server is full, as for a WebSocket; CAPACITY (429, `retry-after`) past the client's quota.
 */
export function serverSentEvents(stream: EventStream, request: EventStreamRequest, client: string, closeGraceMs: number): HttpStream | HttpAnswer {
  try {
    stream.admit(client);
  } catch (error) {
    const bridgeError = toBridgeError(error);
    if (refusalStatus(bridgeError) === 429) throw bridgeError;
    return new HttpAnswer(503, { error: bridgeError.toJSON() });
  }
  return new HttpStream((req: IncomingMessage, res: ServerResponse) => {
    // A reset is the end of this stream, nothing more; 'close' removes the subscriber.
    res.on("error", () => {});
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      // nginx buffers responses unless told not to; a buffered event stream arrives in lumps.
      "x-accel-buffering": "no",
    });
    if (req.method === "HEAD") {
      res.end();
      return;
    }
    // Sends the headers now: a client sees the stream open before the first event.
    res.write(": troupe event stream\n\n");
    const sink = new ServerSentEventsSink(res, closeGraceMs);
    let unsubscribe: () => void;
    try {
      unsubscribe = stream.subscribe(request, sink, client);
    } catch {
      // Full since the route admitted it (another subscriber came in between): the client will retry.
      res.end();
      return;
    }
    res.once("close", () => unsubscribe());
  });
}
