/**
 * `delegate_to_agent`: the model names an agent of its enum and a task; the tool asks that agent through the
 * bus's typed delivery (`ctx.ask`), so a delegated agent of a team and a remote WebSocket agent answer alike.
 */
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, delegateToAgentTool, mock, type Agent, type MessageEnvelope } from "../../src/index.js";
import type { ToolContext } from "../../src/tools/tool.js";
import { connect, register } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";

const QA = "claude-code://qa";

describe("delegate_to_agent", () => {
  it("offers the agents as an enum and a standalone task, and refuses an agent it does not list, naming the field", () => {
    const tool = delegateToAgentTool([{ id: "backend", description: "Builds the APIs" }, { id: QA }]);

    expect(tool.name).toBe("delegate_to_agent");
    expect(tool.description).toContain("Agents: backend: Builds the APIs; claude-code://qa.");
    expect(tool.inputSchema).toMatchObject({
      type: "object",
      properties: { agent: { type: "string", enum: ["backend", QA] }, task: { type: "string", minLength: 1 } },
      required: ["agent", "task"],
      additionalProperties: false,
    });
    expect(tool.parse({ agent: "backend", task: " Design it " })).toEqual({ agent: "backend", task: "Design it" });
    expect(() => tool.parse({ agent: "frontend", task: "x" })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "agent" }) }),
    );
  });

  it("refuses to be made over no agent, or over one agent twice", () => {
    expect(() => delegateToAgentTool([])).toThrow(
      expect.objectContaining({ type: "CONFIG", message: "delegate_to_agent: needs at least one agent to delegate to" }),
    );
    expect(() => delegateToAgentTool([{ id: "a" }, { id: "a" }])).toThrow(
      expect.objectContaining({ type: "CONFIG", message: "delegate_to_agent: agent a is listed twice" }),
    );
  });

  it("hands tasks to an in-process agent and to a remote WebSocket agent through the bus, answering their text", async () => {
    const tool = delegateToAgentTool([{ id: "backend" }, { id: QA }]);
    const backend = createMultiProviderAgent({ id: "backend", providers: [mock({ script: (ctx) => ({ text: `backend did: ${ctx.prompt}` }) })] });
    // What the tool loop does with a call of the model: parse its arguments, run the tool with the prompt's context.
    const lead: Agent = {
      id: "lead",
      prompt: async (ctx) => {
        const toolContext: ToolContext = {
          session: ctx.session,
          agentId: "lead",
          requestId: ctx.requestId,
          callId: "call-1",
          signal: ctx.signal,
          ask: ctx.ask,
        };
        const answers = await Promise.all([
          tool.execute(tool.parse({ agent: "backend", task: "Design the login endpoint" }), toolContext),
          tool.execute(tool.parse({ agent: QA, task: "Review the login endpoint" }), { ...toolContext, callId: "call-2" }),
        ]);
        return { text: answers.join(" | ") };
      },
    };
    const { bus, runtime } = await startRuntimeBus({ agents: [lead, backend] });
    await register(bus, QA);
    const inbox: MessageEnvelope[] = [];
    await connect(bus, QA, {
      onMessage: async (message, context) => {
        inbox.push(message);
        await context.reply({ text: "LGTM" });
      },
    });

    const result = await runtime.bridge.tasksDelegate({ agentId: "lead", prompt: "ship login" });

    expect(result.text).toBe("backend did: Design the login endpoint | LGTM");
    expect(inbox).toHaveLength(1);
    expect(inbox[0]).toMatchObject({ sender: { agent_id: "troupe://lead" }, message_type: "task_request", payload: { prompt: "Review the login endpoint" } });
  });
});
