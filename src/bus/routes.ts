/**
 * The bus's HTTP routes (SPEC §3.1), mounted on the server of `GET /health` and `POST /bridge/:tool`.
 * Bodies are validated where they are used; every error is a `BridgeError` answered by the server.
 */
import { z } from "zod";
import { BridgeError, sessionNotFound } from "../errors.js";
import { decoded, HttpAnswer, type HttpRoute } from "../server/http-server.js";
import type { CommunicationBus } from "./bus.js";
import {
  completionSchema,
  createSessionSchema,
  participantSchema,
  terminationSchema,
  workflowUpdateSchema,
  type WorkflowSession,
} from "../workflows/session-manager.js";
import { AGENT_TOKEN_HEADER } from "../protocol/headers.js";
import { parseWith } from "../validation.js";
import { badCursor, pageOf, pageRequestOf, type PageRequest } from "./pagination.js";
import { parseEventQuery } from "../events/event-filter.js";
import { serverSentEvents } from "../events/server-sent-events.js";
import { LAST_EVENT_ID_HEADER } from "../protocol/event-frames.js";
import { prometheusText, wantsPrometheus } from "./prometheus.js";
import { onWorkflowNode } from "./forwarded-routes.js";
import { NODE_ID } from "../cluster/node.js";

const contextBodySchema = z.strictObject({ shared_context: z.record(z.string(), z.unknown()) });
const summaryFormatSchema = z.enum(["json", "markdown"]);
const metricsFormatSchema = z.enum(["json", "prometheus"]);
/** `GET /sessions?order=`: newest first. Without it, oldest first on one node, by id on a cluster. */
const sessionOrderSchema = z.literal("newest");

/** A workflow session's change is answered once it is durable (docs/durability.md). */
async function durable<T>(bus: CommunicationBus, answer: T): Promise<T> {
  await bus.sessionManager.whenDurable();
  return answer;
}

/**
 * Every route of the bus. Agent ids in paths may be URL-encoded (`claude-code%3A%2F%2Fqa`) or not. On a cluster
 * node, the routes of one workflow answer for a workflow another node runs by asking that node (`onWorkflowNode`).
 */
export function busRoutes(bus: CommunicationBus): HttpRoute[] {
  const sessions = bus.sessionManager;
  return [
    {
      method: "POST",
      path: /^\/messages\/send$/,
      handle: async ({ readBody, header }) => new HttpAnswer(202, await bus.sendOverHttp(await readBody(), header(AGENT_TOKEN_HEADER))),
    },
    {
      method: "GET",
      // `send` is the POST route's: another method there is 405, not a message id.
      path: /^\/messages\/(?!send$)(.+)$/,
      handle: ({ params: [messageId], query }) => bus.findMessageStatus(decoded(messageId, "message_id"), query.get("sender") ?? undefined),
    },
    {
      method: "POST",
      path: /^\/agents\/register$/,
      handle: async ({ readBody, header }) => {
        const { agent_token, ...agent } = await bus.registerOverHttp(await readBody(), header(AGENT_TOKEN_HEADER));
        return new HttpAnswer(201, { success: true, agent, ...(agent_token === undefined ? {} : { agent_token }) });
      },
    },
    {
      method: "GET",
      path: /^\/agents$/,
      handle: ({ query }) => bus.agentPage(pageRequestOf(query)),
    },
    {
      method: "DELETE",
      path: /^\/agents\/(.+)$/,
      handle: async ({ params: [agentId], header }) => {
        const id = decoded(agentId, "agent_id");
        await bus.deregisterOverHttp(id, header(AGENT_TOKEN_HEADER));
        return { success: true, agent_id: id };
      },
    },
    {
      method: "POST",
      path: /^\/sessions$/,
      handle: async ({ readBody, client }) => {
        const body = parseWith(createSessionSchema, await readBody());
        bus.workflowOwners.check(client);
        const sessionId = sessions.createSession(body.initiator, body.participants, body.steps, body.shared_context, { dispatch: body.dispatch });
        bus.workflowOwners.add(client, sessionId);
        return durable(
          bus,
          new HttpAnswer(201, { success: true, session_id: sessionId, session: withNode(bus, sessions.getSession(sessionId) as WorkflowSession) }),
        );
      },
    },
    {
      method: "GET",
      path: /^\/sessions$/,
      handle: async ({ query }) => {
        const request = pageRequestOf(query);
        // On a cluster, every node's workflows, read from the store a page at a time (docs/cluster.md, "GET /sessions on any node").
        const node = query.get("node") ?? undefined;
        if (node !== undefined && bus.cluster === undefined) {
          throw new BridgeError("CONFIG", "node: this server is not a node of a cluster (GET /sessions lists its workflows without it)", { field: "node" });
        }
        const order = query.get("order");
        const newest = order !== null && parseWith(sessionOrderSchema, order, "order") === "newest";
        // Newest first is an order of what runs here (all in memory): one node's, or on a cluster this node's.
        if (newest && bus.cluster !== undefined && node !== bus.cluster.nodeId) {
          throw new BridgeError("CONFIG", `order: newest lists the workflows of the node asked; add node=${bus.cluster.nodeId}, or ask the other node`, {
            field: "order",
          });
        }
        const { items, next_cursor } =
          bus.cluster === undefined || newest
            ? pageOf(
                mapLazy(sessions.sessionViews(newest ? "newest" : "oldest"), (view) => withNode(bus, view)),
                request,
              )
            : await sessions.clusterSessionsPage({ ...keyPage(request), ...(node === undefined ? {} : { node: parseWith(nodeIdSchema, node, "node") }) });
        return { sessions: items, ...(next_cursor === undefined ? {} : { next_cursor }) };
      },
    },
    ...workflowRoutes(bus).map((route) => onWorkflowNode(route, (sessionId, request) => bus.forwardWorkflowRequest(sessionId, request))),
    {
      method: "POST",
      path: /^\/converse$/,
      handle: async ({ readBody, client }) => bus.converse(await readBody(), client),
    },
    {
      method: "GET",
      path: /^\/metrics$/,
      handle: async ({ query, header }) => {
        const format = query.get("format");
        const snapshot = bus.metricsSnapshot();
        if (!wantsPrometheus(format === null ? null : parseWith(metricsFormatSchema, format, "format"), header("accept"))) return snapshot;
        const { text, contentType } = await prometheusText(snapshot);
        return new HttpAnswer(200, text, contentType);
      },
    },
    {
      method: "GET",
      path: /^\/events$/,
      handle: ({ query, header, client }) =>
        serverSentEvents(bus.events, parseEventQuery(query, header(LAST_EVENT_ID_HEADER)), client, bus.options.closeGraceMs),
    },
  ];
}

/**
 * The routes of one workflow (`/sessions/:id…`, the id their first capture) as the node that runs it answers
 * them: `busRoutes` mounts them, and a cluster node answers with them what another node forwards.
 */
export function workflowRoutes(bus: CommunicationBus): HttpRoute[] {
  const sessions = bus.sessionManager;
  return [
    {
      method: "DELETE",
      path: /^\/sessions\/([^/]+)$/,
      handle: ({ params: [sessionId] }) => {
        const id = decoded(sessionId, "session_id");
        sessions.deleteSession(id);
        return durable(bus, { success: true, session_id: id });
      },
    },
    {
      method: "GET",
      path: /^\/sessions\/([^/]+)$/,
      handle: ({ params: [sessionId] }) => {
        const id = decoded(sessionId, "session_id");
        const session = sessions.getSession(id);
        if (session === undefined) throw sessionNotFound(id);
        return withNode(bus, session);
      },
    },
    {
      method: "POST",
      path: /^\/sessions\/([^/]+)\/participants$/,
      handle: async ({ params: [sessionId], readBody }) =>
        durable(bus, { success: true, session: sessions.addParticipant(decoded(sessionId, "session_id"), parseWith(participantSchema, await readBody())) }),
    },
    {
      method: "DELETE",
      path: /^\/sessions\/([^/]+)\/participants\/(.+)$/,
      handle: ({ params: [sessionId, agentId] }) =>
        durable(bus, { success: true, session: sessions.removeParticipant(decoded(sessionId, "session_id"), decoded(agentId, "agent_id")) }),
    },
    {
      method: "PATCH",
      path: /^\/sessions\/([^/]+)\/workflow$/,
      handle: async ({ params: [sessionId], readBody }) =>
        durable(bus, { success: true, session: sessions.updateWorkflow(decoded(sessionId, "session_id"), parseWith(workflowUpdateSchema, await readBody())) }),
    },
    {
      method: "PATCH",
      path: /^\/sessions\/([^/]+)\/context$/,
      handle: async ({ params: [sessionId], readBody }) => {
        const { shared_context } = parseWith(contextBodySchema, await readBody());
        return durable(bus, { success: true, session: sessions.updateSharedContext(decoded(sessionId, "session_id"), shared_context) });
      },
    },
    {
      method: "POST",
      path: /^\/sessions\/([^/]+)\/complete$/,
      handle: async ({ params: [sessionId], readBody }) =>
        durable(bus, { success: true, session: sessions.completeSession(decoded(sessionId, "session_id"), parseWith(completionSchema, await readBody())) }),
    },
    {
      method: "POST",
      path: /^\/sessions\/([^/]+)\/terminate$/,
      handle: async ({ params: [sessionId], readBody }) =>
        durable(bus, { success: true, session: sessions.terminateSession(decoded(sessionId, "session_id"), parseWith(terminationSchema, await readBody())) }),
    },
    {
      method: "GET",
      path: /^\/sessions\/([^/]+)\/summary$/,
      handle: ({ params: [sessionId], query }) => {
        const format = parseWith(summaryFormatSchema, query.get("format") ?? "json", "format");
        const id = decoded(sessionId, "session_id");
        if (format === "json") return bus.aggregator.summarize(id, { format });
        return { session_id: id, format, markdown: bus.aggregator.summarize(id, { format }) };
      },
    },
  ];
}

/** A workflow this node runs, as its routes answer it: on a cluster, naming this node (as `GET /sessions` lists it). */
function withNode<T extends object>(bus: CommunicationBus, session: T): T | (T & { node: string }) {
  return bus.cluster === undefined ? session : { ...session, node: bus.cluster.nodeId };
}

/** Lazy items (a page makes only its own) that each come out through `then`. */
function* mapLazy<T, U>(items: Iterable<() => T>, then: (item: T) => U): Generator<() => U> {
  for (const make of items) yield () => then(make());
}

/** A node's id, as `GET /sessions?node=` takes it. */
const nodeIdSchema = z.string().regex(NODE_ID, "a node id: 1 to 64 letters, digits, '.', '_' or '-'");

/** A page of a listing in key order: a cursor of another listing (an offset) is not one it gave. */
function keyPage({ offset, after, limit }: PageRequest): { after?: string; limit: number } {
  if (offset !== 0) throw badCursor();
  return { ...(after === undefined ? {} : { after }), limit };
}
