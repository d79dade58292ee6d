/**
 * A loaded team made into agents: the bundled team routes as docs/agent-yaml.md says, the default agent carries
 * its own and the inlined agents' capability prompts, a delegated agent its own system prompt, model and
 * provider, each answering through a runtime.
 */
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { buildTeam, loadAgentTeam, mock, utilityTools, type PromptContext, type RuntimeParams } from "../../../src/index.js";
import { call, connect, envelope, register, until } from "../../bus/support.js";
import { startRuntimeBus } from "../../e2e/support.js";
import { folderWith } from "./support.js";

const BUNDLED_TEAM = fileURLToPath(new URL("../../../agents", import.meta.url));
const TOOLS = utilityTools();
const TOOL_NAMES = TOOLS.map((tool) => tool.name);

describe("the bundled team (agents/)", () => {
  it("loads with the utility tools and the mock provider alone, and routes every mode as documented", () => {
    const team = loadAgentTeam(BUNDLED_TEAM, { toolNames: TOOL_NAMES, providerIds: ["mock"] });

    const built = buildTeam(team, { providers: [mock()], tools: TOOLS });

    expect(built.defaultAgentId).toBe("orchestrator");
    expect(built.agents.map((agent) => agent.id)).toEqual(["orchestrator", "backend", "reviewer"]);
    expect(built.routes.map(({ agentId, routing, mode, reason, tools, inlinedInto }) => ({ agentId, routing, mode, reason, tools, inlinedInto }))).toEqual([
      {
        agentId: "orchestrator",
        routing: "auto",
        mode: "default",
        reason: "default: true",
        tools: ["current_time", "word_count", "delegate_to_agent"],
        inlinedInto: undefined,
      },
      { agentId: "backend", routing: "delegate", mode: "delegate", reason: "routing: delegate", tools: ["json_check", "calculate"], inlinedInto: undefined },
      { agentId: "frontend", routing: "inline", mode: "inline", reason: "routing: inline", tools: ["word_count"], inlinedInto: "orchestrator" },
      {
        agentId: "reviewer",
        routing: "auto",
        mode: "delegate",
        reason: "4 tools (> 3)",
        tools: ["diff_stats", "json_check", "word_count", "calculate"],
        inlinedInto: undefined,
      },
    ]);
    // The orchestrator offers what it merged: its own planning and frontend's ui-copy.
    expect(built.agents[0]!.capabilities).toEqual(["planning", "ui-copy"]);
  });
});

describe("the bundled team on a bus", () => {
  it("takes troupe://orchestrator, the initiator auto workflows default to: such a workflow still completes, and a task to it is answered by the agent", async () => {
    const team = loadAgentTeam(BUNDLED_TEAM, { toolNames: TOOL_NAMES, providerIds: ["mock"] });
    const built = buildTeam(team, { providers: [mock()], tools: TOOLS });
    const { bus } = await startRuntimeBus({ agents: built.agents, defaultAgentId: built.defaultAgentId });

    const created = await call(bus, "POST", "/sessions", {
      initiator: "troupe://orchestrator",
      participants: [{ agent_id: "troupe://backend", role: "worker" }],
      steps: [{ name: "design", required_agents: ["troupe://backend"], task: "Design POST /login" }],
      dispatch: "auto",
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const workflowId = created.body.session_id as string;
    await until(() => bus.sessionManager.getSession(workflowId)?.status !== "active");
    const summary = (await call(bus, "GET", `/sessions/${workflowId}/summary`)).body;
    expect(summary).toMatchObject({ status: "completed", totals: { tasks: 1, completed: 1, failed: 0 } });

    await register(bus, "cc://user");
    const user = await connect(bus, "cc://user");
    const sent = await call(
      bus,
      "POST",
      "/messages/send",
      envelope("cc://user", "troupe://orchestrator", { message_type: "task_request", payload: { prompt: "plan it" } }),
    );
    expect(sent.status, JSON.stringify(sent.body)).toBe(202);
    await until(() => user.received.some((message) => message.message_type === "task_response"));
    expect(user.received.find((message) => message.message_type === "task_response")).toMatchObject({
      sender: { agent_id: "troupe://orchestrator" },
      payload: { status: "completed", text: "Echo: plan it" },
    });
  });
});

describe("buildTeam", () => {
  it("answers each agent with its own system prompt, model and provider; inlined prompts join the default agent's", async () => {
    const folder = folderWith({
      "lead.yaml": [
        "name: lead",
        "default: true",
        "system_prompt: You lead.",
        "capabilities:",
        "  - name: plan",
        "    prompt: Plan first.",
        "    tools: [current_time]",
        "",
      ].join("\n"),
      "copy.yaml": [
        "name: copy",
        "description: Writes copy",
        "capabilities:",
        "  - name: ui-copy",
        "    prompt: Keep it short.",
        "    tools: [word_count]",
        "",
      ].join("\n"),
      "api.yaml": [
        "name: api",
        "provider: alpha",
        "model: big-model",
        "system_prompt: You design APIs.",
        "capabilities:",
        "  - name: design",
        "    prompt: Use JSON.",
        "",
      ].join("\n"),
    });
    const seen: Array<RuntimeParams & { agentId: string; provider: string }> = [];
    const recording = (provider: string) =>
      mock({
        id: provider,
        script: (ctx: PromptContext) => {
          seen.push({ ...ctx.runtimeParams, agentId: ctx.session.agentId, provider });
          return { text: `${provider} answered` };
        },
      });
    const team = loadAgentTeam(folder, { toolNames: TOOL_NAMES, providerIds: ["main", "alpha"] });
    const built = buildTeam(team, { providers: [recording("main"), recording("alpha")], tools: TOOLS });
    const { runtime } = await startRuntimeBus({ agents: built.agents, defaultAgentId: built.defaultAgentId });

    expect(built.routes.map((route) => [route.agentId, route.mode, route.reason])).toEqual([
      ["lead", "default", "default: true"],
      ["api", "delegate", "model big-model"],
      ["copy", "inline", "1 tool (≤ 3), no model, capability prompts 14 characters (< 2000)"],
    ]);
    expect((await runtime.bridge.tasksDelegate({ prompt: "hi" })).text).toBe("main answered");
    expect((await runtime.bridge.tasksDelegate({ agentId: "api", prompt: "hi" })).text).toBe("alpha answered");
    await runtime.bridge.tasksDelegate({ agentId: "api", prompt: "hi", runtimeParams: { model: "small-model" } });

    const apiPrompt = "You design APIs.\n\n## Capability: design\nUse JSON.";
    expect(seen).toEqual([
      {
        agentId: "lead",
        provider: "main",
        // The provider's default model: the file names none.
        model: "mock-1",
        systemPrompt: "You lead.\n\n## Capability: plan\nPlan first.\n\n## Capability: ui-copy (from copy: Writes copy)\nKeep it short.",
      },
      { agentId: "api", provider: "alpha", model: "big-model", systemPrompt: apiPrompt },
      // A prompt's runtimeParams win over the agent's model.
      { agentId: "api", provider: "alpha", model: "small-model", systemPrompt: apiPrompt },
    ]);
    expect(runtime.hasAgent("copy")).toBe(false);
  });

  it("gives the default agent no delegate_to_agent when nothing is delegated, and one over the workers given", () => {
    const folder = folderWith({ "solo.yaml": "name: solo\ncapabilities:\n  - name: maths\n    tools: [calculate]\n" });
    const team = loadAgentTeam(folder, { toolNames: TOOL_NAMES, providerIds: ["mock"] });

    const alone = buildTeam(team, { providers: [mock()], tools: TOOLS });
    const withWorker = buildTeam(team, { providers: [mock()], tools: TOOLS, delegateTargets: [{ id: "coder", description: "An ACP coding agent" }] });

    expect(alone.routes[0]!.tools).toEqual(["calculate"]);
    expect(withWorker.routes[0]!.tools).toEqual(["calculate", "delegate_to_agent"]);
  });
});
