/**
 * Two troupe servers federated through A2A: server B serves its agents over A2A, server A uses one of them
 * as its own agent (`a2aAgents` with B's URL and key), and an agent on A delegates to it with `ctx.ask`.
 */
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, type Agent, type AskReply } from "../../src/index.js";
import { call } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";

const KEY_B = "key-of-server-b";

describe("two troupe servers federated through A2A", () => {
  it("lets an agent on one delegate to an agent on the other, in one context per asking session", async () => {
    // Server B: a writer that answers with its turn in the conversation, streamed in pieces.
    const writer = createMultiProviderAgent({
      id: "writer",
      providers: [mock({ script: (ctx) => ({ text: `Draft ${ctx.history.length / 2 + 1} of ${ctx.prompt}`, usage: { inputTokens: 3, outputTokens: 4 } }) })],
    });
    const b = await startRuntimeBus({ agents: [writer] }, { apiKey: KEY_B });
    // Server A: a lead that asks B's writer twice, through A's agent `remote-writer`.
    const asked: AskReply[] = [];
    const lead: Agent = {
      id: "lead",
      prompt: async (ctx) => {
        asked.push(await ctx.ask("remote-writer", `the ${ctx.prompt}`));
        asked.push(await ctx.ask("remote-writer", "the outro"));
        return { text: asked.map((answer) => answer.text).join(" / ") };
      },
    };
    const a = await startRuntimeBus({
      agents: [lead],
      a2aAgents: [{ id: "remote-writer", url: `${b.bus.url}/a2a/writer/`, headers: { "x-agent-api-key": KEY_B } }],
    });

    const delegated = await call(a.bus, "POST", "/bridge/tasks_delegate", { agentId: "lead", prompt: "intro" });

    expect(delegated.status).toBe(200);
    expect(delegated.body.text).toBe("Draft 1 of the intro / Draft 2 of the outro");
    expect((await a.runtime.bridge.agentsDiscover({})).agents.find((agent) => agent.id === "remote-writer")).toMatchObject({
      name: "writer",
      status: "ready",
      a2a: { card: { securitySchemes: { troupeBusKey: { apiKeySecurityScheme: { name: "x-agent-api-key" } } } } },
    });
    // On B, both asks were one A2A context: one bridge session of the writer (it expires there: A2A cannot close a context).
    expect(b.runtime.health().sessions.total).toBe(1);
  });

  it("refuses A when B's key is wrong: the ask fails with AUTH", async () => {
    const writer = createMultiProviderAgent({ id: "writer", providers: [mock({ script: [{ text: "never" }] })] });
    const b = await startRuntimeBus({ agents: [writer] }, { apiKey: KEY_B });
    const lead: Agent = { id: "lead", prompt: async (ctx) => ({ text: (await ctx.ask("remote-writer", "hi")).text }) };
    const a = await startRuntimeBus({
      agents: [lead],
      a2aAgents: [{ id: "remote-writer", url: `${b.bus.url}/a2a/writer/`, headers: { "x-agent-api-key": "wrong" } }],
    });

    const delegated = await call(a.bus, "POST", "/bridge/tasks_delegate", { agentId: "lead", prompt: "go" });

    expect(delegated).toMatchObject({ status: 401, body: { error: { type: "AUTH" } } });
  });
});
