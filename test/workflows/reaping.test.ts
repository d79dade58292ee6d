/**
 * The supervisor owns and reaps the bus's actors (SPEC §3.6): workflow sessions and message deliveries live in
 * its pools, an ended workflow is evicted after `workflowRetentionMs`, `DELETE /sessions/:id` evicts one at
 * once, and a finished delivery keeps only its status record.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createMachine, SimulatedClock, type AnyActor, type InspectionEvent } from "xstate";
import { createRuntime, type BridgeError, type CommunicationBus, type Runtime } from "../../src/index.js";
import {
  call,
  CLOCK_START,
  connect,
  envelope,
  flush,
  rawConnect,
  register,
  SEED_AGENTS,
  SEED_PARTICIPANTS,
  SEED_STEPS,
  startBus,
  statusOf,
  until,
} from "../bus/support.js";
import { messageKey } from "../../src/protocol/envelope.js";
import { actorIdOf } from "../../src/events/inspector.js";

const { lead: LEAD, backend: DEV, qa: QA } = SEED_AGENTS;
const RETENTION_MS = 60_000;

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
});

/** A bus on a simulated clock over a runtime of the test's own, whose actors the test can count. */
async function startOwnedBus(
  options: {
    maxWorkflowSessions?: number;
    maxQueuedPerAgent?: number;
    maxIdleDeliveries?: number;
    shardSize?: number;
    inspect?: (event: InspectionEvent) => void;
  } = {},
) {
  const clock = new SimulatedClock();
  clock.set(CLOCK_START);
  const live = new Map<string, string | undefined>();
  const runtime = createRuntime({
    clock,
    ...(options.maxWorkflowSessions ? { maxWorkflowSessions: options.maxWorkflowSessions } : {}),
    ...(options.shardSize ? { shardSize: options.shardSize } : {}),
    ...(options.inspect ? { inspect: options.inspect } : {}),
  });
  runtime.on("actor.spawned", (event) => live.set(event.actorId, event.parentId));
  runtime.on("actor.stopped", (event) => live.delete(event.actorId));
  await runtime.start();
  runtimes.push(runtime);
  const bus = await startBus({
    clock,
    runtime,
    workflowRetentionMs: RETENTION_MS,
    ...(options.maxQueuedPerAgent ? { maxQueuedPerAgent: options.maxQueuedPerAgent } : {}),
    ...(options.maxIdleDeliveries === undefined ? {} : { maxIdleDeliveries: options.maxIdleDeliveries }),
  });
  /** Live actors whose parent's id starts with `prefix` (e.g. `workflows-` shards). */
  const childrenOf = (prefix: string) => [...live].filter(([, parentId]) => parentId?.startsWith(prefix)).map(([actorId]) => actorId);
  return { bus, clock, runtime, childrenOf };
}

function createWorkflow(bus: CommunicationBus): string {
  return bus.sessionManager.createSession(LEAD, SEED_PARTICIPANTS, SEED_STEPS, {});
}

describe("workflow sessions under the supervisor", () => {
  it("spawns each workflow in a shard of the supervisor's workflow pool", async () => {
    const { bus, runtime, childrenOf } = await startOwnedBus();
    const sessionId = createWorkflow(bus);
    expect(runtime.pooledCount("workflow")).toBe(1);
    expect(childrenOf("pool:workflow")).toEqual(["workflows-0"]);
    expect(childrenOf("workflows-")).toEqual([sessionId]);
  });

  it("keeps an ended workflow readable for workflowRetentionMs, then evicts it (404)", async () => {
    const { bus, clock, runtime, childrenOf } = await startOwnedBus();
    const sessionId = createWorkflow(bus);
    bus.sessionManager.completeSession(sessionId, { summary: "done" });
    clock.increment(RETENTION_MS - 1);
    expect((await call(bus, "GET", `/sessions/${sessionId}`)).body).toMatchObject({ status: "completed", completion: { summary: "done" } });
    expect(runtime.pooledCount("workflow")).toBe(1);
    clock.increment(1);
    expect((await call(bus, "GET", `/sessions/${sessionId}`)).status).toBe(404);
    expect(bus.sessionManager.listSessions()).toEqual([]);
    expect(runtime.pooledCount("workflow")).toBe(0);
    expect(childrenOf("workflows-")).toEqual([]);
  });

  it("evicts an active workflow at once on DELETE /sessions/:id, terminating it with the reason deleted", async () => {
    const { bus, runtime } = await startOwnedBus();
    const terminated: unknown[] = [];
    bus.sessionManager.on("session_terminated", (event) => terminated.push(event));
    const sessionId = createWorkflow(bus);
    const answer = await call(bus, "DELETE", `/sessions/${sessionId}`);
    expect(answer).toEqual({ status: 200, body: { success: true, session_id: sessionId } });
    expect(terminated).toEqual([{ type: "session_terminated", sessionId, reason: "deleted" }]);
    expect((await call(bus, "GET", `/sessions/${sessionId}`)).status).toBe(404);
    expect((await call(bus, "DELETE", `/sessions/${sessionId}`)).status).toBe(404);
    expect(runtime.pooledCount("workflow")).toBe(0);
  });

  it("forgets the participants of an evicted workflow: they no longer count as registered", async () => {
    const { bus } = await startOwnedBus();
    const sessionId = createWorkflow(bus);
    expect(bus.listAgents().map((agent) => agent.agent_id)).toContain(QA);
    await call(bus, "DELETE", `/sessions/${sessionId}`);
    expect(bus.listAgents().map((agent) => agent.agent_id)).not.toContain(QA);
    expect((await call(bus, "POST", "/messages/send", envelope(DEV, QA))).status).toBe(404);
  });

  it("refuses a workflow past maxWorkflowSessions with 429 CAPACITY, ended-but-retained ones counting", async () => {
    const { bus, clock } = await startOwnedBus({ maxWorkflowSessions: 2 });
    const first = createWorkflow(bus);
    createWorkflow(bus);
    bus.sessionManager.terminateSession(first, { reason: "enough" });
    const refused = await call(bus, "POST", "/sessions", { initiator: LEAD, participants: SEED_PARTICIPANTS, steps: SEED_STEPS });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: 2, retryable: true } });
    clock.increment(RETENTION_MS);
    expect((await call(bus, "POST", "/sessions", { initiator: LEAD, participants: SEED_PARTICIPANTS, steps: SEED_STEPS })).status).toBe(201);
  });

  it("refuses a workflow created inside the pool's own event (a listener of a workflow being spawned) with BUSY, and keeps nothing of it", async () => {
    const { bus, runtime, childrenOf } = await startOwnedBus();
    const outcomes: string[] = [];
    bus.on("actor.spawned", (event) => {
      if (event.parentId?.startsWith("workflows-") !== true || outcomes.length > 0) return;
      try {
        outcomes.push(createWorkflow(bus));
      } catch (error) {
        outcomes.push((error as BridgeError).type);
        // Once the pool's event is over, the same call succeeds.
        queueMicrotask(() => outcomes.push(createWorkflow(bus)));
      }
    });
    const first = createWorkflow(bus);
    await flush();
    expect(outcomes.slice(0, 1)).toEqual(["BUSY"]);
    expect(bus.sessionManager.listSessions().map((session) => session.session_id)).toEqual([first, ...outcomes.slice(1)]);
    expect(runtime.pooledCount("workflow")).toBe(2);
    expect(childrenOf("workflows-")).toEqual([first, ...outcomes.slice(1)]);
  });

  it("lets a workflow.evicted listener create a workflow: the event goes out after the pool's release, once the store has it", async () => {
    const { bus, runtime } = await startOwnedBus();
    const created: string[] = [];
    bus.on("workflow.evicted", () => void created.push(createWorkflow(bus)));
    const first = createWorkflow(bus);
    expect((await call(bus, "DELETE", `/sessions/${first}`)).status).toBe(200);
    await bus.sessionManager.whenSettled();
    expect(created).toHaveLength(1);
    expect(bus.sessionManager.listSessions().map((session) => session.session_id)).toEqual(created);
    expect(runtime.pooledCount("workflow")).toBe(1);
  });

  it("reports a pooled child that fails as stopped (reason error) and reaps it", async () => {
    const { runtime, childrenOf } = await startOwnedBus();
    const stopped: Array<{ actorId: string; reason: string }> = [];
    runtime.on("actor.stopped", ({ actorId, reason }) => stopped.push({ actorId, reason }));
    // No workflow or delivery can fail; the pool takes any logic, and reaps a child that fails at once.
    const failing = createMachine({
      id: "failing",
      on: {
        FAIL: {
          actions: () => {
            throw new Error("the child failed");
          },
        },
      },
    });
    runtime.spawnPooled("workflow", "failing-child", failing, undefined);
    expect(childrenOf("workflows-")).toEqual(["failing-child"]);
    runtime.pooledChild("failing-child")!.send({ type: "FAIL" });
    expect(stopped).toEqual([{ actorId: "failing-child", reason: "error" }]);
    expect(childrenOf("workflows-")).toEqual([]);
    expect(runtime.pooledCount("workflow")).toBe(0);
  });

  it("asks only the shard that holds a workflow to evict it, active or ended, however many shards there are", async () => {
    const evicts: Array<{ shardId: string; childId: string }> = [];
    const { bus, clock, runtime } = await startOwnedBus({
      shardSize: 2,
      inspect: (inspection) => {
        // A shard is named by its system id (its local id is only its number).
        if (inspection.type === "@xstate.event" && inspection.event.type === "SHARD.EVICT")
          evicts.push({ shardId: actorIdOf(inspection.actorRef as AnyActor), childId: inspection.event["childId"] as string });
      },
    });
    const sessionIds = Array.from({ length: 6 }, () => createWorkflow(bus));
    const [first, , third, , , last] = sessionIds as [string, string, string, string, string, string];
    bus.sessionManager.completeSession(third, { summary: "ended, retained" });
    for (const sessionId of [first, third, last]) expect((await call(bus, "DELETE", `/sessions/${sessionId}`)).status).toBe(200);
    expect(evicts).toEqual([
      { shardId: "workflows-0", childId: first },
      { shardId: "workflows-1", childId: third },
      { shardId: "workflows-2", childId: last },
    ]);
    expect(bus.sessionManager.listSessions().map((session) => session.session_id)).toEqual(
      sessionIds.filter((sessionId) => ![first, third, last].includes(sessionId)),
    );
    expect(runtime.pooledCount("workflow")).toBe(3);
    // Their retention timers are gone with them: nothing else is evicted later.
    clock.increment(RETENTION_MS);
    expect(runtime.pooledCount("workflow")).toBe(3);
  });

  it("names pooled children by their slot in the shard, so the shard machine sees at most shardSize kinds of done events", async () => {
    // XState memoizes a state node's transitions per event type; a child that ends sends its parent
    // xstate.done.actor.<its id>. Slot ids keep those types few, however many children ever end.
    const doneTypes = new Set<string>();
    const { bus, clock, runtime } = await startOwnedBus({
      shardSize: 2,
      inspect: (inspection) => {
        if (inspection.type === "@xstate.event" && inspection.event.type.startsWith("xstate.done.actor.")) doneTypes.add(inspection.event.type);
      },
    });
    const sessionIds = Array.from({ length: 6 }, () => createWorkflow(bus));
    for (const sessionId of sessionIds) bus.sessionManager.completeSession(sessionId, { summary: "ok" });
    clock.increment(RETENTION_MS);
    expect(runtime.pooledCount("workflow")).toBe(0);
    expect([...doneTypes].sort()).toEqual(["xstate.done.actor.0", "xstate.done.actor.1"]);
  });

  it("reaps 10,000 ended workflows after their retention: no actor, shard or session is left", async () => {
    const { bus, clock, runtime, childrenOf } = await startOwnedBus();
    const sessionIds = Array.from({ length: 10_000 }, () => createWorkflow(bus));
    expect(childrenOf("workflows-").length).toBe(10_000);
    for (const sessionId of sessionIds) bus.sessionManager.completeSession(sessionId, { summary: "ok" });
    // Ended (their actors are done), but retained: still readable, still in the pool.
    expect(runtime.pooledCount("workflow")).toBe(10_000);
    expect(bus.sessionManager.getSession(sessionIds[9_999]!)?.status).toBe("completed");
    clock.increment(RETENTION_MS);
    expect(runtime.pooledCount("workflow")).toBe(0);
    // Full shards are reaped once empty; only the current (partly filled) one may stay.
    expect(childrenOf("pool:workflow").length).toBeLessThanOrEqual(1);
    expect(bus.sessionManager.listSessions()).toEqual([]);
    expect(bus.metricsSnapshot().sessions.total).toBe(0);
  });
});

describe("message deliveries under the supervisor", () => {
  it("keeps a delivery actor idle without its payload once its message is acknowledged, and hands it the next message", async () => {
    const { bus, runtime, childrenOf } = await startOwnedBus();
    await register(bus, LEAD, DEV);
    const agent = await rawConnect(bus, DEV);
    const message = envelope(LEAD, DEV);
    await call(bus, "POST", "/messages/send", message);
    await until(() => agent.frames.length === 1);
    expect(runtime.pooledCount("delivery")).toBe(1);
    const [actorId] = childrenOf("deliveries-");
    expect(actorId).toMatch(/^delivery:\d+$/);
    const carrier = runtime.pooledChild(actorId!)!;
    expect(carrier.getSnapshot().context).toMatchObject({ key: messageKey(LEAD, message["message_id"] as string), messageId: message["message_id"] });
    agent.ack(message["message_id"] as string);
    await until(() => statusOf(bus, message["message_id"] as string) === "acknowledged");
    // The actor waits for the next message, holding no envelope and no frame.
    expect(carrier.getSnapshot()).toMatchObject({ status: "active", value: "idle", context: { envelope: null, frame: "", frameBytes: 0 } });
    expect(childrenOf("deliveries-")).toEqual([actorId]);
    const next = envelope(LEAD, DEV);
    await call(bus, "POST", "/messages/send", next);
    await until(() => agent.frames.length === 2);
    expect(childrenOf("deliveries-")).toEqual([actorId]);
    expect(carrier.getSnapshot()).toMatchObject({ value: "delivered", context: { messageId: next["message_id"], attempts: 1 } });
    expect(runtime.pooledCount("delivery")).toBe(1);
  });

  it("reaps a delivery actor at its message's end past maxIdleDeliveries, and keeps only the message's status record", async () => {
    const { bus, runtime, childrenOf } = await startOwnedBus({ maxIdleDeliveries: 0 });
    await register(bus, LEAD, DEV);
    const agent = await rawConnect(bus, DEV);
    const message = envelope(LEAD, DEV);
    await call(bus, "POST", "/messages/send", message);
    await until(() => agent.frames.length === 1);
    expect(runtime.pooledCount("delivery")).toBe(1);
    expect(childrenOf("deliveries-")).toHaveLength(1);
    agent.ack(message["message_id"] as string);
    await until(() => statusOf(bus, message["message_id"] as string) === "acknowledged");
    expect(runtime.pooledCount("delivery")).toBe(0);
    expect(childrenOf("deliveries-")).toEqual([]);
    expect((await call(bus, "GET", `/messages/${String(message["message_id"])}`)).body).toEqual({
      message_id: message["message_id"],
      sender: LEAD,
      status: "acknowledged",
      attempts: 1,
    });
    // A repeated id is still recognised from the record alone.
    expect((await call(bus, "POST", "/messages/send", message)).body).toMatchObject({ status: "duplicate" });
  });

  it("takes a message that died while queued out of its recipient's queue: it no longer counts against maxQueuedPerAgent", async () => {
    const { bus, clock } = await startOwnedBus({ maxQueuedPerAgent: 2 });
    await register(bus, LEAD, DEV);
    const short = { routing: { timeout: "1s" } };
    const first = envelope(LEAD, DEV, short);
    const second = envelope(LEAD, DEV, short);
    expect((await call(bus, "POST", "/messages/send", first)).status).toBe(202);
    expect((await call(bus, "POST", "/messages/send", second)).status).toBe(202);
    expect((await call(bus, "POST", "/messages/send", envelope(LEAD, DEV))).status).toBe(429);
    clock.increment(1_000);
    expect(statusOf(bus, first["message_id"] as string)).toBe("dead");
    expect(statusOf(bus, second["message_id"] as string)).toBe("dead");
    const third = envelope(LEAD, DEV);
    expect((await call(bus, "POST", "/messages/send", third)).status).toBe(202);
    // The dead ones are never written when the agent connects; the live one is.
    const agent = await connect(bus, DEV);
    await until(() => agent.received.length === 1);
    await flush();
    expect(agent.received.map((received) => received.message_id)).toEqual([third["message_id"]]);
  });

  it("evicts the bus's workflows and deliveries from a runtime it does not own when it stops", async () => {
    const { bus, runtime } = await startOwnedBus();
    await register(bus, LEAD, DEV);
    createWorkflow(bus);
    await call(bus, "POST", "/messages/send", envelope(LEAD, DEV));
    expect(runtime.pooledCount("workflow")).toBe(1);
    expect(runtime.pooledCount("delivery")).toBe(1);
    await bus.stop();
    expect(runtime.pooledCount("workflow")).toBe(0);
    expect(runtime.pooledCount("delivery")).toBe(0);
  });
});

describe("metrics without a scan", () => {
  it("counts sessions by status and agents as the listings do, through completion, termination and eviction", async () => {
    const { bus, clock } = await startOwnedBus();
    await register(bus, DEV);
    const [first, second, third] = [createWorkflow(bus), createWorkflow(bus), createWorkflow(bus)] as [string, string, string];
    bus.sessionManager.completeSession(first, { summary: "ok" });
    bus.sessionManager.terminateSession(second, { reason: "no" });
    await rawConnect(bus, DEV);
    const byStatus = (status: string) => bus.sessionManager.listSessions().filter((session) => session.status === status).length;
    const expectCounts = async (): Promise<void> => {
      const metrics = (await call(bus, "GET", "/metrics")).body;
      expect(metrics.sessions).toEqual({
        total: bus.sessionManager.listSessions().length,
        active: byStatus("active"),
        completed: byStatus("completed"),
        terminated: byStatus("terminated"),
      });
      expect(metrics.agents.known).toBe(bus.listAgents().length);
      expect(metrics.agents.online).toBe(bus.listAgents().filter((agent) => agent.online).length);
    };
    await expectCounts();
    clock.increment(RETENTION_MS);
    await call(bus, "DELETE", `/sessions/${third}`);
    await expectCounts();
    expect((await call(bus, "GET", "/metrics")).body.sessions.total).toBe(0);
  });
});

describe("one event hub", () => {
  it("delivers message.* and workflow.* events to runtime.on and bus.on alike, numbered in one sequence", async () => {
    const { bus, runtime } = await startOwnedBus();
    const fromRuntime: Array<{ seq: number; type: string }> = [];
    const fromBus: Array<{ seq: number; type: string }> = [];
    runtime.on("*", (event) => {
      if (/^(message|workflow)\./.test(event.type)) fromRuntime.push({ seq: event.seq, type: event.type });
    });
    bus.on("*", (event) => {
      if (/^(message|workflow)\./.test(event.type)) fromBus.push({ seq: event.seq, type: event.type });
    });
    await register(bus, LEAD, DEV);
    const sessionId = createWorkflow(bus);
    const agent = await rawConnect(bus, DEV);
    const message = envelope(LEAD, DEV);
    await call(bus, "POST", "/messages/send", message);
    await until(() => agent.frames.length === 1);
    agent.ack(message["message_id"] as string);
    await until(() => statusOf(bus, message["message_id"] as string) === "acknowledged");
    await call(bus, "DELETE", `/sessions/${sessionId}`);
    expect(fromBus).toEqual(fromRuntime);
    expect(fromBus.map((event) => event.type)).toEqual([
      "workflow.created",
      "message.accepted",
      "message.delivered",
      "message.acknowledged",
      "workflow.terminated",
      "workflow.evicted",
    ]);
    const seqs = fromBus.map((event) => event.seq);
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  });
});
