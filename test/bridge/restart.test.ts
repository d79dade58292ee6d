/**
 * Bridge sessions across a crash (issue 10): each comes back from the SQLite store with its status, metadata,
 * history, usage and timestamps; its TTL and idle expiry resume with the time they had left; a session that
 * was busy comes back idle, its prompts failed and reported as `prompt.interrupted`. A crash is simulated in
 * process (see crashable-store.ts): the file keeps what was committed, nothing the dying runtime does after
 * reaches it, and a new runtime opens the same directory on a clock that went on meanwhile.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import {
  BridgeError,
  CommunicationBus,
  createRuntime,
  openSqliteStore,
  type Agent,
  type Executor,
  type Runtime,
  type RuntimeEvent,
  type RuntimeOptions,
} from "../../src/index.js";
import { CrashableStore, temporaryDataDir } from "../support/crashable-store.js";
import { createControlledAgent, type ControlledAgent } from "../support/controlled-agent.js";
import { KILLED_SESSION_TTL_MS, steadyAgent } from "../support/steady-agent.js";
import { rejectionOf, settle } from "../support/runtime.js";

const CLOCK_START = 1_700_000_000_000;

/** One life of a runtime over a data directory. */
interface Life {
  runtime: Runtime;
  clock: SimulatedClock;
  controlled: ControlledAgent;
  store: CrashableStore;
  /** Every event of its stream, from before its start (restoring reports there). */
  events: RuntimeEvent[];
}

/** Starts a runtime over the store of `dir`, its clock at `now`, with a controlled agent `controlled` by default. */
async function live(dir: string, now: number, options: RuntimeOptions = {}): Promise<Life> {
  const clock = new SimulatedClock();
  clock.set(now);
  const controlled = createControlledAgent();
  const store = await CrashableStore.open(dir);
  const runtime = createRuntime({ clock, store, defaultAgentId: "controlled", ...options, agents: [controlled.agent, ...(options.agents ?? [])] });
  const events: RuntimeEvent[] = [];
  runtime.on("*", (event) => events.push(event));
  await runtime.start();
  return { runtime, clock, controlled, store, events };
}

/** `kill -9`: the file keeps what was committed; the dead runtime is then cleaned up without reaching it. */
async function crash(life: Life): Promise<void> {
  await life.store.crash();
  await life.runtime.stop();
}

/** Commits what the runtime has written so far (a crash after this loses none of it). */
async function committed(life: Life): Promise<void> {
  await settle();
  await life.store.flush();
}

describe("bridge sessions across a crash", () => {
  it("come back with their status, metadata, history, usage and timestamps, and their agent hears onSessionOpen again", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const { sessionId } = await first.runtime.bridge.sessionsCreate({ metadata: { project: "notifications" } });
    for (const prompt of ["design it", "build it"]) {
      const reply = first.runtime.bridge.sessionsPrompt({ sessionId, prompt });
      await settle();
      first.clock.increment(1_000);
      first.controlled.current().reply({ text: `done: ${prompt}`, usage: { inputTokens: 10, outputTokens: 4 } });
      await reply;
    }
    const before = await first.runtime.bridge.sessionsStatus({ sessionId });
    await committed(first);
    await crash(first);

    const second = await live(dir, CLOCK_START + 5_000);
    expect(await second.runtime.bridge.sessionsStatus({ sessionId })).toEqual(before);
    expect(before).toMatchObject({ status: "idle", usage: { inputTokens: 20, outputTokens: 8 }, lastActivityAt: CLOCK_START + 2_000 });
    expect(second.controlled.opened).toEqual([{ sessionId, agentId: "controlled", metadata: { project: "notifications" } }]);
    expect(second.events.filter((event) => event.type === "prompt.interrupted")).toEqual([]);

    // The restored session is a running child of its shard: its next prompt runs with the history it had.
    const reply = second.runtime.bridge.sessionsPrompt({ sessionId, prompt: "review it" });
    await settle();
    expect(second.controlled.current().ctx.history).toEqual([
      { role: "user", content: "design it" },
      { role: "assistant", content: "done: design it" },
      { role: "user", content: "build it" },
      { role: "assistant", content: "done: build it" },
    ]);
    second.controlled.current().reply({ text: "reviewed", usage: { inputTokens: 1, outputTokens: 1 } });
    expect(await reply).toMatchObject({ text: "reviewed" });
    expect((await second.runtime.bridge.sessionsStatus({ sessionId })).usage).toEqual({ inputTokens: 21, outputTokens: 9 });
    await second.runtime.stop();
  });

  it("loses a session whose creation was not committed yet, as a process killed then would", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    await crash(first);
    const second = await live(dir, CLOCK_START);
    expect(second.runtime.hasSession(sessionId)).toBe(false);
    await second.runtime.stop();
  });

  it("resume their TTL with the time it had left (XState restore pitfall: `after` delays fire after a restore)", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START, { sessionTtlMs: 10_000, sessionIdleMs: 0 });
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    first.clock.increment(4_000);
    await committed(first);
    await crash(first);

    // Down for 3 s: 3 s of the TTL are left.
    const second = await live(dir, CLOCK_START + 7_000, { sessionTtlMs: 10_000, sessionIdleMs: 0 });
    expect(await second.runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "active", expiresAt: CLOCK_START + 10_000 });
    second.clock.increment(2_999);
    expect(second.runtime.hasSession(sessionId)).toBe(true);
    second.clock.increment(1);
    await settle();
    expect(second.runtime.hasSession(sessionId)).toBe(false);
    expect(second.controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
    // Expired: gone from the store too.
    await second.store.flush();
    expect(await second.store.get("bridge_sessions", sessionId)).toBeUndefined();
    await second.runtime.stop();
  });

  it("resume their idle expiry from their last activity, with the time it had left", async () => {
    const dir = await temporaryDataDir();
    const options = { sessionTtlMs: 0, sessionIdleMs: 60_000 };
    const first = await live(dir, CLOCK_START, options);
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    const reply = first.runtime.bridge.sessionsPrompt({ sessionId, prompt: "hello" });
    await settle();
    first.clock.increment(10_000);
    first.controlled.current().reply();
    await reply;
    first.clock.increment(20_000);
    await committed(first);
    await crash(first);

    // Idle since +10 s, and the restart comes at +45 s: 25 s are left.
    const second = await live(dir, CLOCK_START + 45_000, options);
    expect(await second.runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({
      status: "idle",
      lastActivityAt: CLOCK_START + 10_000,
      expiresAt: CLOCK_START + 70_000,
    });
    second.clock.increment(24_999);
    expect(second.runtime.hasSession(sessionId)).toBe(true);
    second.clock.increment(1);
    await settle();
    expect(second.runtime.hasSession(sessionId)).toBe(false);
    expect(second.controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
    await second.runtime.stop();
  });

  it("expire at once when their time ran out while the process was down", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START, { sessionTtlMs: 10_000 });
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    await committed(first);
    await crash(first);
    const second = await live(dir, CLOCK_START + 60_000, { sessionTtlMs: 10_000 });
    second.clock.increment(0);
    await settle();
    expect(second.runtime.hasSession(sessionId)).toBe(false);
    expect(second.controlled.closes).toEqual([{ sessionId, reason: "expired" }]);
    await second.runtime.stop();
  });

  it("come back idle when they were busy: each interrupted prompt failed (TRANSPORT, sessionValid true) and is reported as prompt.interrupted", async () => {
    const dir = await temporaryDataDir();
    const options = { sessionTtlMs: 0, sessionIdleMs: 60_000 };
    const first = await live(dir, CLOCK_START, options);
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    // The dead runtime's callers hear of their prompts' end as it is cleaned up; that is no part of the file.
    const callers = [
      rejectionOf(first.runtime.bridge.sessionsPrompt({ sessionId, prompt: "long job", requestId: "req-1" })),
      rejectionOf(first.runtime.bridge.sessionsPrompt({ sessionId, prompt: "next job", requestId: "req-2" })),
    ];
    await settle();
    await committed(first);
    await crash(first);
    await Promise.all(callers);

    const restartAt = CLOCK_START + 30_000;
    const second = await live(dir, restartAt, options);
    const interrupted = second.events.filter((event) => event.type === "prompt.interrupted");
    const error = { type: "TRANSPORT", retryable: true, sessionValid: true, details: { interrupted: true } };
    expect(interrupted).toEqual([
      expect.objectContaining({ actorId: sessionId, sessionId, requestId: "req-1", error: expect.objectContaining(error) }),
      expect.objectContaining({ actorId: sessionId, sessionId, requestId: "req-2", error: expect.objectContaining(error) }),
    ]);
    const status = await second.runtime.bridge.sessionsStatus({ sessionId });
    expect(status).toMatchObject({ status: "idle", queued: 0, lastActivityAt: restartAt, expiresAt: restartAt + 60_000 });
    expect(status.activeRequestId).toBeUndefined();
    // The pending record is gone, and the session record says idle since the restart: a second crash keeps that.
    await second.store.flush();
    expect(await second.store.get("bridge_sessions", `${sessionId}/pending`)).toBeUndefined();
    expect(await second.store.get("bridge_sessions", sessionId)).toMatchObject({ status: "idle", lastActivityAt: restartAt });

    // The session works: the restored actor runs its invoked prompt, and its agent's actor (found by system id) is busy meanwhile.
    const reply = second.runtime.bridge.sessionsPrompt({ sessionId, prompt: "again", requestId: "req-1" });
    await settle();
    expect(second.runtime.agentState("controlled")).toBe("busy");
    second.controlled.current().reply({ text: "done again" });
    expect(await reply).toMatchObject({ text: "done again", requestId: "req-1" });
    expect(second.runtime.agentState("controlled")).toBe("ready");
    await second.runtime.stop();
  });

  it("come back failed with their error when they had failed, and their agent is not told of them again", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    const reply = first.runtime.bridge.sessionsPrompt({ sessionId, prompt: "x" });
    await settle();
    first.controlled.current().fail("AUTH", "bad key", { sessionValid: false });
    await rejectionOf(reply);
    await committed(first);
    await crash(first);

    const second = await live(dir, CLOCK_START + 1_000);
    expect(await second.runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({ status: "failed", error: { type: "AUTH", message: "bad key" } });
    expect(second.controlled.opened).toEqual([]);
    expect(await rejectionOf(second.runtime.bridge.sessionsPrompt({ sessionId, prompt: "y" }))).toMatchObject({
      type: "AUTH",
      details: { sessionValid: false },
    });
    await second.runtime.bridge.sessionsClose({ sessionId });
    expect(second.controlled.closes).toEqual([]);
    await second.runtime.stop();
  });

  it("leave the store when they are closed; a graceful stop keeps the others for the next start", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const kept = (await first.runtime.bridge.sessionsCreate({})).sessionId;
    const closed = (await first.runtime.bridge.sessionsCreate({})).sessionId;
    await first.runtime.bridge.sessionsClose({ sessionId: closed });
    await first.runtime.stop();
    expect(first.controlled.closes).toEqual([
      { sessionId: closed, reason: "closed" },
      { sessionId: kept, reason: "shutdown" },
    ]);
    await first.store.close();

    const second = await live(dir, CLOCK_START + 1_000);
    expect(second.runtime.hasSession(kept)).toBe(true);
    expect(second.runtime.hasSession(closed)).toBe(false);
    expect((await second.store.list("bridge_sessions")).map((record) => record.id)).toEqual([kept]);
    await second.runtime.stop();
  });

  it("are found by their system id after a restore: status, close and cancel reach the restored actor", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const { sessionId } = await first.runtime.bridge.sessionsCreate({});
    await committed(first);
    await crash(first);

    const second = await live(dir, CLOCK_START);
    expect(second.runtime.hasSession(sessionId)).toBe(true);
    expect((await second.runtime.bridge.sessionsStatus({ sessionId })).status).toBe("active");
    expect(await rejectionOf(second.runtime.bridge.sessionsCancel({ sessionId }))).toMatchObject({ type: "NOT_FOUND", message: "No prompt in flight" });
    expect(await second.runtime.bridge.sessionsClose({ sessionId })).toEqual({ closed: true, sessionId });
    expect(second.runtime.hasSession(sessionId)).toBe(false);
    await second.runtime.stop();
  });

  it("keep maxSessions: the oldest are restored up to it, the rest are dropped with a warning", async () => {
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START);
    const sessionIds: string[] = [];
    for (let index = 0; index < 3; index += 1) {
      sessionIds.push((await first.runtime.bridge.sessionsCreate({})).sessionId);
      first.clock.increment(1);
    }
    await committed(first);
    await crash(first);

    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    const second = await live(dir, CLOCK_START + 10, { maxSessions: 2 });
    await settle();
    process.off("warning", onWarning);
    expect(sessionIds.map((sessionId) => second.runtime.hasSession(sessionId))).toEqual([true, true, false]);
    expect(warnings.filter((warning) => warning.includes("is not restored"))).toEqual([
      expect.stringContaining(`stored session ${sessionIds[2]} is not restored: Session capacity reached`),
    ]);
    expect(await rejectionOf(second.runtime.bridge.sessionsCreate({}))).toMatchObject({ type: "CAPACITY" });
    await second.store.flush();
    expect(await second.store.get("bridge_sessions", sessionIds[2]!)).toBeUndefined();
    await second.runtime.stop();
  });

  it("fail when their executor cannot take sessions back (an ACP worker's died with its process)", async () => {
    const agent: Agent = { id: "remote", prompt: async () => ({ text: "ok" }) };
    const sessions = new Set<string>();
    const executorOf = (): Executor => ({
      kind: "custom",
      sessionsExpire: true,
      hasAgent: (agentId) => agentId === agent.id,
      describeAgents: () => [{ id: agent.id, name: agent.id, description: "", capabilities: [] }],
      openSession: async ({ sessionId }) => void sessions.add(sessionId),
      runPrompt: async () => ({ text: "ok", stopReason: "end_turn" }),
      promptCancelled: () => undefined,
      closeSession: async () => undefined,
    });
    const dir = await temporaryDataDir();
    const first = await live(dir, CLOCK_START, { executor: executorOf() });
    const { sessionId } = await first.runtime.bridge.sessionsCreate({ agentId: "remote" });
    await committed(first);
    await crash(first);

    const second = await live(dir, CLOCK_START, { executor: executorOf() });
    await settle();
    expect(await second.runtime.bridge.sessionsStatus({ sessionId })).toMatchObject({
      status: "failed",
      error: { type: "TRANSPORT", message: `Session ${sessionId} ended with the restart: the custom executor cannot restore sessions` },
    });
    await second.runtime.stop();
  });

  it("are dropped with a warning when their agent is no longer configured", async () => {
    const dir = await temporaryDataDir();
    const other = createControlledAgent("other");
    const first = await live(dir, CLOCK_START, { agents: [other.agent] });
    const { sessionId } = await first.runtime.bridge.sessionsCreate({ agentId: "other" });
    await committed(first);
    await crash(first);

    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    const second = await live(dir, CLOCK_START);
    await settle();
    process.off("warning", onWarning);
    expect(second.runtime.hasSession(sessionId)).toBe(false);
    expect(warnings.filter((warning) => warning.includes("is not restored"))).toEqual([
      `troupe: stored session ${sessionId} is not restored: its agent other is not configured`,
    ]);
    await second.store.flush();
    expect(await second.store.list("bridge_sessions")).toEqual([]);
    await second.runtime.stop();
  });
});

describe("what a session costs the store", () => {
  it("writes its record once per prompt that ends, a few bytes when one starts, and nothing per delta", async () => {
    const dir = await temporaryDataDir();
    const deltas = 50;
    const streaming: Agent = {
      id: "streaming",
      prompt: async (ctx) => {
        for (let index = 0; index < deltas; index += 1) ctx.emit(`piece ${index} `);
        return { text: "all pieces" };
      },
    };
    const life = await live(dir, CLOCK_START, { agents: [streaming], defaultAgentId: "streaming" });
    const writes: string[] = [];
    const put = life.store.put.bind(life.store);
    life.store.put = (collection, id, value) => {
      if (collection === "bridge_sessions") writes.push(id);
      put(collection, id, value);
    };
    const { sessionId } = await life.runtime.bridge.sessionsCreate({});
    expect(writes).toEqual([sessionId]);
    writes.length = 0;
    const seen: string[] = [];
    life.runtime.on("prompt.delta", (event) => void seen.push(event.delta));
    for (let prompt = 0; prompt < 3; prompt += 1) await life.runtime.bridge.sessionsPrompt({ sessionId, prompt: `prompt ${prompt}` });
    expect(seen).toHaveLength(3 * deltas);
    expect(writes).toEqual([`${sessionId}/pending`, sessionId, `${sessionId}/pending`, sessionId, `${sessionId}/pending`, sessionId]);
    await life.runtime.stop();
  });

  it("reports a write the store refuses as a warning, and the session goes on", async () => {
    const dir = await temporaryDataDir();
    const life = await live(dir, CLOCK_START);
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning.message);
    process.on("warning", onWarning);
    life.store.put = () => {
      throw new BridgeError("INTERNAL", "disk full");
    };
    const { sessionId } = await life.runtime.bridge.sessionsCreate({});
    const reply = life.runtime.bridge.sessionsPrompt({ sessionId, prompt: "still there?" });
    await settle();
    life.controlled.current().reply({ text: "yes" });
    expect(await reply).toMatchObject({ text: "yes" });
    await settle();
    process.off("warning", onWarning);
    expect(warnings).toContain(`troupe: bridge session ${sessionId} could not be written to the store: disk full`);
    await life.runtime.stop();
  });
});

describe("a real kill -9", () => {
  it("brings back the bridge sessions and workflows of a process killed with SIGKILL, a prompt of it interrupted", async () => {
    const dir = await temporaryDataDir();
    const child = spawn(process.execPath, ["--import", "tsx", "test/support/killed-server.ts", dir], { cwd: fileURLToPath(new URL("../..", import.meta.url)) });
    const exited = once(child, "exit");
    let output = "";
    let errors = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (errors += chunk));
    let ready: { sessionId: string; workflowId: string; status: Record<string, unknown> };
    try {
      ready = await new Promise((resolve, reject) => {
        child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
          output += chunk;
          const line = /^ready (.*)$/m.exec(output);
          if (line !== null) resolve(JSON.parse(line[1]!));
        });
        child.on("exit", (code) => reject(new Error(`the server exited (${code}) before it was ready: ${errors}`)));
      });
    } finally {
      child.kill("SIGKILL");
      await exited;
    }

    const events: RuntimeEvent[] = [];
    const runtime = createRuntime({
      agents: [steadyAgent],
      defaultAgentId: "steady",
      store: () => openSqliteStore({ dir }),
      sessionTtlMs: KILLED_SESSION_TTL_MS,
    });
    runtime.on("prompt.interrupted", (event) => void events.push(event));
    await runtime.start();
    const bus = new CommunicationBus({ runtime, host: "127.0.0.1", port: 0, apiKey: "test-key", env: {} });
    await bus.start();
    try {
      const { sessionId, workflowId } = ready;
      expect(events).toEqual([
        expect.objectContaining({ sessionId, requestId: "hanging", error: expect.objectContaining({ type: "TRANSPORT", sessionValid: true }) }),
      ]);
      const status = await runtime.bridge.sessionsStatus({ sessionId });
      expect(status).toMatchObject({ sessionId, status: "idle", createdAt: ready.status["createdAt"], expiresAt: ready.status["expiresAt"], queued: 0 });
      expect(await runtime.bridge.sessionsPrompt({ sessionId, prompt: "after" })).toMatchObject({ text: "noted: after" });
      expect(bus.sessionManager.getSession(workflowId)?.workflow).toMatchObject({ current_step: "implementation", completed_steps: ["design"] });
    } finally {
      await bus.stop();
      await runtime.stop();
    }
  });
});
