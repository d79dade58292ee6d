/**
 * The supervisor owns and reaps the bus's actors (SPEC §3.6): workflow sessions and message deliveries live in
 * its pools, an ended workflow is evicted after `workflowRetentionMs`, `DELETE /sessions/:id` evicts one at
 * once, and a finished delivery keeps only its status record.
 */
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock, type AnyActor, type InspectionEvent } from "xstate";
import { createRuntime, type CommunicationBus, type Runtime } from "../../src/index.js";
import { call, CLOCK_START, connect, envelope, flush, rawConnect, register, SEED_AGENTS, SEED_PARTICIPANTS, SEED_STEPS, startBus, statusOf, until } from "../bus/support.js";

const { lead: LEAD, backend: DEV, qa: QA } = SEED_AGENTS;
const RETENTION_MS = 60_000;

const runtimes: Runtime[] = [];
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
});

/** A bus on a simulated clock over a runtime of the test's own, whose actors the test can count. */
async function startOwnedBus(options: { maxWorkflowSessions?: number; maxQueuedPerAgent?: number; shardSize?: number; inspect?: (event: InspectionEvent) => void } = {}) {
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
  const bus = await startBus({ clock, runtime, workflowRetentionMs: RETENTION_MS, ...(options.maxQueuedPerAgent ? { maxQueuedPerAgent: options.maxQueuedPerAgent } : {}) });
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

  it("asks only the shard that holds a workflow to evict it, active or ended, however many shards there are", async () => {
    const evicts: Array<{ shardId: string; childId: string }> = [];
    const { bus, clock, runtime } = await startOwnedBus({
      shardSize: 2,
      inspect: (inspection) => {
        if (inspection.type === "@xstate.event" && inspection.event.type === "SHARD.EVICT") evicts.push({ shardId: (inspection.actorRef as AnyActor).id, childId: inspection.event["childId"] as string });
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
    expect(bus.sessionManager.listSessions().map((session) => session.session_id)).toEqual(sessionIds.filter((sessionId) => ![first, third, last].includes(sessionId)));
    expect(runtime.pooledCount("workflow")).toBe(3);
    // Their retention timers are gone with them: nothing else is evicted later.
    clock.increment(RETENTION_MS);
    expect(runtime.pooledCount("workflow")).toBe(3);
  });

  it("gives each pool shard a logic of its own, so that XState's transition cache per event type goes with the shard", async () => {
    // Each ended child sends its shard an event type of its own (xstate.done.actor.<id>), which XState caches
    // on the state nodes of the shard's logic for as long as that logic lives.
    const shards = new Map<string, AnyActor>();
    const { bus, clock, runtime } = await startOwnedBus({
      shardSize: 2,
      inspect: (inspection) => {
        const actor = inspection.actorRef as AnyActor;
        if (inspection.type === "@xstate.actor" && /^(workflows|deliveries)-/.test(actor.id)) shards.set(actor.id, actor);
      },
    });
    const sessionIds = Array.from({ length: 4 }, () => createWorkflow(bus));
    await register(bus, DEV);
    // From an unregistered sender, which is told nothing when they die.
    for (let index = 0; index < 3; index += 1) await call(bus, "POST", "/messages/send", envelope("test://outsider", DEV, { routing: { timeout: "1s" } }));
    expect([...shards.keys()].sort()).toEqual(["deliveries-0", "deliveries-1", "workflows-0", "workflows-1"]);
    const logics = new Set([...shards.values()].map((shard) => shard.logic));
    expect(logics.size).toBe(4);
    // Every shard still does its work: ended workflows are evicted, dead messages reaped.
    for (const sessionId of sessionIds) bus.sessionManager.completeSession(sessionId, { summary: "ok" });
    clock.increment(RETENTION_MS);
    expect(runtime.pooledCount("workflow")).toBe(0);
    expect(runtime.pooledCount("delivery")).toBe(0);
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
  it("reaps a delivery at its final state and keeps only its status record", async () => {
    const { bus, runtime, childrenOf } = await startOwnedBus();
    await register(bus, LEAD, DEV);
    const agent = await rawConnect(bus, DEV);
    const message = envelope(LEAD, DEV);
    await call(bus, "POST", "/messages/send", message);
    await until(() => agent.frames.length === 1);
    expect(runtime.pooledCount("delivery")).toBe(1);
    expect(childrenOf("deliveries-")).toEqual([`message:${message["message_id"]}`]);
    agent.ack(message["message_id"] as string);
    await until(() => statusOf(bus, message["message_id"] as string) === "acknowledged");
    expect(runtime.pooledCount("delivery")).toBe(0);
    expect(childrenOf("deliveries-")).toEqual([]);
    expect((await call(bus, "GET", `/messages/${message["message_id"]}`)).body).toEqual({ message_id: message["message_id"], status: "acknowledged", attempts: 1 });
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
