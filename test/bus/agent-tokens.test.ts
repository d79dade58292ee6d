/**
 * Agent identity with `agentAuth: "token"` (SPEC §3.8): registration answers an `agent_token`, and the bus key
 * alone cannot connect as, take over, deregister, re-register or send as another agent; and acks and replies
 * count only from the agent a message went to.
 */
import { describe, expect, it } from "vitest";
import { resolveBusOptions } from "../../src/bus/options.js";
import { call, connect, envelope, flush, rawConnect, startBus, statusOf, TEST_KEY, until, upgradeStatus } from "./support.js";

const A = "codex://alice";
const B = "opencode://bob";

async function registerWithToken(bus: Awaited<ReturnType<typeof startBus>>, agentId: string): Promise<string> {
  const answer = await call(bus, "POST", "/agents/register", { agent_descriptor: { agent_id: agentId } });
  expect(answer.status).toBe(201);
  return answer.body.agent_token as string;
}

describe("agent tokens", () => {
  it("is the default off loopback; the shared key is the default on loopback", () => {
    expect(resolveBusOptions({ host: "0.0.0.0", apiKey: "k", env: {} }).agentAuth).toBe("token");
    expect(resolveBusOptions({ host: "127.0.0.1", env: {} }).agentAuth).toBe("shared");
    expect(resolveBusOptions({ host: "127.0.0.1", agentAuth: "token", env: {} }).agentAuth).toBe("token");
  });

  it("lets only the agent's own token open its socket", async () => {
    const bus = await startBus({ agentAuth: "token" });
    const tokenA = await registerWithToken(bus, A);
    const tokenB = await registerWithToken(bus, B);
    const query = `?agent_id=${encodeURIComponent(B)}`;
    expect(await upgradeStatus(bus, query)).toBe(401);
    expect(await upgradeStatus(bus, query, { "x-agent-api-key": TEST_KEY, "x-agent-token": tokenA })).toBe(401);

    const bob = await connect(bus, B, { token: tokenB });
    await call(bus, "POST", "/messages/send", envelope(A, B), { "x-agent-token": tokenA });
    await until(() => bob.received.length === 1);
  });

  it("refuses sending as, deregistering and re-registering another agent with the key alone", async () => {
    const bus = await startBus({ agentAuth: "token" });
    const tokenA = await registerWithToken(bus, A);
    const tokenB = await registerWithToken(bus, B);

    const forged = await call(bus, "POST", "/messages/send", envelope(A, B));
    expect(forged.status).toBe(403);
    expect(forged.body.error).toMatchObject({ type: "AUTH", details: { agentId: A } });
    expect((await call(bus, "POST", "/messages/send", envelope(A, B), { "x-agent-token": tokenB })).status).toBe(403);
    expect((await call(bus, "POST", "/messages/send", envelope(A, B), { "x-agent-token": tokenA })).status).toBe(202);

    expect((await call(bus, "POST", "/agents/register", { agent_descriptor: { agent_id: B } })).status).toBe(403);
    const renewed = await call(bus, "POST", "/agents/register", { agent_descriptor: { agent_id: B } }, { "x-agent-token": tokenB });
    expect(renewed.status).toBe(201);
    expect(renewed.body.agent_token).toBeUndefined();

    expect((await call(bus, "DELETE", `/agents/${encodeURIComponent(B)}`)).status).toBe(403);
    expect((await call(bus, "DELETE", `/agents/${encodeURIComponent(B)}`, undefined, { "x-agent-token": tokenB })).status).toBe(200);
  });

  it("takes a token the agent chose at registration", async () => {
    const bus = await startBus({ agentAuth: "token" });
    const chosen = "my-own-token-0123456789";
    const answer = await call(bus, "POST", "/agents/register", { agent_descriptor: { agent_id: B, agent_token: chosen } });
    expect(answer.body.agent_token).toBe(chosen);
    expect(answer.body.agent).not.toHaveProperty("agent_token");
    expect(JSON.stringify((await call(bus, "GET", "/agents")).body)).not.toContain(chosen);
    await connect(bus, B, { token: chosen });
  });
});

describe("acks and replies count only from the agent a message went to", () => {
  it("ignores another agent's ack of a message delivered to someone else", async () => {
    const bus = await startBus();
    await call(bus, "POST", "/agents/register", { agent_id: A });
    await call(bus, "POST", "/agents/register", { agent_id: B });
    const alice = await rawConnect(bus, A);
    const bob = await rawConnect(bus, B);
    const message = envelope(B, A);
    await call(bus, "POST", "/messages/send", message);
    await until(() => alice.frames.length === 1);
    bob.ack(message["message_id"] as string);
    await flush();
    expect(statusOf(bus, message["message_id"] as string)).toBe("delivered");
    alice.ack(message["message_id"] as string);
    await until(() => statusOf(bus, message["message_id"] as string) === "acknowledged");
  });

  it("answers a sync request only with its recipient's reply, not with a third agent's", async () => {
    const bus = await startBus();
    for (const agentId of [A, B, "cc://mallory"]) await call(bus, "POST", "/agents/register", { agent_id: agentId });
    const bob = await rawConnect(bus, B);
    const request = envelope(A, B, { routing: { delivery_mode: "sync", timeout: "10s" } });
    const answered = call(bus, "POST", "/messages/send", request);
    await until(() => bob.frames.length === 1);
    const reply = (from: string, text: string) =>
      envelope(from, A, { message_type: "task_response", payload: { text }, metadata: { in_reply_to: request["message_id"] } });
    expect((await call(bus, "POST", "/messages/send", reply("cc://mallory", "forged"))).status).toBe(202);
    expect((await call(bus, "POST", "/messages/send", reply(B, "real"))).status).toBe(202);
    expect((await answered).body.response.payload).toEqual({ text: "real" });
  });
});
