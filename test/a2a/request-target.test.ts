/**
 * Which task or context an A2A request names (what decides, on a cluster node, which node answers it), read as the
 * SDK's transports read v1.0 and v0.3 requests.
 */
import { describe, expect, it } from "vitest";
import { requestTargetOf } from "../../src/a2a/request-target.js";

function request(method: string, params: unknown): unknown {
  return { jsonrpc: "2.0", id: 1, method, params };
}

const message = (fields: Record<string, unknown>): Record<string, unknown> => ({ messageId: "m1", role: "ROLE_USER", parts: [], ...fields });

describe("requestTargetOf", () => {
  it("reads the task of v1.0's task methods and the task, else the context, of its messages", () => {
    expect(requestTargetOf(request("GetTask", { id: "t1" }), false)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("CancelTask", { id: "t1" }), false)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("SubscribeToTask", { id: "t1" }), false)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("SendMessage", { message: message({ taskId: "t1", contextId: "c1" }) }), false)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("SendStreamingMessage", { message: message({ contextId: "c1" }) }), false)).toEqual({ contextId: "c1" });
    expect(requestTargetOf(request("ListTasks", { contextId: "c1" }), false)).toEqual({ contextId: "c1" });
  });

  it("reads v0.3's methods by their v0.3 names", () => {
    expect(requestTargetOf(request("tasks/get", { id: "t1" }), true)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("tasks/cancel", { id: "t1" }), true)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("tasks/resubscribe", { id: "t1" }), true)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("message/send", { message: { messageId: "m", role: "user", parts: [], taskId: "t1" } }), true)).toEqual({ taskId: "t1" });
    expect(requestTargetOf(request("message/stream", { message: { messageId: "m", role: "user", parts: [], contextId: "c1" } }), true)).toEqual({
      contextId: "c1",
    });
    // A v1.0 name spoken in v0.3 is no method there.
    expect(requestTargetOf(request("GetTask", { id: "t1" }), true)).toBeUndefined();
  });

  it("names nothing for a new context, another method, or a request it cannot read: those are answered where asked", () => {
    expect(requestTargetOf(request("SendMessage", { message: message({}) }), false)).toBeUndefined();
    expect(requestTargetOf(request("ListTasks", {}), false)).toBeUndefined();
    expect(requestTargetOf(request("GetExtendedAgentCard", {}), false)).toBeUndefined();
    expect(requestTargetOf(request("GetTask", { id: 42 }), false)).toEqual({ taskId: "42" });
    expect(requestTargetOf(request("GetTask", []), false)).toBeUndefined();
    expect(requestTargetOf("not a request", false)).toBeUndefined();
    expect(requestTargetOf(request("tasks/get", { id: { nested: true } }), true)).toBeUndefined();
  });
});
