/**
 * troupe's agents served over A2A (docs/a2a.md), on the bus's own `node:http` server: the SDK's
 * transport-agnostic request handler (`DefaultRequestHandler`) behind its JSON-RPC transport handler, v1.0
 * (`JsonRpcTransportHandler`) and the v0.3 compatibility layer (`LegacyJsonRpcTransportHandler`, for a request
 * that names version 0.3 or none, as the SDK's Express adapter does), driven from the routes of
 * `./routes.ts`; Express is not needed. Streams are written as the SDK formats them (`formatSSEEvent`).
 *
 * One request handler per request, over state they share: the bounded task store, the execution buses of
 * running tasks, the contexts' sessions, and the executors of running tasks (the runtime's agents' through
 * bridge sessions, the bus's registered agents' through sync messages).
 *
 * On a cluster node (`cluster`), a request naming a task or a context another node serves goes to that node, whose
 * answer (JSON, or a stream of events) is written to the client as it comes (docs/cluster.md, "A2A across nodes");
 * this node answers the requests other nodes send it for its own (`answerForwarded`).
 */
import type { ServerResponse } from "node:http";
import { A2A_VERSION_HEADER, AgentCard, Extensions, formatSSEErrorEvent, formatSSEEvent, HTTP_EXTENSION_HEADER, SSE_HEADERS } from "@a2a-js/sdk";
import { A2A_LEGACY_PROTOCOL_VERSION, LEGACY_HTTP_EXTENSION_HEADER, LEGACY_METHOD_TASKS_RESUBSCRIBE } from "@a2a-js/sdk/compat/v0_3";
import { LegacyJsonRpcTransportHandler } from "@a2a-js/sdk/compat/v0_3/server";
import { A2A_ERROR_CODE, ContentTypeNotSupportedError, ERROR_INFO_TYPE, RequestMalformedError } from "@a2a-js/sdk/errors";
import {
  defaultServerCallContextBuilder,
  DefaultExecutionEventBusManager,
  DefaultRequestHandler,
  JsonRpcTransportHandler,
  UnauthenticatedUser,
  validateVersion,
  type AgentExecutor,
  type ServerCallContext,
} from "@a2a-js/sdk/server";
import type { CommunicationBus } from "../bus/bus.js";
import { pageOf, pageRequestOf } from "../bus/pagination.js";
import { BridgeError, isServiceUnavailable, toBridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { clientGone, HttpAnswer, type RouteRequest } from "../server/http-server.js";
import type { A2aRecords, A2aTaskRecord } from "./a2a-records.js";
import { ANSWER_BODY, ANSWER_HEAD, type A2aRemote, type AnswerPieces, type ForwardedA2aRequest } from "./a2a-remote.js";
import { agentCardOf, agentUrlOf, type CardSubject } from "./agent-cards.js";
import { BusAgentTasks } from "./bus-agent-tasks.js";
import type { A2aContexts } from "./contexts.js";
import { requestTargetOf } from "./request-target.js";
import { SessionTasks, STREAMING_STATE_KEY } from "./session-tasks.js";
import { BoundedTaskStore, UNRECORDED_TASK_STATE_KEY } from "./task-store.js";

/** Limits of the A2A endpoint. */
export interface A2aServerOptions {
  /** Contexts (bridge sessions) held at once; past it the least recently used idle one is closed. */
  maxContexts: number;
  /** Tasks kept for `GetTask` and `ListTasks`; past it the oldest settled ones are forgotten. */
  maxTasks: number;
}

/** What a cluster node's endpoint has of its cluster: where its records go, and the other nodes. */
export interface A2aCluster {
  records: A2aRecords;
  remote: A2aRemote;
}

/** An agent A2A can reach: one of the runtime's (through bridge sessions), or one registered on the bus. */
interface Target extends CardSubject {
  kind: "runtime" | "bus";
}

/** The JSON-RPC methods whose answer is a stream. */
const STREAMING_METHODS = new Set(["SendStreamingMessage", "SubscribeToTask", "message/stream", LEGACY_METHOD_TASKS_RESUBSCRIBE]);

/** The request headers the SDK reads, and `host` (the cards' URLs): what a forwarded request carries. */
const READ_HEADERS = ["host", A2A_VERSION_HEADER, HTTP_EXTENSION_HEADER, LEGACY_HTTP_EXTENSION_HEADER].map((name) => name.toLowerCase());

/**
 * What a relayed answer may hold in the node asked, unread by its client, before that node gives it up: core NATS
 * has no back pressure, so a client that does not read cannot slow the node that writes the answer.
 */
const MAX_RELAYED_BYTES_BUFFERED = 16 * 1024 * 1024;

/** A JSON-RPC error answer, as the SDK's Express adapter writes one for a request it cannot pass on. */
interface ErrorEnvelope {
  jsonrpc: "2.0";
  id: string | number | null;
  error: unknown;
}

/** Response headers, as `writeHead` takes them. */
type Headers = Record<string, string | string[]>;

/** What the endpoint answers a JSON-RPC request with: one JSON answer, or a stream of server-sent events. */
type RpcAnswer =
  | { kind: "json"; status: number; body: unknown; headers: Headers }
  | {
      kind: "events";
      headers: Headers;
      /** The first answer, read before the stream opened (a failure then is a JSON answer), unless the method always streams. */
      first: IteratorResult<unknown, void> | undefined;
      answers: AsyncGenerator<unknown, void, undefined>;
      id: string | number | null;
      legacy: boolean;
    };

function idOf(body: unknown): string | number | null {
  const id = typeof body === "object" && body !== null ? (body as { id?: unknown }).id : undefined;
  return typeof id === "string" || typeof id === "number" ? id : null;
}

function methodOf(body: unknown): string | undefined {
  const method = typeof body === "object" && body !== null ? (body as { method?: unknown }).method : undefined;
  return typeof method === "string" ? method : undefined;
}

/** Whether the protocol version a request names is v0.3 (so is naming none, as the SDK's Express adapter reads it). */
function isLegacy(version: string | undefined): boolean {
  return (version || A2A_LEGACY_PROTOCOL_VERSION) === A2A_LEGACY_PROTOCOL_VERSION;
}

/** A JSON answer's status, headers and body, as written to the client or sent to the node that forwarded its request. */
function jsonAnswer(status: number, body: unknown, headers: Headers = {}): { status: number; headers: Headers; payload: string } {
  const payload = JSON.stringify(body);
  return { status, headers: { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(payload)) }, payload };
}

function writeJson(res: ServerResponse, status: number, body: unknown, headers: Headers = {}): void {
  if (res.headersSent) return;
  const answer = jsonAnswer(status, body, headers);
  res.writeHead(answer.status, answer.headers);
  res.end(answer.payload);
}

/**
 * The JSON-RPC error of a request no node can answer now (the node serving its task died and was not taken over
 * yet, or lost its lease): INTERNAL_ERROR's code, A2A having none for it, the reason `UNAVAILABLE`, and what to do
 * in its message. Sent with HTTP 503, as the bus's other routes answer then.
 */
function unavailableEnvelope(id: string | number | null, error: BridgeError): ErrorEnvelope {
  const nodeId = typeof error.details.nodeId === "string" ? { nodeId: error.details.nodeId } : {};
  return {
    jsonrpc: "2.0",
    id,
    error: {
      code: A2A_ERROR_CODE.INTERNAL_ERROR,
      message: `The node serving this task or context cannot answer now; ask again shortly (another node takes its work over): ${error.message}`,
      data: [{ "@type": ERROR_INFO_TYPE, reason: "UNAVAILABLE", domain: "troupe", metadata: { retryable: "true", ...nodeId } }],
    },
  };
}

/** The A2A endpoint of one bus. */
export class A2aServer {
  private readonly tasks: BoundedTaskStore;
  private readonly buses = new DefaultExecutionEventBusManager();
  private readonly sessionTasks: SessionTasks;
  private readonly busAgentTasks: BusAgentTasks;
  /** Streams being written: ended when the endpoint closes. */
  private readonly streams = new Set<ServerResponse>();
  private closed = false;

  constructor(
    private readonly bus: CommunicationBus,
    private readonly runtime: Runtime,
    options: Pick<A2aServerOptions, "maxTasks">,
    private readonly contexts: A2aContexts,
    private readonly cluster?: A2aCluster,
  ) {
    this.tasks = new BoundedTaskStore(options.maxTasks, cluster?.records, () => runtime.clock.now());
    this.sessionTasks = new SessionTasks(runtime, this.contexts);
    this.busAgentTasks = new BusAgentTasks(bus, runtime.clock);
  }

  /** What the endpoint holds: contexts, running tasks, kept tasks (for tests and metrics). */
  stats(): { contexts: number; runningTasks: number; tasks: number } {
    return { contexts: this.contexts.size, runningTasks: this.sessionTasks.size, tasks: this.tasks.size };
  }

  /** `GET /a2a`: every agent served, with its URL and card, paged as `GET /agents` is. */
  directory(request: RouteRequest): { agents: Array<{ id: string; url: string; card: unknown }>; next_cursor?: string } {
    const origin = this.originOf(request.header("host"));
    const { items, next_cursor } = pageOf(this.targets(), pageRequestOf(request.query));
    return {
      agents: items.map((target) => ({ id: target.agentId, url: agentUrlOf(origin, target.agentId), card: AgentCard.toJSON(this.cardOf(target, origin)) })),
      ...(next_cursor === undefined ? {} : { next_cursor }),
    };
  }

  /** `GET /a2a/<agentId>/.well-known/agent-card.json`. */
  card(agentId: string, request: RouteRequest): HttpAnswer {
    const card = this.cardOf(this.target(agentId), this.originOf(request.header("host")));
    return new HttpAnswer(200, AgentCard.toJSON(card), undefined, { "cache-control": "no-cache" });
  }

  /** A cluster node keeps the tasks whose records name it (see `BoundedTaskStore.adopt`). */
  adoptTasks(records: readonly A2aTaskRecord[], options: { replace: boolean }): void {
    this.tasks.adopt(records, options);
  }

  /**
   * `POST /a2a/<agentId>/`: one JSON-RPC request, answered with JSON or a stream of server-sent events; on a cluster
   * node, by the node that serves the task or context it names (which decides whether it serves the agent: a bus
   * agent may be registered there only).
   */
  async rpc(agentId: string, request: RouteRequest, res: ServerResponse): Promise<void> {
    if (this.closed) throw new BridgeError("TRANSPORT", "The A2A endpoint is closing");
    const contentType = request.header("content-type");
    if (contentType !== undefined && contentType.split(";", 1)[0]!.trim().toLowerCase() !== "application/json") {
      // An agent that is not served is 404 whatever it is sent.
      this.target(agentId);
      return writeJson(
        res,
        200,
        this.errorEnvelope(null, new ContentTypeNotSupportedError(`Unsupported Content-Type "${contentType}"; expected application/json.`)),
      );
    }
    let body: unknown;
    try {
      body = await request.readBody();
    } catch (error) {
      // A body over the size limit is refused as every route refuses one (413); one that is no JSON, or nested
      // too deep, as the SDK's Express adapter answers a body it cannot parse.
      const failure = toBridgeError(error);
      this.target(agentId);
      if (failure.details["limitBytes"] !== undefined) throw failure;
      if (failure.details["limit"] !== undefined) return writeJson(res, 200, this.errorEnvelope(null, new RequestMalformedError(failure.message)));
      return writeJson(res, 200, {
        jsonrpc: "2.0",
        id: null,
        error: { code: A2A_ERROR_CODE.PARSE_ERROR, message: `Invalid JSON payload: ${failure.message}` },
      });
    }
    const headers: Record<string, string> = {};
    for (const name of READ_HEADERS) {
      const value = request.header(name);
      if (value !== undefined) headers[name] = value;
    }
    const asked: ForwardedA2aRequest = { agentId, body, headers };
    const id = idOf(body);
    try {
      const nodeId = await this.nodeOf(asked);
      if (nodeId !== undefined) return await this.relay(nodeId, asked, res, id);
    } catch (error) {
      const failure = toBridgeError(error);
      // No node can answer for it now: ask again (503, as the cluster's other routes answer, with a JSON-RPC error a client reads).
      if (isServiceUnavailable(failure) && !res.headersSent) return writeJson(res, 503, unavailableEnvelope(id, failure));
      throw failure;
    }
    await this.writeAnswer(res, await this.answer(asked));
  }

  /**
   * A request another node forwarded for a task or context of this node: answered here as `rpc` answers its own
   * (never sent on), its answer's head and body given to `pieces`; an agent that is not served is thrown, as `rpc`
   * throws it. Aborting `signal` stops a stream's writing, not its task.
   */
  async answerForwarded(request: ForwardedA2aRequest, pieces: AnswerPieces, signal: AbortSignal): Promise<void> {
    if (this.closed) throw new BridgeError("TRANSPORT", "The A2A endpoint is closing: ask again", { unavailable: true, retryable: true });
    const answer = await this.answer(request);
    if (answer.kind === "json") {
      const { status, headers, payload } = jsonAnswer(answer.status, answer.body, answer.headers);
      pieces(ANSWER_HEAD, JSON.stringify({ status, headers }));
      pieces(ANSWER_BODY, payload);
      return;
    }
    pieces(ANSWER_HEAD, JSON.stringify({ status: 200, headers: { ...answer.headers, ...SSE_HEADERS } }));
    await this.pump(answer, (chunk) => Promise.resolve(pieces(ANSWER_BODY, chunk)), goneWhen(signal));
  }

  /**
   * Refuses new requests and closes every context's session: the prompts still running are cancelled, and their
   * tasks end `canceled` (their streams say so, then end); streams still open after that are ended. A cluster node
   * closes none: its contexts go with their sessions to the node that takes its work over.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.cluster === undefined) await this.contexts.closeAll();
    else this.contexts.release();
    // The cancelled tasks' last events are written in the turns that follow.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  /**
   * On a cluster node, the node that serves the task or context a request names when another one does; `undefined`
   * when it is answered here (it names none, this node holds it, or no record names another node). TRANSPORT
   * (`unavailable`, 503) while this node does not hold its lease.
   */
  private async nodeOf({ agentId, body, headers }: ForwardedA2aRequest): Promise<string | undefined> {
    const remote = this.cluster?.remote;
    if (remote === undefined) return undefined;
    // A node that lost its lease answers nothing (what it holds may be taken over, and what it starts cannot be recorded).
    remote.checkLease();
    const target = requestTargetOf(body, isLegacy(headers[A2A_VERSION_HEADER.toLowerCase()]));
    if (target === undefined) return undefined;
    const runtimeAgentId = this.runtime.agentIdOfBusAgent(agentId);
    // A registered agent's contexts are its own affair (no session here): any node passes them on.
    if (runtimeAgentId === undefined && !("taskId" in target)) return undefined;
    const owner = runtimeAgentId ?? agentId;
    if ("taskId" in target ? this.tasks.has(owner, target.taskId) : this.contexts.has(owner, target.contextId)) return undefined;
    return remote.nodeOf(owner, target);
  }

  /**
   * Sends a request to node `nodeId` and writes its answer to the client as it comes: its status and headers, then
   * its body (a JSON answer, or a stream of events). A stream that breaks once begun ends with an error event.
   */
  private async relay(nodeId: string, request: ForwardedA2aRequest, res: ServerResponse, id: string | number | null): Promise<void> {
    const gone = clientGone(res);
    let head = "";
    let streaming = false;
    const open = (): void => {
      if (res.headersSent) return;
      const { status, headers } = JSON.parse(head) as { status: number; headers: Headers };
      res.writeHead(status, headers);
      streaming = String(res.getHeader("content-type")).startsWith("text/event-stream");
      if (!streaming) return;
      res.flushHeaders();
      this.streams.add(res);
    };
    const write = (kind: string, text: string): void => {
      if (kind === ANSWER_HEAD) {
        head += text;
        return;
      }
      open();
      if (res.writableEnded || res.destroyed) return;
      // A client that does not read: its answer is given up rather than held here without bound.
      if (res.writableLength > MAX_RELAYED_BYTES_BUFFERED) return void res.destroy();
      res.write(text);
    };
    try {
      await this.cluster!.remote.forward(nodeId, request, write, gone);
      open();
    } catch (error) {
      if (!res.headersSent) throw error;
      if (streaming && !res.writableEnded) {
        res.write(formatSSEErrorEvent(this.errorEnvelope(id, error, isLegacy(request.headers[A2A_VERSION_HEADER.toLowerCase()]))));
      } else res.destroy();
    } finally {
      this.streams.delete(res);
      // Nothing written yet: the caller answers the error.
      if (res.headersSent && !res.writableEnded && !res.destroyed) res.end();
    }
  }

  /** Answers a request here: the SDK's request handler behind its JSON-RPC transport, v1.0 or v0.3. */
  private async answer({ agentId, body, headers }: ForwardedA2aRequest): Promise<RpcAnswer> {
    const target = this.target(agentId);
    const header = (name: string): string | undefined => headers[name.toLowerCase()];
    const version = header(A2A_VERSION_HEADER);
    const legacy = isLegacy(version);
    const id = idOf(body);
    const method = methodOf(body);
    try {
      const context = defaultServerCallContextBuilder({
        extensions: Extensions.parseServiceParameter(
          legacy ? (header(LEGACY_HTTP_EXTENSION_HEADER) ?? header(HTTP_EXTENSION_HEADER)) : header(HTTP_EXTENSION_HEADER),
        ),
        user: new UnauthenticatedUser(),
        headers,
        ...(version ? { requestedVersion: version } : {}),
      });
      context.state.set(STREAMING_STATE_KEY, method !== undefined && STREAMING_METHODS.has(method));
      const card = this.cardOf(target, this.originOf(header("host")));
      validateVersion(context.requestedVersion, card, "JSONRPC");
      const handler = new DefaultRequestHandler(
        card,
        this.tasks.forAgent(target.agentId),
        this.executorOf(target),
        this.buses,
        undefined,
        undefined,
        undefined,
        undefined,
        {
          // A task waiting for input needs no bus: its next message makes a new one.
          keepBusAliveStates: [],
        },
      );
      const answer = await (legacy ? new LegacyJsonRpcTransportHandler(handler) : new JsonRpcTransportHandler(handler)).handle(
        body as Record<string, unknown>,
        context,
      );
      const answerHeaders: Headers = context.activatedExtensions
        ? { [legacy ? LEGACY_HTTP_EXTENSION_HEADER : HTTP_EXTENSION_HEADER]: [...context.activatedExtensions] }
        : {};
      if (!(Symbol.asyncIterator in answer))
        return (await this.unrecorded(target, context, id)) ?? { kind: "json", status: 200, body: answer, headers: answerHeaders };
      // A failure before the first event is a JSON answer (but v0.3's `tasks/resubscribe` is always a stream).
      let first: IteratorResult<unknown, void> | undefined;
      if (!(legacy && method === LEGACY_METHOD_TASKS_RESUBSCRIBE)) {
        try {
          first = await answer.next();
        } catch (error) {
          return (await this.unrecorded(target, context, id)) ?? { kind: "json", status: 200, body: this.errorEnvelope(id, error, legacy), headers: {} };
        }
      }
      return { kind: "events", headers: answerHeaders, first, answers: answer, id, legacy };
    } catch (error) {
      const envelope = this.errorEnvelope(id, error, legacy);
      const status = (envelope.error as { code?: number }).code === A2A_ERROR_CODE.INTERNAL_ERROR ? 500 : 200;
      return { kind: "json", status, body: envelope, headers: {} };
    }
  }

  /**
   * On a cluster node, the answer to a request whose new task the store did not take (unreachable, or the lease lost
   * meanwhile): 503, ask again, as the cluster answers when no node can; the task, which no other node could find and
   * whose id its client never got, is cancelled and forgotten here. `undefined` when every task was recorded.
   */
  private async unrecorded(target: Target, context: ServerCallContext, id: string | number | null): Promise<RpcAnswer | undefined> {
    const unrecorded = context.state.get(UNRECORDED_TASK_STATE_KEY) as { taskId: string; error: unknown } | undefined;
    if (unrecorded === undefined) return undefined;
    const bus = this.buses.getByTaskId(unrecorded.taskId, context);
    if (bus !== undefined) await this.executorOf(target).cancelTask(unrecorded.taskId, bus);
    this.tasks.forget(target.agentId, unrecorded.taskId);
    return { kind: "json", status: 503, body: unavailableEnvelope(id, toBridgeError(unrecorded.error)), headers: {} };
  }

  /** Writes an answer to its client: JSON, or server-sent events, each written once the client has room for it. */
  private async writeAnswer(res: ServerResponse, answer: RpcAnswer): Promise<void> {
    if (answer.kind === "json") return writeJson(res, answer.status, answer.body, answer.headers);
    res.writeHead(200, { ...answer.headers, ...SSE_HEADERS });
    res.flushHeaders();
    this.streams.add(res);
    const gone = goneWhen(clientGone(res));
    try {
      await this.pump(
        answer,
        async (chunk) => {
          if (res.writableEnded) return;
          if (!res.write(chunk)) await Promise.race([new Promise((resolve) => res.once("drain", resolve)), gone]);
        },
        gone,
      );
    } finally {
      this.streams.delete(res);
      if (!res.writableEnded) res.end();
    }
  }

  /**
   * Writes a stream's answers as server-sent events until it ends, or until `gone` (its reader went away: the
   * writing stops, not the task, to which it may subscribe again); a failure after the first event is an `error` event.
   */
  private async pump(answer: Extract<RpcAnswer, { kind: "events" }>, write: (chunk: string) => Promise<void>, gone: Promise<"gone">): Promise<void> {
    const { first, answers, id, legacy } = answer;
    try {
      if (first !== undefined && first.done !== true) await write(formatSSEEvent(first.value));
      for (;;) {
        const next = await Promise.race([answers.next(), gone]);
        if (next === "gone" || next.done === true) break;
        await write(formatSSEEvent(next.value));
      }
    } catch (error) {
      await write(formatSSEErrorEvent(this.errorEnvelope(id, error, legacy)));
    } finally {
      // Stops reading the task's events (once its next one comes): the task itself runs on.
      void answers.return(undefined).catch(() => undefined);
    }
  }

  private errorEnvelope(id: string | number | null, error: unknown, legacy = false): ErrorEnvelope {
    return {
      jsonrpc: "2.0",
      id,
      error: legacy ? LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError(error) : JsonRpcTransportHandler.mapToJSONRPCError(error),
    };
  }

  private executorOf(target: Target): AgentExecutor {
    return target.kind === "runtime" ? this.sessionTasks.executorFor(target.agentId) : this.busAgentTasks.executorFor(target.agentId);
  }

  private cardOf(target: Target, origin: string): AgentCard {
    return agentCardOf(target, origin, this.bus.options.apiKey !== undefined);
  }

  /**
   * The agent an id in a URL names: one of the runtime's (its id, or its bus id `troupe://<id>`), else an agent
   * registered on the bus. NOT_FOUND otherwise.
   */
  private target(id: string): Target {
    const runtimeAgentId = this.runtime.agentIdOfBusAgent(id);
    if (runtimeAgentId !== undefined) {
      const agent = this.runtime.busAgents().find((candidate) => candidate.agentId === runtimeAgentId);
      if (agent !== undefined)
        return { kind: "runtime", agentId: agent.agentId, name: agent.name, description: agent.description, capabilities: agent.capabilities };
    }
    for (const target of this.registeredTargets()) if (target.agentId === id) return target;
    throw new BridgeError("NOT_FOUND", `No A2A agent ${id}: it is neither an agent of the runtime nor registered on the bus`, { agentId: id });
  }

  /** Every agent served, the runtime's first, each built only when its page needs it. */
  private *targets(): Generator<() => Target> {
    for (const agent of this.runtime.busAgents()) {
      yield () => ({ kind: "runtime", agentId: agent.agentId, name: agent.name, description: agent.description, capabilities: agent.capabilities });
    }
    for (const target of this.registeredTargets()) yield () => target;
  }

  /** The agents registered on the bus (over HTTP, with a WebSocket to take their messages). */
  private *registeredTargets(): Generator<Target> {
    for (const make of this.bus.agentListings()) {
      const listing = make();
      if (listing.source !== "registered") continue;
      const description = listing.metadata["description"];
      yield {
        kind: "bus",
        agentId: listing.agent_id,
        name: typeof listing.metadata["name"] === "string" ? listing.metadata["name"] : listing.agent_id,
        description: typeof description === "string" ? description : `${listing.framework} agent on the troupe bus`,
        capabilities: listing.capabilities,
      };
    }
  }

  /** Where the client reached the server (its `Host`), for the URLs in cards; the bus's own URL without one. */
  private originOf(host: string | undefined): string {
    const busUrl = new URL(this.bus.url);
    return host !== undefined && /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? `${busUrl.protocol}//${host}` : busUrl.origin;
  }
}

/** Resolves with "gone" once `signal` is aborted (the reader of an answer went away): what a pump races its reads with. */
function goneWhen(signal: AbortSignal): Promise<"gone"> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve("gone");
    else signal.addEventListener("abort", () => resolve("gone"), { once: true });
  });
}
