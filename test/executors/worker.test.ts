/**
 * The WorkerExecutor with real ACP agent processes (test/fixtures/acp-agent.mjs).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { createMockAgent, createRuntime, type Runtime, type RuntimeEvent, type RuntimeOptions } from "../../src/index.js";
import { rejectionOf } from "../support/runtime.js";
import { fixtureWorker, isAlive } from "../support/workers.js";

const runtimes: Runtime[] = [];
const pids = new Set<number>();

afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
});

afterAll(() => {
  // No orphans: every process any test here started has exited.
  expect([...pids].filter(isAlive)).toEqual([]);
});

async function start(options: RuntimeOptions): Promise<Runtime> {
  const runtime = createRuntime(options);
  runtimes.push(runtime);
  await runtime.start();
  return runtime;
}

/** The process id of the worker behind a session (the fixture answers "pid" with it). */
async function pidOf(runtime: Runtime, sessionId: string): Promise<number> {
  const pid = Number((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "pid" })).text);
  pids.add(pid);
  return pid;
}

function waitFor(runtime: Runtime, predicate: (event: RuntimeEvent) => boolean): Promise<RuntimeEvent> {
  return new Promise((resolve) => {
    const off = runtime.on("*", (event) => {
      if (predicate(event)) {
        off();
        resolve(event);
      }
    });
  });
}

const workerReady = (workerId: string) => (event: RuntimeEvent) =>
  event.type === "actor.transition" && event.actorId === `worker:${workerId}` && event.to === JSON.stringify({ running: "ready" });

describe("WorkerExecutor", () => {
  it("lists workers in agents_discover with their status and capabilities", async () => {
    const runtime = await start({ workers: [fixtureWorker("coder", { name: "Coder", description: "An ACP agent", capabilities: ["code"] })] });
    await runtime.bridge.sessionsCreate({ agentId: "coder" });
    expect(await runtime.bridge.agentsDiscover({ capability: "code" })).toEqual({
      agents: [{ id: "coder", name: "Coder", description: "An ACP agent", capabilities: ["code"], status: "ready" }],
    });
  });

  it("shows a worker busy while it runs a prompt", async () => {
    const runtime = await start({ workers: [fixtureWorker("w")] });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "w" });
    const delta = waitFor(runtime, (event) => event.type === "prompt.delta");
    const waiting = runtime.bridge.sessionsPrompt({ sessionId, prompt: "wait" });
    waiting.catch(() => undefined);
    await delta;
    expect((await runtime.bridge.agentsDiscover()).agents[0]?.status).toBe("busy");
    await runtime.bridge.sessionsCancel({ sessionId });
    expect((await runtime.bridge.agentsDiscover()).agents[0]?.status).toBe("ready");
  });

  it("fails only the crashed worker's sessions, and serves new sessions once it has restarted", async () => {
    const runtime = await start({
      workers: [fixtureWorker("a", { restart: { backoffMs: 10 } }), fixtureWorker("b")],
    });
    const a1 = (await runtime.bridge.sessionsCreate({ agentId: "a" })).sessionId;
    const a2 = (await runtime.bridge.sessionsCreate({ agentId: "a" })).sessionId;
    const b1 = (await runtime.bridge.sessionsCreate({ agentId: "b" })).sessionId;
    const pidA = await pidOf(runtime, a1);
    await pidOf(runtime, b1);

    const restarted = waitFor(runtime, workerReady("a"));
    process.kill(pidA, "SIGKILL");
    await waitFor(runtime, (event) => event.type === "actor.transition" && event.actorId === a2 && event.to === "failed");

    for (const sessionId of [a1, a2]) {
      expect(await runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({
        status: "failed",
        error: { type: "TRANSPORT", message: expect.stringContaining("Worker a exited (code null, signal SIGKILL)") },
      });
      expect(await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" }))).toMatchObject({
        type: "TRANSPORT",
        details: { sessionValid: false },
      });
    }
    expect((await runtime.bridge.sessionsPrompt({ sessionId: b1, prompt: "still here" })).text).toBe("Echo: still here");

    await restarted;
    const fresh = (await runtime.bridge.sessionsCreate({ agentId: "a" })).sessionId;
    const newPid = await pidOf(runtime, fresh);
    expect(newPid).not.toBe(pidA);
    expect(isAlive(pidA)).toBe(false);
  });

  it("marks a worker that keeps crashing unavailable and refuses its sessions", async () => {
    const runtime = createRuntime({
      workers: [fixtureWorker("broken", { env: { ACP_FIXTURE_CRASH_ON_START: "1" }, restart: { maxCrashes: 3, backoffMs: 5 } })],
    });
    runtimes.push(runtime);
    const offline: Array<RuntimeEvent<"agent.offline">> = [];
    runtime.on("agent.offline", (event) => offline.push(event));
    await runtime.start();
    expect(runtime.agentState("broken")).toBe("offline");
    await waitFor(runtime, (event) => event.type === "actor.transition" && event.actorId === "worker:broken" && event.to === "unavailable");
    expect((await runtime.bridge.agentsDiscover()).agents).toEqual([expect.objectContaining({ id: "broken", status: "unavailable" })]);
    expect(runtime.agentState("broken")).toBe("unavailable");
    // It never came online: the one agent.offline says it will not come back.
    expect(offline).toEqual([expect.objectContaining({ actorId: "agent:broken", agentId: "broken", kind: "worker", unavailable: true })]);
    expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "broken" }))).toMatchObject({
      type: "TRANSPORT",
      message: "Worker broken is unavailable",
    });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("fails a sessions_create waiting for a worker that gives up, saying why", async () => {
    const runtime = await start({
      workers: [fixtureWorker("broken", { env: { ACP_FIXTURE_CRASH_ON_START: "1" }, restart: { maxCrashes: 3, backoffMs: 5 } })],
    });
    expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "broken" }))).toMatchObject({
      type: "TRANSPORT",
      message: "Worker broken is unavailable: it crashed 3 times in a row",
      details: { sessionValid: false, workerId: "broken" },
    });
  });

  it("reports a worker's agent offline while its process restarts and online again after, under its agent's actor", async () => {
    const runtime = createRuntime({ workers: [fixtureWorker("w", { restart: { backoffMs: 10 } })] });
    runtimes.push(runtime);
    const tree: Array<[string, string | undefined]> = [];
    runtime.on("actor.spawned", (event) => tree.push([event.actorId, event.parentId]));
    const changes: string[] = [];
    runtime.on("agent.online", () => changes.push("online"));
    runtime.on("agent.offline", (event) => changes.push(event.unavailable ? "unavailable" : "offline"));
    await runtime.start();
    // supervisor → pool:agent → agents-0 → agent:w → worker:w → its process
    expect(tree).toEqual(
      expect.arrayContaining([
        ["agent:w", "agents-0"],
        ["worker:w", "agent:w"],
        ["worker:w/process", "worker:w"],
      ]),
    );
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "w" });
    const pid = await pidOf(runtime, sessionId);
    expect((await runtime.bridge.agentsDiscover()).agents[0]?.status).toBe("ready");

    const offline = waitFor(runtime, (event) => event.type === "agent.offline");
    const restarted = waitFor(runtime, workerReady("w"));
    process.kill(pid, "SIGKILL");
    await offline;
    expect(runtime.agentState("w")).toBe("offline");
    expect((await runtime.bridge.agentsDiscover()).agents[0]?.status).toBe("unavailable");
    await restarted;
    expect(runtime.agentState("w")).toBe("ready");
    expect(changes).toEqual(["online", "offline", "online"]);
  });

  it("ends a process that never answers initialize, so the worker restarts it and finally gives up", async () => {
    const runtime = await start({
      workerStartTimeoutMs: 150,
      workers: [fixtureWorker("mute", { env: { ACP_FIXTURE_INIT_ON_SIGUSR1: "1" }, restart: { maxCrashes: 2, backoffMs: 5 } })],
    });
    await waitFor(runtime, (event) => event.type === "actor.transition" && event.actorId === "worker:mute" && event.to === "unavailable");
    expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "mute" }))).toMatchObject({ type: "TRANSPORT" });
  });

  it("fails a sessions_create still waiting for its worker when the runtime stops", async () => {
    const runtime = await start({ workers: [fixtureWorker("slow", { env: { ACP_FIXTURE_INIT_ON_SIGUSR1: "1" } })] });
    const creating = rejectionOf(runtime.bridge.sessionsCreate({ agentId: "slow" }));
    await runtime.stop();
    expect(await creating).toMatchObject({ type: "CANCELLED", message: "Runtime stopped" });
  });

  it("waits for a starting worker before opening a session on it", async () => {
    const runtime = await start({ workers: [] });
    runtime.registerWorker(fixtureWorker("late"));
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "late" });
    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "hi" })).text).toBe("Echo: hi");
  });

  it("lets an in-process agent win when an id is registered both ways", async () => {
    const runtime = await start({ agents: [createMockAgent({ id: "twin" })], workers: [fixtureWorker("twin")] });
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "twin" });
    expect((await runtime.bridge.sessionsPrompt({ sessionId, prompt: "pid" })).text).toBe("Echo: pid");
    expect((await runtime.bridge.agentsDiscover()).agents.filter((agent) => agent.id === "twin")).toHaveLength(1);
  });

  describe("client methods the agent may call", () => {
    it("denies permission requests by default", async () => {
      const runtime = await start({ workers: [fixtureWorker("w")] });
      const reply = await runtime.bridge.tasksDelegate({ agentId: "w", prompt: "permission" });
      expect(reply.text).toBe("permission: no");
    });

    it("answers permission requests by the configured policy", async () => {
      const asked: string[] = [];
      const runtime = await start({
        workers: [
          fixtureWorker("yes", { permissions: "allow" }),
          fixtureWorker("ask", {
            permissions: (request) => {
              asked.push(request.toolCall.title ?? "");
              return "allow";
            },
          }),
        ],
      });
      expect((await runtime.bridge.tasksDelegate({ agentId: "yes", prompt: "permission" })).text).toBe("permission: yes");
      expect((await runtime.bridge.tasksDelegate({ agentId: "ask", prompt: "permission" })).text).toBe("permission: yes");
      expect(asked).toEqual(["Delete everything"]);
    });

    it("reads and writes files only inside the configured root, and none without one", async () => {
      const root = mkdtempSync(join(tmpdir(), "troupe-fs-root-"));
      const outside = mkdtempSync(join(tmpdir(), "troupe-fs-outside-"));
      try {
        writeFileSync(join(root, "notes.txt"), "inside");
        writeFileSync(join(outside, "secret.txt"), "outside");
        const runtime = await start({ workers: [fixtureWorker("fs", { fsRoot: root }), fixtureWorker("nofs")] });
        const ask = async (agentId: string, prompt: string) => (await runtime.bridge.tasksDelegate({ agentId, prompt })).text;

        expect(await ask("fs", `read ${join(root, "notes.txt")}`)).toBe("read: inside");
        expect(await ask("fs", `write ${join(root, "out.txt")} hello there`)).toBe("written");
        expect(readFileSync(join(root, "out.txt"), "utf8")).toBe("hello there");
        expect(await ask("fs", `read ${join(outside, "secret.txt")}`)).toMatch(/^read refused: .*outside the worker's file root/);
        expect(await ask("fs", `read ${join(root, "..", "..", outside, "secret.txt")}`)).toMatch(/^read refused/);
        expect(await ask("fs", `write ${join(outside, "x.txt")} nope`)).toMatch(/^write refused/);
        expect(await ask("nofs", `read ${join(root, "notes.txt")}`)).toMatch(/^read refused/);
      } finally {
        rmSync(root, { recursive: true, force: true });
        rmSync(outside, { recursive: true, force: true });
      }
    });
  });

  describe("shutdown", () => {
    it("closes sessions, then ends the processes; no process is left behind", async () => {
      const runtime = await start({ workers: [fixtureWorker("a"), fixtureWorker("b")] });
      const a = (await runtime.bridge.sessionsCreate({ agentId: "a" })).sessionId;
      const b = (await runtime.bridge.sessionsCreate({ agentId: "b" })).sessionId;
      const pidA = await pidOf(runtime, a);
      const pidB = await pidOf(runtime, b);
      const delta = waitFor(runtime, (event) => event.type === "prompt.delta" && event.actorId === a);
      const waiting = runtime.bridge.sessionsPrompt({ sessionId: a, prompt: "wait" });
      waiting.catch(() => undefined);
      await delta;
      const order: string[] = [];
      runtime.on("actor.stopped", (event) => order.push(event.actorId));
      await runtime.stop();
      expect(await rejectionOf(waiting)).toMatchObject({ type: "CANCELLED", details: { cause: "shutdown" } });
      expect(order.indexOf(a)).toBeLessThan(order.indexOf("worker:a"));
      expect(isAlive(pidA)).toBe(false);
      expect(isAlive(pidB)).toBe(false);
    });

    it("kills a process that ignores SIGTERM once the grace period is over", async () => {
      const runtime = await start({
        workerKillGraceMs: 100,
        workers: [fixtureWorker("stubborn", { env: { ACP_FIXTURE_IGNORE_SIGTERM: "1" } })],
      });
      const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "stubborn" });
      const pid = await pidOf(runtime, sessionId);
      await runtime.stop();
      expect(isAlive(pid)).toBe(false);
    });
  });
});
