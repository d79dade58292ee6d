/**
 * Logs from the event hub: each event a line at its level, with the correlation fields of what it concerns,
 * and no listener at all for the types a logger's level leaves out.
 */
import { describe, expect, it } from "vitest";
import { createMockAgent, createRuntime, type Runtime } from "../../src/index.js";
import { LOG_LEVELS, logRuntimeEvents, type EventLogger, type LogLevel } from "../../src/events/event-log.js";
import { startRuntimeBus } from "../e2e/support.js";
import { connect, envelope, register, until } from "../bus/support.js";
import { fixtureWorker } from "../support/workers.js";
import { startTestRuntime } from "../support/runtime.js";
import { clusterAnnouncer } from "../../src/cluster/node-events.js";
import { EventHub } from "../../src/events/event-hub.js";
import { systemClock } from "../../src/clock.js";

interface Line {
  level: LogLevel;
  fields: Record<string, unknown>;
  message: string;
}

/** A logger that keeps its lines, with pino's level semantics (a level and everything above it). */
function recordingLogger(threshold: LogLevel): EventLogger & { lines: Line[] } {
  const lines: Line[] = [];
  const enabled = (level: string): boolean => LOG_LEVELS.indexOf(level as LogLevel) >= LOG_LEVELS.indexOf(threshold);
  const write = (level: LogLevel) => (fields: Record<string, unknown>, message: string) => {
    if (enabled(level)) lines.push({ level, fields, message });
  };
  return { lines, isLevelEnabled: enabled, trace: write("trace"), debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}

const linesOf = (logger: { lines: Line[] }, event: string) => logger.lines.filter((line) => line.fields.event === event);

describe("logRuntimeEvents", () => {
  it("logs a completed prompt at info with its session, request and agent, and leaves out what info does not show", async () => {
    const { runtime } = await startTestRuntime({ agents: [createMockAgent({ id: "echo" })] });
    const logger = recordingLogger("info");
    logRuntimeEvents(runtime, logger, { agentOfSession: (sessionId) => runtime.sessionStatus(sessionId).agentId });
    // Nobody listens for deltas at info: the hub does not even build them.
    expect(runtime.hub.wants("prompt.delta")).toBe(false);
    const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "echo" });
    const { requestId } = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "hello", requestId: "req-1" });
    expect(linesOf(logger, "prompt.completed")).toEqual([
      { level: "info", message: "prompt completed", fields: expect.objectContaining({ sessionId, requestId, agentId: "echo", stopReason: "end_turn" }) },
    ]);
    expect(linesOf(logger, "prompt.started")).toEqual([]);
    expect(linesOf(logger, "prompt.delta")).toEqual([]);
  });

  it("logs deltas at trace, a failed prompt at warn, and stops when told", async () => {
    const { runtime, controlled } = await startTestRuntime();
    const logger = recordingLogger("trace");
    const stop = logRuntimeEvents(runtime, logger);
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const failing = runtime.bridge.sessionsPrompt({ sessionId, prompt: "x", requestId: "req-2" }).catch(() => undefined);
    await until(() => controlled.prompts.length === 1);
    controlled.current().ctx.emit("partial");
    controlled.current().fail("UPSTREAM", "model went away");
    await failing;
    expect(linesOf(logger, "prompt.delta")).toEqual([
      { level: "trace", message: "prompt delta", fields: expect.objectContaining({ sessionId, requestId: "req-2", delta: "partial" }) },
    ]);
    expect(linesOf(logger, "prompt.failed")).toEqual([
      { level: "warn", message: "prompt failed: UPSTREAM: model went away", fields: expect.objectContaining({ sessionId, requestId: "req-2" }) },
    ]);
    stop();
    expect(runtime.hub.wants("prompt.delta")).toBe(false);
  });

  it("logs messages with their message_id and recipient, and workflows with their id", async () => {
    const { bus } = await startRuntimeBus();
    const logger = recordingLogger("debug");
    logRuntimeEvents(bus, logger);
    await register(bus, "codex://a", "codex://b");
    await connect(bus, "codex://b");
    await bus.send(envelope("codex://a", "codex://b", { message_id: "m-1" }));
    await until(() => linesOf(logger, "message.acknowledged").length === 1);
    expect(linesOf(logger, "message.accepted")[0]!.fields).toMatchObject({ message_id: "m-1", agentId: "codex://b" });
    const workflow = bus.sessionManager.createSession("codex://a", [], [{ name: "plan", required_agents: [] }]);
    bus.sessionManager.terminateSession(workflow, { reason: "changed our minds" });
    await bus.sessionManager.whenSettled();
    expect(linesOf(logger, "workflow.created")[0]!.fields).toMatchObject({ workflow });
    expect(linesOf(logger, "workflow.terminated")[0]).toMatchObject({ level: "warn", message: "workflow terminated: changed our minds", fields: { workflow } });
  });

  it("logs a worker's stderr under its id, and its failure to start as an error naming the command", async () => {
    const runtimes: Runtime[] = [];
    try {
      const logger = recordingLogger("info");
      const runtime = createRuntime({
        workers: [fixtureWorker("talker", { env: { ACP_FIXTURE_STDERR: "loading the model\n" } }), { id: "ghost", command: "/nonexistent/agent" }],
      });
      runtimes.push(runtime);
      logRuntimeEvents(runtime, logger);
      await runtime.start();
      await until(() => linesOf(logger, "worker.stderr").length === 1 && linesOf(logger, "worker.exited").length === 1, 10_000);
      expect(linesOf(logger, "worker.stderr")).toEqual([
        { level: "info", message: "loading the model", fields: expect.objectContaining({ worker: "talker", agentId: "talker" }) },
      ]);
      expect(linesOf(logger, "worker.exited")).toEqual([
        {
          level: "error",
          message: 'worker ghost cannot run "/nonexistent/agent": no such file (ENOENT)',
          fields: expect.objectContaining({ worker: "ghost", spawnError: "ENOENT" }),
        },
      ]);
      await runtime.stop();
      expect(linesOf(logger, "worker.exited").at(-1)).toMatchObject({
        level: "info",
        message: expect.stringMatching(/^worker process stopped/),
        fields: { worker: "talker" },
      });
    } finally {
      await Promise.all(runtimes.map((runtime) => runtime.stop()));
    }
  });

  it("logs a cluster node's happenings with its node: a lost lease, a lost NATS and a failed scan at warn, the rest at info", () => {
    const hub = new EventHub(systemClock);
    const logger = recordingLogger("info");
    logRuntimeEvents(hub, logger);
    const announce = clusterAnnouncer(hub, "node-1");
    announce("cluster.node_joined", { server: "127.0.0.1:4222" });
    announce("cluster.nats_disconnected", { server: "127.0.0.1:4222" });
    announce("cluster.lease_lost", { cause: "expired", reason: "its lease ran out without a renewal" });
    announce("cluster.scan_failed", { error: "NATS at nats://127.0.0.1:4222: timeout" });
    announce("cluster.nats_reconnected", { server: "127.0.0.1:4223", downMs: 1_200 });
    announce("cluster.lease_regained", { workflows: 0, sessions: 0 });
    announce("cluster.takeover", { fromNode: "node-2", workflows: 12, sessions: 3 });
    announce("cluster.node_left", {});
    expect(logger.lines.map(({ level, fields }) => [fields.event, level])).toEqual([
      ["cluster.node_joined", "info"],
      ["cluster.nats_disconnected", "warn"],
      ["cluster.lease_lost", "warn"],
      ["cluster.scan_failed", "warn"],
      ["cluster.nats_reconnected", "info"],
      ["cluster.lease_regained", "info"],
      ["cluster.takeover", "info"],
      ["cluster.node_left", "info"],
    ]);
    expect(logger.lines.every(({ fields }) => fields.node === "node-1")).toBe(true);
    expect(linesOf(logger, "cluster.takeover")).toEqual([
      {
        level: "info",
        message: "cluster node node-1 took over node node-2: 12 workflow(s), 3 bridge session(s)",
        fields: { event: "cluster.takeover", node: "node-1", fromNode: "node-2", workflows: 12, sessions: 3 },
      },
    ]);
    expect(linesOf(logger, "cluster.lease_lost")[0]).toMatchObject({
      message: "cluster node node-1 lost its lease (its lease ran out without a renewal): its workflows and bridge sessions stop here",
      fields: { cause: "expired" },
    });
  });
});
