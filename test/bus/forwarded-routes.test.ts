/**
 * A workflow route forwarded between cluster nodes (src/bus/forwarded-routes.ts), without the engines: the asking
 * node sends the route, its captures, query and body; the workflow's node answers with the same route; the answer
 * comes back as the route gave it. The engines' test is test/cluster/workflow-routes.test.ts.
 */
import { describe, expect, it } from "vitest";
import { BridgeError } from "../../src/errors.js";
import { answerForwarded, onWorkflowNode, type ForwardedRequest } from "../../src/bus/forwarded-routes.js";
import { HttpAnswer, type HttpRoute, type RouteRequest } from "../../src/server/http-server.js";

/** A route that echoes what it was asked, as the workflow's node would answer it. */
const echo: HttpRoute = {
  method: "PATCH",
  path: /^\/sessions\/([^/]+)\/workflow$/,
  handle: async ({ params, query, readBody }) => ({ params, step: query.get("step"), body: await readBody() }),
};

const created: HttpRoute = { method: "POST", path: /^\/sessions\/([^/]+)\/made$/, handle: () => new HttpAnswer(201, { made: true }) };

function requestOf(params: string[], query: string, body: unknown): RouteRequest {
  return {
    params,
    query: new URLSearchParams(query),
    readBody: () => Promise.resolve(body),
    header: () => undefined,
    client: "127.0.0.1",
    signal: () => new AbortController().signal,
  };
}

/** Two nodes in one: what the first forwards, the second answers with `routes`. */
function forwardTo(routes: HttpRoute[], sent: ForwardedRequest[]) {
  return async (_sessionId: string, request: ForwardedRequest) => {
    sent.push(request);
    return { answer: JSON.parse(JSON.stringify(await answerForwarded(routes, JSON.parse(JSON.stringify(request)), "node-a"))) as unknown };
  };
}

describe("a forwarded workflow route", () => {
  it("is answered by the workflow's node with the same route, its captures, query and body", async () => {
    const sent: ForwardedRequest[] = [];
    const route = onWorkflowNode(echo, forwardTo([echo], sent));
    const answer = await route.handle(requestOf(["wf%201"], "step=review", { current_step: "review" }));
    expect(answer).toEqual({ params: ["wf%201"], step: "review", body: { current_step: "review" } });
    expect(sent).toEqual([{ method: "PATCH", path: echo.path.source, params: ["wf%201"], query: "step=review", body: { current_step: "review" } }]);
  });

  it("keeps a status other than 200", async () => {
    const answer = await onWorkflowNode(created, forwardTo([created], [])).handle(requestOf(["wf"], "", {}));
    expect(answer).toEqual(new HttpAnswer(201, { made: true }));
  });

  it("is answered here, with the body read once, when the workflow runs here", async () => {
    let reads = 0;
    const route = onWorkflowNode(echo, () => Promise.resolve(undefined));
    const request = requestOf(["wf"], "", { current_step: "design" });
    const answer = await route.handle({ ...request, readBody: () => ((reads += 1), request.readBody()) });
    expect(answer).toMatchObject({ body: { current_step: "design" } });
    expect(reads).toBe(1);
  });

  it("throws the workflow's node's error as it is", async () => {
    const refusing: HttpRoute = { ...echo, handle: () => Promise.reject(new BridgeError("CONFIG", "current_step: not a step", { field: "current_step" })) };
    await expect(answerForwarded([refusing], { method: "PATCH", path: echo.path.source, params: ["wf"], query: "" }, "node-b")).rejects.toMatchObject({
      type: "CONFIG",
      details: { field: "current_step" },
    });
  });

  it("is INTERNAL when it names no workflow route of the node asked, or is not a forwarded request", async () => {
    await expect(answerForwarded([echo], { method: "GET", path: echo.path.source, params: ["wf"], query: "" }, "node-b")).rejects.toMatchObject({
      type: "INTERNAL",
    });
    await expect(answerForwarded([echo], { envelope: {} }, "node-b")).rejects.toMatchObject({ type: "INTERNAL" });
  });
});
