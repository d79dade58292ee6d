/**
 * troupe using a remote A2A agent (docs/a2a.md): an agent built with the SDK's server side (./sdk-agent.ts,
 * a real HTTP server on 127.0.0.1) configured in `createRuntime({ a2aAgents })`, used through the bridge, in
 * a workflow step and through `ctx.ask` (what `delegate_to_agent` calls); its failures mapped to BridgeError
 * types: a crash and an unreachable agent TRANSPORT, a 401 AUTH, a failed task UPSTREAM.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createRuntime, type Agent, type AskReply, type Runtime, type RuntimeEvent } from "../../src/index.js";
import { loadServerConfig } from "../../src/cli/config.js";
import { call, until } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";
import { rejectionOf } from "../support/runtime.js";
import { SdkAgent } from "./sdk-agent.js";

const runtimes: Runtime[] = [];
const directories: string[] = [];

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** A started runtime (stopped after the test) whose agent `weather` is the remote A2A agent at `url`. */
async function runtimeUsing(url: string, headers?: Record<string, string>): Promise<Runtime> {
  const runtime = createRuntime({ a2aAgents: [{ id: "weather", url, ...(headers ? { headers } : {}) }] });
  runtimes.push(runtime);
  await runtime.start();
  return runtime;
}

/** The first event of the runtime that `matches`. */
function nextEvent(runtime: Runtime, matches: (event: RuntimeEvent) => boolean): Promise<RuntimeEvent> {
  return new Promise((resolve) => {
    const stop = runtime.on("*", (event) => {
      if (!matches(event)) return;
      stop();
      resolve(event);
    });
  });
}

describe("a remote A2A agent as a troupe agent", () => {
  it("is an agent actor that goes online once its card is fetched, and agents_discover shows the card", async () => {
    const remote = await SdkAgent.start();
    const runtime = await runtimeUsing(remote.url);

    const { agents } = await runtime.bridge.agentsDiscover({ capability: "weather" });

    expect(runtime.agentState("weather")).toBe("ready");
    expect(agents).toEqual([
      {
        id: "weather",
        name: "Weather agent",
        description: "Answers about the weather",
        capabilities: ["forecast", "weather"],
        status: "ready",
        a2a: { url: remote.url, card: expect.objectContaining({ name: "Weather agent", skills: [expect.objectContaining({ id: "forecast" })] }) },
      },
    ]);
    expect((await runtime.bridge.health()).executors).toContain("a2a");
  });

  it("maps a session to one context: each prompt is a message, its artifact's pieces stream as deltas", async () => {
    const remote = await SdkAgent.start();
    const runtime = await runtimeUsing(remote.url);
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "weather" });
    const deltas: string[] = [];

    const first = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Rain in Oslo?" }, { onDelta: (delta) => deltas.push(delta) });
    const second = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "And tomorrow?" });
    const other = await runtime.bridge.tasksDelegate({ agentId: "weather", prompt: "Sun in Rome?" });

    expect(first).toMatchObject({ text: "Echo: Rain in Oslo?", stopReason: "end_turn" });
    expect(deltas).toEqual(["Echo: ", "Rain ", "in ", "Oslo?"]);
    expect(second.text).toBe("Echo: And tomorrow? (turn 2)");
    expect(other.text).toBe("Echo: Sun in Rome?");
    const [one, two, three] = remote.log.messages;
    expect(two!.contextId).toBe(one!.contextId);
    expect(three!.contextId).not.toBe(one!.contextId);
  });

  it("streams without streaming too: an agent whose card says no answers in one piece", async () => {
    const remote = await SdkAgent.start({ streaming: false });
    const runtime = await runtimeUsing(remote.url);
    const deltas: string[] = [];

    const reply = await runtime.bridge.tasksDelegate({ agentId: "weather", prompt: "Fog?" }, { onDelta: (delta) => deltas.push(delta) });

    expect(reply.text).toBe("Echo: Fog?");
    expect(deltas).toEqual(["Echo: Fog?"]);
  });

  it("answers input_required when the task waits for input, and sends the next prompt into that task", async () => {
    const remote = await SdkAgent.start();
    const runtime = await runtimeUsing(remote.url);
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "weather" });

    const asked = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "ask" });
    const answered = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Lyon" });

    expect(asked).toMatchObject({ text: "Which city?", stopReason: "input_required" });
    expect(answered).toMatchObject({ text: "Weather in Lyon: sunny", stopReason: "end_turn" });
    expect(remote.log.messages[1]!.taskId).toBe(remote.log.messages[0]!.taskId);
  });

  it("cancels the remote task (tasks/cancel) when the prompt is cancelled", async () => {
    const remote = await SdkAgent.start();
    const runtime = await runtimeUsing(remote.url);
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "weather" });

    const rejection = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "wait for it" }));
    await until(() => remote.log.messages.length === 1);
    await runtime.bridge.sessionsCancel({ sessionId });

    expect((await rejection).type).toBe("CANCELLED");
    await until(() => remote.log.cancelled.length === 1);
    expect(remote.log.cancelled).toEqual([remote.log.messages[0]!.taskId]);
    expect((await runtime.bridge.sessionsStatus({ sessionId })).status).toBe("idle");
  });

  it("fails a prompt whose task failed with UPSTREAM, and the session goes on", async () => {
    const remote = await SdkAgent.start();
    const runtime = await runtimeUsing(remote.url);
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "weather" });

    const error = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "fail" }));
    const after = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "still there?" });

    expect(error).toMatchObject({
      type: "UPSTREAM",
      message: "A2A agent weather failed the task: The forecast service is down",
      details: { sessionValid: true },
    });
    expect(after.text).toBe("Echo: still there? (turn 2)");
  });

  it("fails with TRANSPORT when the agent crashes mid-task, goes offline, and stays TRANSPORT while unreachable", async () => {
    const remote = await SdkAgent.start();
    const runtime = await runtimeUsing(remote.url);
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "weather" });
    const firstDelta = nextEvent(runtime, (event) => event.type === "prompt.delta");
    const offline = nextEvent(runtime, (event) => event.type === "agent.offline");

    const rejection = rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "hang on" }));
    await firstDelta;
    await remote.crash();

    expect(await rejection).toMatchObject({ type: "TRANSPORT", details: { agentId: "weather" } });
    expect(await offline).toMatchObject({ agentId: "weather", kind: "a2a", unavailable: false });
    expect((await runtime.bridge.agentsDiscover({})).agents[0]!.status).toBe("unavailable");
    const unreachable = await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "weather" }));
    expect(unreachable).toMatchObject({ type: "TRANSPORT", message: expect.stringContaining("cannot be reached") });
  });

  it("starts with an agent it cannot reach: offline, and TRANSPORT for its sessions", async () => {
    const gone = await SdkAgent.start();
    const url = gone.url;
    await gone.close();
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    try {
      const runtime = await runtimeUsing(url);

      expect(runtime.agentState("weather")).toBe("offline");
      expect((await runtime.bridge.agentsDiscover({})).agents[0]).toMatchObject({ id: "weather", name: "weather", status: "unavailable", a2a: { url } });
      expect((await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "weather" }))).type).toBe("TRANSPORT");
      await until(() => warnings.some((warning) => warning.includes("A2A agent weather is offline")));
    } finally {
      process.off("warning", onWarning);
    }
  });

  it("fails with AUTH when the agent refuses troupe's credentials (401), and sends the configured headers", async () => {
    const remote = await SdkAgent.start({ requiredHeader: ["authorization", "Bearer right"] });
    const refused = await runtimeUsing(remote.url, { authorization: "Bearer wrong" });
    const accepted = createRuntime({ a2aAgents: [{ id: "weather", url: remote.url, headers: { authorization: "Bearer right" } }] });
    runtimes.push(accepted);
    await accepted.start();
    const { sessionId } = await refused.bridge.sessionsCreate({ agentId: "weather" });

    const error = await rejectionOf(refused.bridge.sessionsPrompt({ sessionId, prompt: "Rain?" }));
    const reply = await accepted.bridge.tasksDelegate({ agentId: "weather", prompt: "Rain?" });

    expect(error).toMatchObject({ type: "AUTH", message: expect.stringContaining("HTTP 401"), details: { status: 401, sessionValid: false } });
    expect((await refused.bridge.sessionsStatus({ sessionId })).status).toBe("failed");
    expect(reply.text).toBe("Echo: Rain?");
  });

  it("does a workflow step's task", async () => {
    const remote = await SdkAgent.start();
    const { bus } = await startRuntimeBus({ a2aAgents: [{ id: "weather", url: remote.url }] });

    const created = await call(bus, "POST", "/sessions", {
      initiator: "troupe://orchestrator",
      participants: [{ agent_id: "troupe://weather", role: "forecaster" }],
      steps: [{ name: "forecast", required_agents: ["troupe://weather"], task: "Forecast for Nantes" }],
      dispatch: "auto",
    });
    const sessionId = created.body.session_id as string;
    await until(() => bus.sessionManager.getSession(sessionId)?.status !== "active", 10_000);
    const summary = (await call(bus, "GET", `/sessions/${sessionId}/summary`)).body;

    expect(bus.sessionManager.getSession(sessionId)?.status).toBe("completed");
    const result = summary.steps[0].agents[0].results[0].result;
    expect(result).toMatchObject({ status: "completed", text: expect.stringMatching(/^Echo: Forecast for Nantes/) });
    expect(remote.log.messages[0]!.text).toMatch(/^Forecast for Nantes/);
  });

  it("is asked by an in-process agent through ctx.ask (what delegate_to_agent calls), across the bus", async () => {
    const remote = await SdkAgent.start();
    const answers: AskReply[] = [];
    const planner: Agent = {
      id: "planner",
      prompt: async (ctx) => {
        const answer = await ctx.ask("weather", `Weather for ${ctx.prompt}?`);
        answers.push(answer);
        return { text: `Plan: ${answer.text}` };
      },
    };
    const { runtime } = await startRuntimeBus({ agents: [planner], a2aAgents: [{ id: "weather", url: remote.url }] });

    const reply = await runtime.bridge.tasksDelegate({ agentId: "planner", prompt: "the picnic" });

    expect(reply.text).toBe("Plan: Echo: Weather for the picnic?");
    expect(answers[0]).toMatchObject({ text: "Echo: Weather for the picnic?", payload: { status: "completed" } });
  });

  it("rejects an ask with the agent's failure type: AUTH for a refusal", async () => {
    const remote = await SdkAgent.start({ requiredHeader: ["authorization", "Bearer right"] });
    const planner: Agent = { id: "planner", prompt: async (ctx) => ({ text: (await ctx.ask("weather", "Rain?")).text }) };
    const { runtime } = await startRuntimeBus({ agents: [planner], a2aAgents: [{ id: "weather", url: remote.url }] });

    const error = await rejectionOf(runtime.bridge.tasksDelegate({ agentId: "planner", prompt: "go" }));

    expect(error).toMatchObject({ type: "AUTH" });
  });
});

describe("a2aAgents as configured", () => {
  it("refuses a bad URL or a repeated id with CONFIG naming the field", () => {
    expect(() => createRuntime({ a2aAgents: [{ id: "weather", url: "ftp://example.com" }] })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "a2aAgents.0.url" }) }),
    );
    expect(() =>
      createRuntime({
        a2aAgents: [
          { id: "weather", url: "http://127.0.0.1:1/" },
          { id: "weather", url: "http://127.0.0.1:2/" },
        ],
      }),
    ).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "a2aAgents.1.id" }) }));
  });

  it("is read from troupe serve's configuration file", () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-a2a-config-"));
    directories.push(directory);
    const path = join(directory, "troupe.json");
    writeFileSync(path, JSON.stringify({ a2aAgents: [{ id: "weather", url: "https://weather.example/a2a/", headers: { authorization: "Bearer x" } }] }));
    const bad = join(directory, "bad.json");
    writeFileSync(bad, JSON.stringify({ a2aAgents: [{ id: "weather" }] }));

    expect(loadServerConfig(path).a2aAgents).toEqual([{ id: "weather", url: "https://weather.example/a2a/", headers: { authorization: "Bearer x" } }]);
    expect(() => loadServerConfig(bad)).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "a2aAgents.0.url" }) }));
  });
});
