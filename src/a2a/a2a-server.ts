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
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { A2A_VERSION_HEADER, AgentCard, Extensions, formatSSEErrorEvent, formatSSEEvent, HTTP_EXTENSION_HEADER, SSE_HEADERS } from "@a2a-js/sdk";
import { A2A_LEGACY_PROTOCOL_VERSION, LEGACY_HTTP_EXTENSION_HEADER, LEGACY_METHOD_TASKS_RESUBSCRIBE } from "@a2a-js/sdk/compat/v0_3";
import { LegacyJsonRpcTransportHandler } from "@a2a-js/sdk/compat/v0_3/server";
import { A2A_ERROR_CODE, ContentTypeNotSupportedError, RequestMalformedError } from "@a2a-js/sdk/errors";
import {
  defaultServerCallContextBuilder,
  DefaultExecutionEventBusManager,
  DefaultRequestHandler,
  JsonRpcTransportHandler,
  UnauthenticatedUser,
  validateVersion,
  type AgentExecutor,
} from "@a2a-js/sdk/server";
import type { CommunicationBus } from "../bus/bus.js";
import { pageOf, pageRequestOf } from "../bus/pagination.js";
import { BridgeError, toBridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { HttpAnswer, type RouteRequest } from "../server/http-server.js";
import { agentCardOf, agentUrlOf, type CardSubject } from "./agent-cards.js";
import { BusAgentTasks } from "./bus-agent-tasks.js";
import { A2aContexts } from "./contexts.js";
import { SessionTasks, STREAMING_STATE_KEY } from "./session-tasks.js";
import { BoundedTaskStore } from "./task-store.js";

/** Limits of the A2A endpoint. */
export interface A2aServerOptions {
  /** Contexts (bridge sessions) held at once; past it the least recently used idle one is closed. */
  maxContexts: number;
  /** Tasks kept for `GetTask` and `ListTasks`; past it the oldest settled ones are forgotten. */
  maxTasks: number;
}

/** An agent A2A can reach: one of the runtime's (through bridge sessions), or one registered on the bus. */
interface Target extends CardSubject {
  kind: "runtime" | "bus";
}

/** The JSON-RPC methods whose answer is a stream. */
const STREAMING_METHODS = new Set(["SendStreamingMessage", "SubscribeToTask", "message/stream", LEGACY_METHOD_TASKS_RESUBSCRIBE]);

/** A JSON-RPC error answer, as the SDK's Express adapter writes one for a request it cannot pass on. */
interface ErrorEnvelope {
  jsonrpc: "2.0";
  id: string | number | null;
  error: unknown;
}

function idOf(body: unknown): string | number | null {
  const id = typeof body === "object" && body !== null ? (body as { id?: unknown }).id : undefined;
  return typeof id === "string" || typeof id === "number" ? id : null;
}

function methodOf(body: unknown): string | undefined {
  const method = typeof body === "object" && body !== null ? (body as { method?: unknown }).method : undefined;
  return typeof method === "string" ? method : undefined;
}

function writeJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | string[]> = {}): void {
  if (res.headersSent) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(payload) });
  res.end(payload);
}

/** The A2A endpoint of one bus. */
export class A2aServer {
  private readonly tasks: BoundedTaskStore;
  private readonly buses = new DefaultExecutionEventBusManager();
  private readonly contexts: A2aContexts;
  private readonly sessionTasks: SessionTasks;
  private readonly busAgentTasks: BusAgentTasks;
  /** Streams being written: ended when the endpoint closes. */
  private readonly streams = new Set<ServerResponse>();
  private closed = false;

  constructor(
    private readonly bus: CommunicationBus,
    private readonly runtime: Runtime,
    options: A2aServerOptions,
  ) {
    this.tasks = new BoundedTaskStore(options.maxTasks);
    this.contexts = new A2aContexts(runtime, options.maxContexts);
    this.contexts.start();
    this.sessionTasks = new SessionTasks(runtime, this.contexts);
    this.busAgentTasks = new BusAgentTasks(bus, runtime.clock);
  }

  /** What the endpoint holds: contexts, running tasks, kept tasks (for tests and metrics). */
  stats(): { contexts: number; runningTasks: number; tasks: number } {
    return { contexts: this.contexts.size, runningTasks: this.sessionTasks.size, tasks: this.tasks.size };
  }

  /** `GET /a2a`: every agent served, with its URL and card, paged as `GET /agents` is. */
  directory(request: RouteRequest): { agents: Array<{ id: string; url: string; card: unknown }>; next_cursor?: string } {
    const origin = this.originOf(request);
    const { items, next_cursor } = pageOf(this.targets(), pageRequestOf(request.query));
    return {
      agents: items.map((target) => ({ id: target.agentId, url: agentUrlOf(origin, target.agentId), card: AgentCard.toJSON(this.cardOf(target, origin)) })),
      ...(next_cursor === undefined ? {} : { next_cursor }),
    };
  }

  /** `GET /a2a/<agentId>/.well-known/agent-card.json`. */
  card(agentId: string, request: RouteRequest): HttpAnswer {
    const card = this.cardOf(this.target(agentId), this.originOf(request));
    return new HttpAnswer(200, AgentCard.toJSON(card), undefined, { "cache-control": "no-cache" });
  }

  /** `POST /a2a/<agentId>/`: one JSON-RPC request, answered with JSON or a stream of server-sent events. */
  async rpc(agentId: string, request: RouteRequest, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.closed) throw new BridgeError("TRANSPORT", "The A2A endpoint is closing");
    const target = this.target(agentId);
    const contentType = request.header("content-type");
    if (contentType !== undefined && contentType.split(";", 1)[0]!.trim().toLowerCase() !== "application/json") {
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
      if (failure.details["limitBytes"] !== undefined) throw failure;
      if (failure.details["limit"] !== undefined) return writeJson(res, 200, this.errorEnvelope(null, new RequestMalformedError(failure.message)));
      return writeJson(res, 200, {
        jsonrpc: "2.0",
        id: null,
        error: { code: A2A_ERROR_CODE.PARSE_ERROR, message: `Invalid JSON payload: ${failure.message}` },
      });
    }
    const version = request.header(A2A_VERSION_HEADER);
    const legacy = (version || A2A_LEGACY_PROTOCOL_VERSION) === A2A_LEGACY_PROTOCOL_VERSION;
    const id = idOf(body);
    const method = methodOf(body);
    try {
      const context = defaultServerCallContextBuilder({
        extensions: Extensions.parseServiceParameter(
          legacy ? (request.header(LEGACY_HTTP_EXTENSION_HEADER) ?? request.header(HTTP_EXTENSION_HEADER)) : request.header(HTTP_EXTENSION_HEADER),
        ),
        user: new UnauthenticatedUser(),
        headers: req.headers,
        ...(version ? { requestedVersion: version } : {}),
      });
      context.state.set(STREAMING_STATE_KEY, method !== undefined && STREAMING_METHODS.has(method));
      const card = this.cardOf(target, this.originOf(request));
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
      const headers: Record<string, string[]> = context.activatedExtensions
        ? { [legacy ? LEGACY_HTTP_EXTENSION_HEADER : HTTP_EXTENSION_HEADER]: [...context.activatedExtensions] }
        : {};
      if (Symbol.asyncIterator in answer) return await this.stream(res, answer, id, legacy, headers, legacy && method === LEGACY_METHOD_TASKS_RESUBSCRIBE);
      writeJson(res, 200, answer, headers);
    } catch (error) {
      const envelope = this.errorEnvelope(id, error, legacy);
      writeJson(res, (envelope.error as { code?: number }).code === A2A_ERROR_CODE.INTERNAL_ERROR ? 500 : 200, envelope);
    }
  }

  /**
   * Refuses new requests and closes every context's session: the prompts still running are cancelled, and their
   * tasks end `canceled` (their streams say so, then end); streams still open after that are ended.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.contexts.closeAll();
    // The cancelled tasks' last events are written in the turns that follow.
    await new Promise<void>((resolve) => setImmediate(resolve));
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  /**
   * Writes a stream of JSON-RPC answers as server-sent events. A failure before the first event is a JSON
   * answer (except for v0.3's `tasks/resubscribe`, always a stream); one after it an `error` event. A client
   * that goes away stops the writing, not the task: it may subscribe to it again.
   */
  private async stream(
    res: ServerResponse,
    answers: AsyncGenerator<unknown, void, undefined>,
    id: string | number | null,
    legacy: boolean,
    headers: Record<string, string[]>,
    alwaysStream: boolean,
  ): Promise<void> {
    let first: IteratorResult<unknown, void> | undefined;
    if (!alwaysStream) {
      try {
        first = await answers.next();
      } catch (error) {
        return writeJson(res, 200, this.errorEnvelope(id, error, legacy));
      }
    }
    res.writeHead(200, { ...headers, ...SSE_HEADERS });
    res.flushHeaders();
    this.streams.add(res);
    const gone = new Promise<"gone">((resolve) => res.once("close", () => resolve("gone")));
    const write = async (chunk: string): Promise<void> => {
      if (!res.write(chunk)) await Promise.race([new Promise((resolve) => res.once("drain", resolve)), gone]);
    };
    try {
      if (first !== undefined && first.done !== true) await write(formatSSEEvent(first.value));
      for (;;) {
        const next = await Promise.race([answers.next(), gone]);
        if (next === "gone" || next.done === true) break;
        await write(formatSSEEvent(next.value));
      }
    } catch (error) {
      if (!res.writableEnded) res.write(formatSSEErrorEvent(this.errorEnvelope(id, error, legacy)));
    } finally {
      this.streams.delete(res);
      if (!res.writableEnded) res.end();
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
  private originOf(request: RouteRequest): string {
    const busUrl = new URL(this.bus.url);
    const host = request.header("host");
    return host !== undefined && /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? `${busUrl.protocol}//${host}` : busUrl.origin;
  }
}
