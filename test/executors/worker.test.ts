/**
 * The WorkerExecutor with real ACP agent processes (test/fixtures/acp-agent.mjs).
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/** The next event of a type. */
function nextEventOf<T extends RuntimeEvent["type"]>(runtime: Runtime, type: T): Promise<RuntimeEvent<T>> {
  return waitFor(runtime, (event) => event.type === type) as Promise<RuntimeEvent<T>>;
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
        error: { type: "TRANSPORT", message: "Worker a was killed by SIGKILL" },
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
      message: "Worker broken is unavailable: it crashed 3 times in a row; the last time it exited with code 3; its stderr ends: fixture: crashing at start",
    });
    expect((await runtime.bridge.health()).sessions.total).toBe(0);
  });

  it("fails a sessions_create waiting for a worker that gives up, saying why", async () => {
    const runtime = await start({
      workers: [fixtureWorker("broken", { env: { ACP_FIXTURE_CRASH_ON_START: "1" }, restart: { maxCrashes: 3, backoffMs: 5 } })],
    });
    expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "broken" }))).toMatchObject({
      type: "TRANSPORT",
      message: expect.stringMatching(/^Worker broken is unavailable: it crashed 3 times in a row; the last time it exited with code 3/),
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

  describe("workers that fail say why", () => {
    // A start timeout far beyond the test's own: only an answer that does not wait for the worker can pass.
    const patient = { workerStartTimeoutMs: 120_000 };

    it("fails sessions_create at once with TRANSPORT naming a command that does not exist", async () => {
      const exits: Array<RuntimeEvent<"worker.exited">> = [];
      const runtime = createRuntime({ ...patient, workers: [{ id: "ghost", command: "/nonexistent/acp-agent" }] });
      runtimes.push(runtime);
      runtime.on("worker.exited", (event) => exits.push(event));
      await runtime.start();
      expect(await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "ghost" }))).toMatchObject({
        type: "TRANSPORT",
        message: 'Worker ghost is unavailable: cannot run "/nonexistent/acp-agent": no such file (ENOENT)',
        details: { sessionValid: false, retryable: false, workerId: "ghost" },
      });
      expect(runtime.agentState("ghost")).toBe("unavailable");
      expect(exits).toEqual([expect.objectContaining({ actorId: "worker:ghost", workerId: "ghost", spawnError: "ENOENT", code: null })]);
    });

    it("names a command missing from the PATH, one that is not executable, and a cwd that is missing or a file", async () => {
      const directory = mkdtempSync(join(tmpdir(), "troupe-worker-spawn-"));
      try {
        const notExecutable = join(directory, "agent.sh");
        writeFileSync(notExecutable, "#!/bin/sh\n");
        chmodSync(notExecutable, 0o644);
        const runtime = await start({
          ...patient,
          workers: [
            { id: "nopath", command: "troupe-no-such-acp-agent" },
            { id: "noexec", command: notExecutable },
            { id: "nocwd", command: process.execPath, cwd: join(directory, "missing") },
            { id: "filecwd", command: process.execPath, cwd: notExecutable },
          ],
        });
        const messageOf = async (agentId: string) => (await rejectionOf(runtime.bridge.sessionsCreate({ agentId }))).message;
        expect(await messageOf("nopath")).toBe('Worker nopath is unavailable: cannot run "troupe-no-such-acp-agent": no such command on the PATH (ENOENT)');
        expect(await messageOf("noexec")).toMatch(/^Worker noexec is unavailable: cannot run ".*agent\.sh": permission denied \(EACCES\)/);
        expect(await messageOf("nocwd")).toBe(
          `Worker nocwd is unavailable: cannot run ${JSON.stringify(process.execPath)}: its cwd ${join(directory, "missing")} does not exist (ENOENT)`,
        );
        expect(await messageOf("filecwd")).toMatch(/^Worker filecwd is unavailable: cannot run .*: its cwd .*agent\.sh is not a directory.*\(ENOTDIR\)$/);
      } finally {
        rmSync(directory, { recursive: true, force: true });
      }
    });

    it("shows the tail of a crashed worker's stderr in its sessions' errors, and publishes every stderr line under its id", async () => {
      const runtime = createRuntime({ workers: [fixtureWorker("noisy", { env: { ACP_FIXTURE_STDERR: "warming up\nready soon\n" } })] });
      runtimes.push(runtime);
      const lines: Array<RuntimeEvent<"worker.stderr">> = [];
      const exits: Array<RuntimeEvent<"worker.exited">> = [];
      runtime.on("worker.stderr", (event) => lines.push(event));
      runtime.on("worker.exited", (event) => exits.push(event));
      await runtime.start();
      const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "noisy" });
      pids.add(await pidOf(runtime, sessionId));
      const crashed = await rejectionOf(runtime.bridge.sessionsPrompt({ sessionId, prompt: "crash" }));
      expect(crashed).toMatchObject({ type: "TRANSPORT", details: { sessionValid: false } });
      expect((await runtime.bridge.sessionsStatus({ sessionId })).error).toMatchObject({
        type: "TRANSPORT",
        message: "Worker noisy exited with code 70; its stderr ends: warming up | ready soon | fixture: crashing as asked",
      });
      expect(lines.map((event) => [event.actorId, event.line])).toEqual(
        expect.arrayContaining([
          ["worker:noisy", "warming up"],
          ["worker:noisy", "ready soon"],
          ["worker:noisy", "fixture: crashing as asked"],
        ]),
      );
      expect(exits[0]).toMatchObject({ workerId: "noisy", code: 70, signal: null, stderr: "warming up\nready soon\nfixture: crashing as asked" });
    });

    it("keeps only the last 4 KiB of a worker's stderr, and cuts a line that never ends", async () => {
      const runtime = createRuntime({
        workers: [
          fixtureWorker("flood", {
            env: { ACP_FIXTURE_STDERR: `${"x".repeat(10_000)}\nlast words`, ACP_FIXTURE_CRASH_ON_START: "1" },
            restart: { maxCrashes: 1 },
          }),
        ],
      });
      runtimes.push(runtime);
      const lines: string[] = [];
      runtime.on("worker.stderr", (event) => lines.push(event.line));
      const exited = nextEventOf(runtime, "worker.exited");
      await runtime.start();
      const { stderr } = await exited;
      expect(stderr.length).toBeLessThanOrEqual(4096);
      expect(stderr.endsWith("last words" + "fixture: crashing at start")).toBe(true);
      expect(Math.max(...lines.map((line) => line.length))).toBeLessThanOrEqual(4096);
      expect(lines.join("")).toBe(`${"x".repeat(10_000)}last wordsfixture: crashing at start`);
    });
  });

  describe("runtime.stop() returns whatever state a worker is in", () => {
    const workerIn = (state: string) => (event: RuntimeEvent) => event.type === "actor.transition" && event.actorId === "worker:w" && event.to === state;
    const cases: Array<[string, () => Promise<Runtime>]> = [
      ["running.starting (initialize not answered yet)", async () => start({ workers: [fixtureWorker("w", { env: { ACP_FIXTURE_INIT_ON_SIGUSR1: "1" } })] })],
      [
        "running.ready, with a prompt in flight",
        async () => {
          const runtime = await start({ workers: [fixtureWorker("w")] });
          const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "w" });
          pids.add(await pidOf(runtime, sessionId));
          const delta = waitFor(runtime, (event) => event.type === "prompt.delta");
          runtime.bridge.sessionsPrompt({ sessionId, prompt: "wait" }).catch(() => undefined);
          await delta;
          return runtime;
        },
      ],
      [
        "backoff (waiting a minute to restart)",
        async () => {
          const runtime = createRuntime({ workers: [fixtureWorker("w", { env: { ACP_FIXTURE_CRASH_ON_START: "1" }, restart: { backoffMs: 60_000 } })] });
          runtimes.push(runtime);
          const inBackoff = waitFor(runtime, workerIn("backoff"));
          await runtime.start();
          await inBackoff;
          return runtime;
        },
      ],
      [
        "unavailable (crashed too often)",
        async () => {
          const runtime = createRuntime({ workers: [fixtureWorker("w", { env: { ACP_FIXTURE_CRASH_ON_START: "1" }, restart: { maxCrashes: 1 } })] });
          runtimes.push(runtime);
          const unavailable = waitFor(runtime, workerIn("unavailable"));
          await runtime.start();
          await unavailable;
          return runtime;
        },
      ],
      [
        "unavailable (its command does not exist), with a sessions_create that failed on it",
        async () => {
          const runtime = await start({ workers: [{ id: "w", command: "/nonexistent/acp-agent" }] });
          await rejectionOf(runtime.bridge.sessionsCreate({ agentId: "w" }));
          return runtime;
        },
      ],
    ];

    it.each(cases)("with the worker in %s", async (_state, bringUp) => {
      const runtime = await bringUp();
      const processes = new Set<number>();
      runtime.on("worker.started", (event) => processes.add(event.pid));
      await runtime.stop();
      expect(runtime.agentState("w")).toBeUndefined();
      expect([...pids, ...processes].filter(isAlive)).toEqual([]);
    });
  });
});
