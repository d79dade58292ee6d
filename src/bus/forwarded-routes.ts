/**
 * The workflow routes (`/sessions/:id…`) on any node of a cluster (docs/cluster.md, "Workflow routes on any
 * node"): a request for a workflow that another node runs goes to that node, which answers it with the same
 * route as if it had been asked itself; its answer, or its BridgeError, comes back unchanged.
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { decoded, HttpAnswer, HttpStream, RouteQuery, type HttpRoute } from "../server/http-server.js";

/** A request for a workflow as it travels to the workflow's node: which route (method and path pattern), its captures, query and body. */
const forwardedRequestSchema = z.strictObject({
  method: z.enum(["GET", "POST", "PATCH", "DELETE"]),
  path: z.string(),
  params: z.array(z.string()),
  query: z.string(),
  body: z.unknown().optional(),
});

/** A forwarded request (see `forwardedRequestSchema`). */
export type ForwardedRequest = z.infer<typeof forwardedRequestSchema>;

/** How a route's answer travels back: its status and its JSON body. */
const forwardedAnswerSchema = z.strictObject({ status: z.number().int(), body: z.unknown() });

/**
 * Sends a request for workflow `sessionId` to the node that runs it: that node's answer, or `undefined` when it
 * is answered here (it runs here, no cluster, or no record names another node).
 */
export type WorkflowForwarder = (sessionId: string, request: ForwardedRequest) => Promise<{ answer: unknown } | undefined>;

/**
 * Route `route`, whose first capture is a workflow id, answered on the node that runs the workflow: here, or by
 * that node through `forward`. A body (POST, PATCH) is read here and travels with the request.
 */
export function onWorkflowNode(route: HttpRoute, forward: WorkflowForwarder): HttpRoute {
  return {
    ...route,
    handle: async (request) => {
      const sessionId = decoded(request.params[0], "session_id");
      const takesBody = route.method === "POST" || route.method === "PATCH";
      const body = takesBody ? await request.readBody() : undefined;
      const forwarded = await forward(sessionId, {
        method: route.method,
        path: route.path.source,
        params: request.params,
        query: request.query.toString(),
        ...(takesBody ? { body } : {}),
      });
      if (forwarded === undefined) return route.handle(takesBody ? { ...request, readBody: () => Promise.resolve(body) } : request);
      const parsed = forwardedAnswerSchema.safeParse(forwarded.answer);
      if (!parsed.success) throw new BridgeError("INTERNAL", `The node of workflow ${sessionId} answered something that is not a route's answer`);
      return parsed.data.status === 200 ? parsed.data.body : new HttpAnswer(parsed.data.status, parsed.data.body);
    },
  };
}

/**
 * Answers a request another node forwarded (`from`) with the route of `routes` it names, exactly as that route
 * answers its own HTTP requests: its errors are thrown as they are, for the asking node to answer.
 */
export async function answerForwarded(routes: readonly HttpRoute[], input: unknown, from: string): Promise<z.infer<typeof forwardedAnswerSchema>> {
  const parsed = forwardedRequestSchema.safeParse(input);
  if (!parsed.success) throw new BridgeError("INTERNAL", `Node ${from} forwarded a request that is not a workflow route's`);
  const request = parsed.data;
  const route = routes.find((candidate) => candidate.method === request.method && candidate.path.source === request.path);
  if (route === undefined) throw new BridgeError("INTERNAL", `Node ${from} forwarded ${request.method} ${request.path}, which is no workflow route here`);
  const answer: unknown = await route.handle({
    params: request.params,
    query: new RouteQuery(request.query),
    readBody: () => Promise.resolve(request.body),
    header: () => undefined,
    client: `node ${from}`,
    // A workflow route does not outlive its node request: nothing to abort.
    signal: () => new AbortController().signal,
  });
  if (answer instanceof HttpStream || (answer instanceof HttpAnswer && answer.contentType !== undefined)) {
    throw new BridgeError("INTERNAL", `${request.method} ${request.path} answers a stream or text, which cannot be forwarded`);
  }
  return answer instanceof HttpAnswer ? { status: answer.status, body: answer.body } : { status: 200, body: answer };
}
