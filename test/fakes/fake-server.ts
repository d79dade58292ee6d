/**
 * A scriptable HTTP server on 127.0.0.1 (node:http, port 0) that stands in for a model API in tests: it
 * records every request and answers each with the next scripted response (JSON, SSE frames with pauses, a
 * hang until the client disconnects, or a dropped connection). Servers close after each test.
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach } from "vitest";

/** A request as the fake received it. */
export interface RecordedRequest {
  method: string;
  /** Path without the query, e.g. `/v1/chat/completions`. */
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  /** The body parsed as JSON (`undefined` if empty); `any` because tests reach into each API's own shape. */
  body: any;
  /** True once the client closed the connection before the response was complete. */
  closedByClient: boolean;
  /** Resolves when the client closes the connection before the response is complete. */
  clientClosed: Promise<void>;
}

/** One SSE frame: an optional `event:` line, a `data:` line, and an optional pause before it. */
export interface SseFrame {
  event?: string;
  data: unknown;
  delayMs?: number;
}

/** What the fake answers to one request. */
export type FakeResponse =
  | { kind: "json"; status?: number; headers?: Record<string, string>; body: unknown }
  | {
      kind: "sse";
      status?: number;
      headers?: Record<string, string>;
      frames: SseFrame[];
      /** Frame separator; Gemini sends CRLF pairs. Default `\n\n`. */
      separator?: string;
      /** After the frames, keep the response open until the client disconnects. */
      hang?: boolean;
    }
  /** Send nothing, not even headers, until the client disconnects. */
  | { kind: "hang" }
  /** Drop the connection without an answer. */
  | { kind: "destroy" };

/** A response, or a function choosing it from the request (e.g. JSON or SSE by the request's stream flag). */
export type FakeScript = FakeResponse | ((request: RecordedRequest) => FakeResponse);

const servers = new Set<FakeServer>();

afterEach(async () => {
  await Promise.all([...servers].map((server) => server.close()));
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function writeSse(res: ServerResponse, response: Extract<FakeResponse, { kind: "sse" }>, request: RecordedRequest): Promise<void> {
  res.writeHead(response.status ?? 200, { "content-type": "text/event-stream", "cache-control": "no-cache", ...response.headers });
  res.flushHeaders();
  const separator = response.separator ?? "\n\n";
  const lineEnd = separator === "\r\n\r\n" ? "\r\n" : "\n";
  for (const frame of response.frames) {
    if (frame.delayMs !== undefined) await sleep(frame.delayMs);
    if (request.closedByClient) return;
    const data = typeof frame.data === "string" ? frame.data : JSON.stringify(frame.data);
    res.write(`${frame.event !== undefined ? `event: ${frame.event}${lineEnd}` : ""}data: ${data}${separator}`);
  }
  if (!response.hang) res.end();
}

/** A running fake. */
export class FakeServer {
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  private readonly queue: FakeScript[] = [];
  private readonly server: Server;
  private closing: Promise<void> | undefined;

  /**
   * @param accepts whether a request is one the faked API serves (others get 404 `unknown route`)
   * @param fallback the answer when nothing is scripted
   */
  constructor(
    private readonly accepts: (request: RecordedRequest) => boolean,
    private readonly fallback: FakeScript,
  ) {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const url = new URL(req.url ?? "/", "http://127.0.0.1");
        const text = Buffer.concat(chunks).toString("utf8");
        let markClosed = (): void => undefined;
        const request: RecordedRequest = {
          method: req.method ?? "GET",
          path: url.pathname,
          query: url.searchParams,
          headers: req.headers,
          body: text === "" ? undefined : (JSON.parse(text) as unknown),
          closedByClient: false,
          clientClosed: new Promise<void>((resolve) => {
            markClosed = resolve;
          }),
        };
        res.on("close", () => {
          if (res.writableFinished) return;
          request.closedByClient = true;
          markClosed();
        });
        this.requests.push(request);
        void this.answer(request, res);
      });
    });
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The most recent request; throws if none. */
  get lastRequest(): RecordedRequest {
    const request = this.requests.at(-1);
    if (request === undefined) throw new Error("the fake received no request");
    return request;
  }

  /** Scripts the answers to the next requests, in order. */
  enqueue(...scripts: FakeScript[]): this {
    this.queue.push(...scripts);
    return this;
  }

  /** Starts listening on 127.0.0.1, on a free port. */
  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    servers.add(this);
    return this;
  }

  /** Stops listening and drops open connections. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      servers.delete(this);
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private async answer(request: RecordedRequest, res: ServerResponse): Promise<void> {
    if (!this.accepts(request)) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: `unknown route ${request.method} ${request.path}` } }));
      return;
    }
    const script = this.queue.shift() ?? this.fallback;
    const response = typeof script === "function" ? script(request) : script;
    switch (response.kind) {
      case "json":
        res.writeHead(response.status ?? 200, { "content-type": "application/json", ...response.headers }).end(JSON.stringify(response.body));
        return;
      case "sse":
        await writeSse(res, response, request);
        return;
      case "hang":
        return;
      case "destroy":
        res.socket?.destroy();
        return;
    }
  }
}
