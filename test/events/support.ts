/**
 * Clients of the event stream for tests: a WebSocket subscriber that records its frames, and a reader of
 * server-sent events that parses the wire format itself (fields, comments, blank-line dispatch). Everything
 * opened here is closed after each test.
 */
import { afterEach } from "vitest";
import WebSocket from "ws";
import type { CommunicationBus } from "../../src/index.js";
import { TEST_KEY, until } from "../bus/support.js";
import { frameText } from "../../src/protocol/frames.js";

const sockets: WebSocket[] = [];
const readers: AbortController[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.terminate();
  for (const reader of readers.splice(0)) reader.abort();
});

/**
 * A manual workflow whose one participant is the runtime agent `troupe://echo`: its `shared_context` updates
 * are the large events the tests stream. Returns its id.
 */
export function createEchoWorkflow(bus: CommunicationBus): string {
  return bus.sessionManager.createSession(
    "troupe://orchestrator",
    [{ agent_id: "troupe://echo", role: "worker" }],
    [{ name: "greet", required_agents: ["troupe://echo"] }],
    {},
  );
}

/** A frame of the stream as the tests read it (an event, or `missed` / `overflow`). */
export type Frame = Record<string, any>;

/** A subscriber of `ws://…/events`. */
export interface EventSocket {
  socket: WebSocket;
  frames: Frame[];
  closed: Promise<{ code: number; reason: string }>;
  /** Waits until `condition` holds of the frames received so far. */
  until(condition: (frames: Frame[]) => boolean): Promise<void>;
}

/** How a test subscriber connects: the key header (the default), or subprotocols. */
export interface EventSocketOptions {
  headers?: Record<string, string>;
  protocols?: string[];
  /** Whether `ws` answers the bus's pings by itself. Default true. */
  autoPong?: boolean;
}

function eventsUrl(bus: CommunicationBus, query: string, scheme: "ws" | "http"): string {
  return `${bus.url.replace("http", scheme)}/events${query}`;
}

/** Opens a subscriber and waits for the handshake. */
export async function openEventSocket(bus: CommunicationBus, query = "", options: EventSocketOptions = {}): Promise<EventSocket> {
  const headers = options.headers ?? (options.protocols === undefined ? { "x-agent-api-key": TEST_KEY } : {});
  const socket = new WebSocket(eventsUrl(bus, query, "ws"), options.protocols ?? [], { headers, autoPong: options.autoPong ?? true });
  sockets.push(socket);
  const frames: Frame[] = [];
  socket.on("message", (data) => frames.push(JSON.parse(frameText(data)) as Frame));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return { socket, frames, closed, until: (condition) => until(() => condition(frames)) };
}

/** The HTTP status an upgrade to `/events` is refused with, its JSON body and its `retry-after` header. */
export function refusedUpgrade(
  bus: CommunicationBus,
  query = "",
  headers: Record<string, string> = { "x-agent-api-key": TEST_KEY },
): Promise<{ status: number; body: any; retryAfter: string | undefined }> {
  const socket = new WebSocket(eventsUrl(bus, query, "ws"), { headers });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once("unexpected-response", (_request, response) => {
      let text = "";
      response.on("data", (chunk: Buffer) => (text += chunk.toString()));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text), retryAfter: response.headers["retry-after"] }));
    });
    socket.once("open", () => reject(new Error("the upgrade was accepted")));
    socket.once("error", () => {});
  });
}

/** One server-sent event as the SSE wire format defines it. */
export interface ServerSentEvent {
  id: string | undefined;
  data: Frame;
}

/** A reader of `GET /events`. */
export interface SseReader {
  status: number;
  headers: Headers;
  events: ServerSentEvent[];
  /** Comment lines (`: …`), without the colon. */
  comments: string[];
  /** Resolves when the server ends the response. */
  ended: Promise<void>;
  until(condition: (events: ServerSentEvent[]) => boolean): Promise<void>;
  close(): void;
}

/**
 * Parses the SSE wire format (WHATWG HTML, "Interpreting an event stream"): lines end with LF, CR or CRLF; a
 * line starting with `:` is a comment; `field: value` sets a field (one space after the colon is dropped);
 * a blank line dispatches the event, whose data lines are joined with LF.
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private id: string | undefined;

  constructor(
    private readonly onEvent: (event: { id: string | undefined; data: string }) => void,
    private readonly onComment: (comment: string) => void,
  ) {}

  push(text: string): void {
    this.buffer += text;
    for (let end = this.buffer.search(/\r\n|\r|\n/); end >= 0; end = this.buffer.search(/\r\n|\r|\n/)) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer.startsWith("\r\n", end) ? 2 : 1));
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === "") {
      if (this.data.length > 0) this.onEvent({ id: this.id, data: this.data.join("\n") });
      this.data = [];
      this.id = undefined;
      return;
    }
    if (line.startsWith(":")) {
      this.onComment(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
  }
}

/** Opens `GET /events` with the test key (unless `headers` says otherwise) and parses what comes. */
export async function readServerSentEvents(
  bus: CommunicationBus,
  query = "",
  headers: Record<string, string> = { "x-agent-api-key": TEST_KEY },
): Promise<SseReader> {
  const abort = new AbortController();
  readers.push(abort);
  const response = await fetch(eventsUrl(bus, query, "http"), { headers, signal: abort.signal });
  const events: ServerSentEvent[] = [];
  const comments: string[] = [];
  const parser = new SseParser(
    (event) => events.push({ id: event.id, data: JSON.parse(event.data) as Frame }),
    (comment) => comments.push(comment),
  );
  const ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body ?? []) parser.push(decoder.decode(chunk as Uint8Array, { stream: true }));
    } catch {
      // Aborted by the test: the reader is done.
    }
  })();
  return {
    status: response.status,
    headers: response.headers,
    events,
    comments,
    ended,
    until: (condition) => until(() => condition(events)),
    close: () => abort.abort(),
  };
}
