/**
 * Agents are actors (SPEC §3.6): `agents_discover` reads each agent's status from its actor, which counts the
 * prompts its sessions run and emits `agent.*` events (SPEC §5).
 */
import { describe, expect, it } from "vitest";
import { createRuntime, type Runtime, type RuntimeEvent } from "../../src/index.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { startTestRuntime } from "../support/runtime.js";

/** Resolves once `count` prompts have started running (listen before sending them: a prompt may start at once). */
function promptsStarted(runtime: Runtime, count = 1): Promise<void> {
  let started = 0;
  return new Promise((resolve) => {
    const off = runtime.on("prompt.started", () => {
      started += 1;
      if (started < count) return;
      off();
      resolve();
    });
  });
}

/** The status `agents_discover` reports for the controlled agent. */
async function statusOf(runtime: Runtime): Promise<string | undefined> {
  return (await runtime.bridge.agentsDiscover()).agents.find((agent) => agent.id === "controlled")?.status;
}

describe("agent actors", () => {
  it("reports an in-process agent busy while a prompt runs and ready after it", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const events: RuntimeEvent[] = [];
    runtime.on("*", (event) => {
      if (event.type.startsWith("agent.")) events.push(event);
    });
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    expect(await statusOf(runtime)).toBe("ready");

    const started = promptsStarted(runtime);
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "work" });
    await started;
    expect(await statusOf(runtime)).toBe("busy");
    expect(runtime.agentState("controlled")).toBe("busy");

    controlled.current().reply();
    await reply;
    expect(await statusOf(runtime)).toBe("ready");
    expect(events.map(({ type, actorId, ...fields }) => [type, actorId, fields])).toEqual([
      ["agent.busy", "agent:controlled", expect.objectContaining({ agentId: "controlled", kind: "in-process" })],
      ["agent.ready", "agent:controlled", expect.objectContaining({ agentId: "controlled", kind: "in-process" })],
    ]);
  });

  it("stays busy while any of its sessions runs a prompt, and between the queued prompts of one session", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const changes: string[] = [];
    runtime.on("agent.busy", () => changes.push("busy"));
    runtime.on("agent.ready", () => changes.push("ready"));
    const first = (await runtime.bridge.sessionsCreate({})).sessionId;
    const second = (await runtime.bridge.sessionsCreate({})).sessionId;
    const started = promptsStarted(runtime, 2);
    const replies = [
      runtime.bridge.sessionsPrompt({ sessionId: first, prompt: "one" }),
      runtime.bridge.sessionsPrompt({ sessionId: first, prompt: "queued" }),
      runtime.bridge.sessionsPrompt({ sessionId: second, prompt: "two" }),
    ];
    await started;

    controlled.prompts.find((held) => held.ctx.prompt === "one")!.reply();
    await replies[0];
    expect(await statusOf(runtime)).toBe("busy");
    controlled.prompts.find((held) => held.ctx.prompt === "two")!.reply();
    await replies[2];
    expect(await statusOf(runtime)).toBe("busy");
    controlled.prompts.find((held) => held.ctx.prompt === "queued")!.reply();
    await replies[1];
    expect(await statusOf(runtime)).toBe("ready");
    expect(changes).toEqual(["busy", "ready"]);
  });

  it("counts a prompt that a closed session dropped as finished", async () => {
    const { runtime } = await startTestRuntime();
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const started = promptsStarted(runtime);
    const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "never answered" });
    reply.catch(() => undefined);
    await started;
    expect(await statusOf(runtime)).toBe("busy");
    await runtime.bridge.sessionsClose({ sessionId });
    await expect(reply).rejects.toMatchObject({ type: "CANCELLED" });
    expect(await statusOf(runtime)).toBe("ready");
  });

  it("brings every in-process agent online at start, each an actor agent:<id> in a shard of the supervisor's agent pool", async () => {
    const runtime = createRuntime({ agents: [createControlledAgent("writer").agent, createControlledAgent("reviewer").agent] });
    const online: string[] = [];
    const spawned: Array<[string, string | undefined]> = [];
    runtime.on("agent.online", (event) => online.push(event.agentId));
    runtime.on("actor.spawned", (event) => {
      if (event.machine === "agent") spawned.push([event.actorId, event.parentId]);
    });
    await runtime.start();
    try {
      expect(online).toEqual(["writer", "reviewer"]);
      expect(spawned).toEqual([
        ["agent:writer", "agents-0"],
        ["agent:reviewer", "agents-0"],
      ]);
      expect((await runtime.bridge.agentsDiscover()).agents.map((agent) => [agent.id, agent.status])).toEqual([
        ["writer", "ready"],
        ["reviewer", "ready"],
      ]);
    } finally {
      await runtime.stop();
    }
    expect(runtime.agentState("writer")).toBeUndefined();
  });
});
