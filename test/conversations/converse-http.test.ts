/**
 * `POST /converse` on the bus: the key rules of every route, the body validated and bounded, and the
 * conversations one client may start.
 */
import { describe, expect, it } from "vitest";
import { call, startBus } from "../bus/support.js";
import { heard, settle, startTeam, teamAgent } from "./support.js";

async function startConverseBus(busOptions: Parameters<typeof startBus>[0] = {}, runtimeOptions: Parameters<typeof startTeam>[0] = {}) {
  const { runtime, clock } = await startTeam({ agents: [teamAgent("orchestrator"), teamAgent("backend")], defaultAgentId: "orchestrator", ...runtimeOptions });
  const bus = await startBus({ runtime, ...busOptions });
  return { clock, bus };
}

describe("POST /converse", () => {
  it("answers a message with the agent, its session, the text and the handoffs; the thread follows up", async () => {
    const { bus } = await startConverseBus();

    const first = await call(bus, "POST", "/converse", { userId: "ada", threadId: "t1", text: "@backend the schema" });
    const followUp = await call(bus, "POST", "/converse", { userId: "ada", threadId: "t1", text: "and the index" });

    expect(first).toEqual({
      status: 200,
      body: { agentId: "backend", sessionId: expect.any(String), text: heard("backend", "@backend the schema", 0), handoffs: [] },
    });
    expect(followUp.body).toMatchObject({ agentId: "backend", sessionId: first.body.sessionId, text: heard("backend", "and the index", 2) });
  });

  it("needs the bus key like every route but GET /health", async () => {
    const { bus } = await startConverseBus();
    const body = { userId: "ada", text: "hello" };

    expect((await call(bus, "POST", "/converse", body, { "x-agent-api-key": "" })).body.error).toMatchObject({
      type: "AUTH",
      message: "Missing x-agent-api-key header",
    });
    expect(await call(bus, "POST", "/converse", body, { "x-agent-api-key": "wrong" })).toMatchObject({
      status: 401,
      body: { error: { type: "AUTH", message: "Invalid API key" } },
    });
  });

  it("answers bad bodies with 400 naming the field, and oversized ones with 413", async () => {
    const { bus } = await startConverseBus({ maxBodyBytes: 4096 }, { maxPromptBytes: 100 });

    expect(await call(bus, "POST", "/converse", "{ not json")).toMatchObject({
      status: 400,
      body: { error: { type: "CONFIG", details: { field: "(body)" } } },
    });
    expect(await call(bus, "POST", "/converse", { text: "hello" })).toMatchObject({ status: 400, body: { error: { details: { field: "userId" } } } });
    expect(await call(bus, "POST", "/converse", { userId: 7, text: "hello" })).toMatchObject({
      status: 400,
      body: { error: { details: { field: "userId" } } },
    });
    expect(await call(bus, "POST", "/converse", { userId: "ada", text: "hello", agentId: "backend" })).toMatchObject({
      status: 400,
      body: { error: { details: { field: "agentId" } } },
    });
    expect(await call(bus, "POST", "/converse", [1, 2])).toMatchObject({ status: 400, body: { error: { type: "CONFIG" } } });
    expect(await call(bus, "POST", "/converse", { userId: "ada", text: "x".repeat(101) })).toMatchObject({
      status: 413,
      body: { error: { type: "CONFIG", details: { field: "text", limitBytes: 100 } } },
    });
    expect(await call(bus, "POST", "/converse", { userId: "ada", text: "x".repeat(5000) })).toMatchObject({ status: 413 });
    expect(await call(bus, "GET", "/converse")).toMatchObject({ status: 405 });
  });

  it("answers 404 when no agent takes the message", async () => {
    const { bus } = await startConverseBus({}, { agents: [teamAgent("orchestrator", { trigger: "mention" })] });

    expect(await call(bus, "POST", "/converse", { userId: "ada", text: "anyone?" })).toMatchObject({ status: 404, body: { error: { type: "NOT_FOUND" } } });
  });

  it("lets one client start at most maxConversationsPerClient live conversations (429), and go on talking in them", async () => {
    const { clock, bus } = await startConverseBus({ maxConversationsPerClient: 1 }, { agents: [teamAgent("orchestrator", { idleTimeoutMinutes: 1 })] });
    await call(bus, "POST", "/converse", { userId: "ada", text: "hello" });

    const refused = await call(bus, "POST", "/converse", { userId: "grace", text: "hello" });
    const again = await call(bus, "POST", "/converse", { userId: "ada", text: "still me" });

    expect(refused).toMatchObject({ status: 429, body: { error: { type: "CAPACITY", details: { limit: 1 } } } });
    expect(again.status).toBe(200);

    // Once ada's conversation ended, the client may start another.
    clock.increment(60_000);
    await settle();
    expect((await call(bus, "POST", "/converse", { userId: "grace", text: "hello" })).status).toBe(200);
  });
});
