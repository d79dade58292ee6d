/**
 * A2A across the nodes of a cluster (issue 15, docs/cluster.md "A2A across nodes"), on a real NATS JetStream and a
 * real PostgreSQL, with the SDK's own client: a task or context one node serves is answered through any other node
 * as that node answers it (get, cancel, resubscribe, messages continuing a context or a task, streams), in v1.0 and
 * v0.3; an id no node knows is TaskNotFound everywhere; while the serving node is dead and not yet taken over the
 * answer is 503 (ask again), and once a survivor took it over, the context goes on there, the task that was running
 * failed.
 */
import { Role, Task, TaskState, type SendMessageRequest, type StreamResponse } from "@a2a-js/sdk";
import { afterEach, describe, expect, it } from "vitest";
import { CommunicationBus, createRuntime, openPostgresStore, type Agent, type Runtime } from "../../src/index.js";
import { a2aRecordId, contextSessionOf } from "../../src/a2a/a2a-records.js";
import { INTERRUPTED_TASK_MESSAGE } from "../../src/a2a/task-store.js";
import { answerOf, asTask, clientFor, collect, describeEvent, message, stateName, statusTextOf } from "../a2a/client.js";
import { connect, register, TEST_KEY, until } from "../bus/support.js";
import { createControlledAgent, type ControlledAgent } from "../support/controlled-agent.js";
import { useEngines } from "../support/engines.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { rejectionOf } from "../support/runtime.js";

/** A remote agent that registers on the bus and connects over WebSocket. */
const QA = "claude-code://qa";

let nats: NatsServer;
let postgres: PostgresServer;
let testNumber = 0;

useEngines((engines) => ({ nats, postgres } = engines));

/** An agent that answers with how many turns of its session came before, streaming its answer word by word. */
const writer: Agent = {
  id: "writer",
  prompt: async (ctx) => {
    const text = `${ctx.prompt}: turn ${ctx.history.length / 2 + 1}`;
    for (const piece of text.match(/\S+\s*/g) ?? []) ctx.emit(piece);
    return { text };
  },
};

/** An agent that asks which city before it books. */
const booker: Agent = {
  id: "booker",
  prompt: async (ctx) => (ctx.history.length === 0 ? { text: "Which city?", stopReason: "input_required" } : { text: `Booked in ${ctx.prompt}` }),
};

/** One node of a test's cluster: a bus given a runtime with the three agents, `slow` answering when the test says. */
interface TestNode {
  bus: CommunicationBus;
  runtime: Runtime;
  slow: ControlledAgent;
  /** The nodes this one took over (its `cluster.takeover` events: announced once the takeover ended). */
  takeovers: string[];
}

const running: TestNode[] = [];

afterEach(async () => {
  await Promise.allSettled(
    running.splice(0).map(async (node) => {
      await node.bus.stop();
      await node.runtime.stop();
    }),
  );
});

/** A cluster of its own for each test: its PostgreSQL schema and its lease bucket. */
function newCluster(leaseMs = 1_000): { schema: string; bucket: string; leaseMs: number } {
  testNumber += 1;
  return { schema: `a2a_${process.pid}_${testNumber}`, bucket: `a2a_${process.pid}_${testNumber}`, leaseMs };
}

async function startNode(
  cluster: { schema: string; bucket: string; leaseMs: number },
  nodeId: string,
  { maxConcurrentRequests }: { maxConcurrentRequests?: number } = {},
): Promise<TestNode> {
  const slow = createControlledAgent("slow");
  const runtime = createRuntime({
    agents: [writer, booker, slow.agent],
    ...(maxConcurrentRequests === undefined ? {} : { maxConcurrentRequests }),
    store: () => openPostgresStore({ url: postgres.url(), exclusive: false, schema: cluster.schema }),
  });
  const bus = new CommunicationBus({
    runtime,
    host: "127.0.0.1",
    port: 0,
    apiKey: TEST_KEY,
    closeGraceMs: 50,
    env: {},
    cluster: { url: nats.url, nodeId, leaseMs: cluster.leaseMs, leaseBucket: cluster.bucket },
  });
  const takeovers: string[] = [];
  runtime.on("cluster.takeover", (event) => takeovers.push((event as { fromNode: string }).fromNode));
  await bus.start();
  const node = { bus, runtime, slow, takeovers };
  running.push(node);
  return node;
}

/** The SDK's client for agent `agentId` of `node` (v1.0, or v0.3 with `legacy`). */
function clientOf(node: TestNode, agentId: string, legacy = false): ReturnType<typeof clientFor> {
  return clientFor(`${node.bus.url}/a2a/${agentId}/`, { legacy });
}

/** A raw JSON-RPC request (v1.0) to agent `agentId` of `node`: its HTTP status and body. */
async function rpc(node: TestNode, agentId: string, method: string, params: Record<string, unknown>): Promise<{ status: number; body: { result?: unknown } }> {
  const response = await fetch(`${node.bus.url}/a2a/${agentId}/`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-agent-api-key": TEST_KEY, "a2a-version": "1.0" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 7, method, params }),
  });
  return { status: response.status, body: (await response.json()) as { result?: unknown } };
}

/** Waits until `condition` holds (it may ask over the network), at most `timeoutMs`. */
async function eventually(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** `request`, answered as soon as its task exists (not when it ends). */
function atOnce(request: SendMessageRequest): SendMessageRequest {
  return { ...request, configuration: { acceptedOutputModes: [], taskPushNotificationConfig: undefined, returnImmediately: true } };
}

/** Whether the A2A task record of `taskId` names `nodeId`. */
async function taskRecordNames(node: TestNode, agentId: string, taskId: string, nodeId: string): Promise<boolean> {
  const record = (await node.runtime.store.get("a2a_tasks", a2aRecordId(agentId, taskId))) as { node?: string } | undefined;
  return record?.node === nodeId;
}

describe("A2A on any node of a cluster", () => {
  it("gets, cancels and resubscribes through node B the tasks node A serves, as node A answers them", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const [viaA, viaB] = [await clientOf(a, "slow"), await clientOf(b, "slow")];

    // Created on node-a, not answered yet, and asked at once on node-b: its record is durable before its id is told.
    const created = asTask(await viaA.sendMessage(atOnce(message("Take your time"))));
    expect((await viaB.getTask({ tenant: "", id: created.id, historyLength: undefined })).contextId).toBe(created.contextId);
    await until(() => a.slow.prompts.length === 1);
    const got = await viaB.getTask({ tenant: "", id: created.id, historyLength: undefined });
    expect(got).toEqual(await viaA.getTask({ tenant: "", id: created.id, historyLength: undefined }));
    expect(got).toMatchObject({ id: created.id, contextId: created.contextId, status: { state: TaskState.TASK_STATE_WORKING } });

    // A stream through node-b of node-a's running task: it starts with the task and carries the rest.
    const resubscribed = viaB.resubscribeTask({ tenant: "", id: created.id });
    const first = await resubscribed.next();
    a.slow.current().ctx.emit("Done ");
    a.slow.current().reply({ text: "Done slowly" });
    const rest: StreamResponse[] = [];
    for await (const event of resubscribed) rest.push(event);
    expect(describeEvent(first.value as StreamResponse)).toBe("task:working");
    expect(rest.map(describeEvent)).toEqual(["artifact:replace:Done slowly", "status:completed"]);
    expect(answerOf(await viaB.getTask({ tenant: "", id: created.id, historyLength: undefined }))).toBe("Done slowly");

    // Cancelled through node-b: node-a's prompt is aborted there, and the task ends canceled wherever asked.
    const another = asTask(await viaA.sendMessage(atOnce(message("Never mind"))));
    await until(() => a.slow.prompts.length === 2);
    const cancelled = await viaB.cancelTask({ tenant: "", id: another.id, metadata: undefined });
    expect(stateName(cancelled.status?.state)).toBe("canceled");
    expect(a.slow.prompts[1]?.ctx.signal.aborted).toBe(true);
    expect(stateName((await viaA.getTask({ tenant: "", id: another.id, historyLength: undefined })).status?.state)).toBe("canceled");
    // A refusal comes back as node-a gives it: a completed task cannot be cancelled.
    const refused = await rejectionOf(viaB.cancelTask({ tenant: "", id: created.id, metadata: undefined }));
    expect(refused.name).toBe("TaskNotCancelableError");
    expect(b.slow.prompts).toEqual([]);
  }, 30_000);

  it("continues through node B a context node A serves: same context, its history kept, streamed, and listed", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const [viaA, viaB] = [await clientOf(a, "writer"), await clientOf(b, "writer")];

    const first = asTask(await viaA.sendMessage(message("One")));
    const second = asTask(await viaB.sendMessage(message("Two", { contextId: first.contextId })));
    expect(answerOf(second)).toBe("Two: turn 2");
    expect(second.contextId).toBe(first.contextId);
    // One session for the context, on node-a: node-b opened none.
    expect(a.runtime.health().sessions.total).toBe(1);
    expect(b.runtime.health().sessions.total).toBe(0);

    const streamed = await collect(viaB.sendMessageStream(message("Three", { contextId: first.contextId })));
    expect(streamed.map(describeEvent)).toEqual([
      "task:submitted",
      "status:working",
      "artifact:replace:Three: ",
      "artifact:append:turn ",
      "artifact:append:3",
      "artifact:replace:Three: turn 3",
      "status:completed",
    ]);
    const listed = await viaB.listTasks({
      tenant: "",
      contextId: first.contextId,
      status: TaskState.TASK_STATE_UNSPECIFIED,
      pageToken: "",
      statusTimestampAfter: undefined,
    });
    expect(listed.tasks).toHaveLength(3);
    expect(b.runtime.health().sessions.total).toBe(0);
  }, 30_000);

  it("continues through node B a task node A serves that waits for input, and speaks v0.3 across nodes too", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const asked = asTask(await (await clientOf(a, "booker")).sendMessage(message("Book a table")));
    expect(stateName(asked.status?.state)).toBe("input_required");

    const answered = asTask(await (await clientOf(b, "booker")).sendMessage(message("Paris", { contextId: asked.contextId, taskId: asked.id })));
    expect(answered.id).toBe(asked.id);
    expect(answerOf(answered)).toBe("Booked in Paris");
    expect(answered.history.map((each) => [Role[each.role], each.parts[0]?.content])).toEqual([
      ["ROLE_USER", { $case: "text", value: "Book a table" }],
      ["ROLE_AGENT", { $case: "text", value: "Which city?" }],
      ["ROLE_USER", { $case: "text", value: "Paris" }],
    ]);

    const legacyViaA = await clientOf(a, "writer", true);
    const legacyViaB = await clientOf(b, "writer", true);
    const started = asTask(await legacyViaA.sendMessage(message("Old")));
    const got = await legacyViaB.getTask({ tenant: "", id: started.id, historyLength: undefined });
    expect(answerOf(got)).toBe("Old: turn 1");
    const continued = await collect(legacyViaB.sendMessageStream(message("Older", { contextId: started.contextId })));
    expect(continued.map(describeEvent).at(-2)).toBe("artifact:replace:Older: turn 2");
  }, 30_000);

  it("finds at once, through node B, the task and the context of a stream node A just began", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const [viaA, viaB] = [await clientOf(a, "slow"), await clientOf(b, "slow")];

    const stream = viaA.sendMessageStream(message("First"));
    const first = (await stream.next()).value as StreamResponse;
    if (first.payload?.$case !== "task") throw new Error(`the stream began with ${describeEvent(first)}`);
    const { id: taskId, contextId } = first.payload.value;
    expect((await viaB.getTask({ tenant: "", id: taskId, historyLength: undefined })).id).toBe(taskId);
    // The context's next message, through node-b, waits behind the first in node-a's session.
    const second = viaB.sendMessage(message("Second", { contextId }));
    await until(() => a.slow.prompts.length === 1);
    a.slow.current().reply({ text: "First done" });
    await collect(stream);
    await until(() => a.slow.prompts.length === 2);
    expect(a.slow.current().ctx.history).toEqual([
      { role: "user", content: "First" },
      { role: "assistant", content: "First done" },
    ]);
    a.slow.current().reply({ text: "Second done" });
    expect(asTask(await second)).toMatchObject({ contextId });
    expect(b.slow.prompts).toEqual([]);
  }, 30_000);

  it("forgets a context whose session closed, on every node: its next message starts afresh where it arrives", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const first = asTask(await (await clientOf(a, "writer")).sendMessage(message("One")));
    const sessionId = await contextSessionOf(a.runtime.store, "writer", first.contextId);
    expect(sessionId).toBeDefined();

    await a.runtime.bridge.sessionsClose({ sessionId: sessionId! });
    await until(() => a.runtime.health().sessions.total === 0);
    await a.runtime.store.flush();
    expect(await contextSessionOf(b.runtime.store, "writer", first.contextId)).toBeUndefined();

    const again = asTask(await (await clientOf(b, "writer")).sendMessage(message("Again", { contextId: first.contextId })));
    expect(answerOf(again)).toBe("Again: turn 1");
    expect(b.runtime.health().sessions.total).toBe(1);
  }, 30_000);

  it("counts a forwarded request against maxConcurrentRequests while it lasts, and stops relaying a stream its client left", async () => {
    // A lease longer than the wait below: the slot comes back because node-a ends the stream, not by node-b's silence timeout.
    const cluster = newCluster(10_000);
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b", { maxConcurrentRequests: 1 })];
    const running = asTask(await (await clientOf(a, "slow")).sendMessage(atOnce(message("Long"))));
    const viaB = await clientOf(b, "slow");

    const left = new AbortController();
    const resubscribed = viaB.resubscribeTask({ tenant: "", id: running.id }, { signal: left.signal });
    expect(describeEvent((await resubscribed.next()).value as StreamResponse)).toBe("task:working");
    expect(await rpc(b, "slow", "GetTask", { id: running.id })).toMatchObject({
      status: 429,
      body: { error: { type: "CAPACITY", details: { maxConcurrentRequests: 1 } } },
    });

    // The client leaves: node-b tells node-a to stop writing, and gets its slot back once node-a has.
    left.abort();
    await eventually(async () => (await rpc(b, "slow", "GetTask", { id: running.id })).status === 200);
    await until(() => a.slow.prompts.length === 1);
    a.slow.current().reply({ text: "Done" });
    // Asked until answered: node-b's one slot may still be taken a moment (429) while node-a ends the relay under load.
    await eventually(async () => {
      const got = await rpc(b, "slow", "GetTask", { id: running.id });
      return got.status === 200 && answerOf(Task.fromJSON(got.body.result)) === "Done";
    });
  }, 30_000);

  it("hands its contexts and tasks over when it stops: the survivor answers for them, the context goes on there", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const first = asTask(await (await clientOf(a, "writer")).sendMessage(message("One")));

    await a.bus.stop();
    await a.runtime.stop();
    // Once node-b ended its takeover (while it restores what it took, it answers 503: ask again).
    await until(() => b.takeovers.includes("node-a"), 10_000);
    expect(b.runtime.health().sessions.total).toBe(1);
    const viaB = await clientOf(b, "writer");
    expect(answerOf(await viaB.getTask({ tenant: "", id: first.id, historyLength: undefined }))).toBe("One: turn 1");
    const second = asTask(await viaB.sendMessage(message("Two", { contextId: first.contextId })));
    expect(answerOf(second)).toBe("Two: turn 2");
    expect(b.runtime.health().sessions.total).toBe(1);
  }, 30_000);

  it("answers through node B for a task of an agent registered on node A, and takes its new tasks there once the registration reached it", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    await register(a.bus, QA);
    await connect(a.bus, QA, {
      onMessage: async (envelope, context) => {
        if (envelope.message_type === "task_request") await context.reply({ text: `Reviewed: ${String(envelope.payload["prompt"])}` });
      },
    });
    const reviewed = asTask(await (await clientOf(a, encodeURIComponent(QA))).sendMessage(message("the patch")));
    expect(answerOf(reviewed)).toBe("Reviewed: the patch");

    const got = await rpc(b, encodeURIComponent(QA), "GetTask", { id: reviewed.id });
    expect(got.status).toBe(200);
    expect(answerOf(Task.fromJSON(got.body.result))).toBe("Reviewed: the patch");
    // The registration reached node-b (docs/cluster.md, "Registrations on every node"): it serves new tasks of the
    // agent too, delivered to its socket on node-a through the cluster's stream.
    await until(() => b.bus.listAgents().some((agent) => agent.agent_id === QA), 5_000);
    const fresh = asTask(await (await clientOf(b, encodeURIComponent(QA))).sendMessage(message("the fix")));
    expect(answerOf(fresh)).toBe("Reviewed: the fix");
  }, 30_000);

  it("keeps its tasks and contexts across a restart under its id: answered, and continued, as before", async () => {
    const cluster = newCluster();
    const before = await startNode(cluster, "node-a");
    const one = asTask(await (await clientOf(before, "writer")).sendMessage(message("One")));
    const asked = asTask(await (await clientOf(before, "booker")).sendMessage(message("Book a table")));
    await before.bus.stop();
    await before.runtime.stop();
    running.splice(running.indexOf(before), 1);

    const after = await startNode(cluster, "node-a");
    const [writerClient, bookerClient] = [await clientOf(after, "writer"), await clientOf(after, "booker")];
    expect(answerOf(await writerClient.getTask({ tenant: "", id: one.id, historyLength: undefined }))).toBe("One: turn 1");
    expect(answerOf(asTask(await writerClient.sendMessage(message("Two", { contextId: one.contextId }))))).toBe("Two: turn 2");
    expect(answerOf(asTask(await bookerClient.sendMessage(message("Paris", { contextId: asked.contextId, taskId: asked.id }))))).toBe("Booked in Paris");
    expect(after.runtime.health().sessions.total).toBe(2);
  }, 30_000);

  it("answers 503 (ask again) for a new task whose record the store does not take, and stops that task", async () => {
    const cluster = newCluster();
    const a = await startNode(cluster, "node-a");
    const viaA = await clientOf(a, "slow");
    // PostgreSQL refuses task records (and, since a failed batch is tried again first, everything after them).
    await postgres.query(`CREATE FUNCTION ${cluster.schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.collection = 'a2a_tasks' THEN RAISE EXCEPTION 'no task records today'; END IF; RETURN NEW; END $$`);
    await postgres.query(`CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON ${cluster.schema}.records FOR EACH ROW EXECUTE FUNCTION ${cluster.schema}.refuse()`);

    const refused = await rpc(a, "slow", "SendMessage", { message: { messageId: "m1", role: "ROLE_USER", parts: [{ text: "Unrecorded" }] } });
    expect(refused).toMatchObject({ status: 503, body: { error: { code: -32603, data: [{ reason: "UNAVAILABLE", metadata: { retryable: "true" } }] } } });
    const taskId = /could not make A2A task (\S+) durable/.exec(JSON.stringify(refused.body))?.[1];
    expect(taskId).toBeDefined();
    // Nobody could find that task, and its client never got its id: it is cancelled and forgotten here.
    expect((await rejectionOf(viaA.getTask({ tenant: "", id: taskId!, historyLength: undefined }))).name).toBe("TaskNotFoundError");
    // Its context's session, opened for it, runs nothing (a prompt that had begun was aborted).
    await until(() => a.runtime.health().sessions.total === 1 && a.runtime.health().sessions.busy === 0);
    expect(a.slow.prompts.every((prompt) => prompt.ctx.signal.aborted)).toBe(true);

    await postgres.query(`DROP TRIGGER refuse ON ${cluster.schema}.records`);
    const recorded = asTask(await viaA.sendMessage(atOnce(message("Recorded"))));
    expect(recorded.id).not.toBe("");
  }, 30_000);

  it("answers TaskNotFound on every node for a task id no node knows", async () => {
    const cluster = newCluster();
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    for (const node of [a, b]) {
      const client = await clientOf(node, "writer");
      for (const ask of [
        () => client.getTask({ tenant: "", id: "no-such-task", historyLength: undefined }),
        () => client.cancelTask({ tenant: "", id: "no-such-task", metadata: undefined }),
        () => client.sendMessage(message("Hello", { taskId: "no-such-task" })),
      ]) {
        expect((await rejectionOf(ask())).name).toBe("TaskNotFoundError");
      }
      const raw = await rpc(node, "writer", "GetTask", { id: "no-such-task" });
      expect(raw).toMatchObject({ status: 200, body: { id: 7, error: { code: -32001 } } });
    }
    // A task of one agent names nothing under another's URL, on the node that serves it or another.
    const task = asTask(await (await clientOf(a, "writer")).sendMessage(message("Mine")));
    for (const node of [a, b])
      expect((await rejectionOf((await clientOf(node, "booker")).getTask({ tenant: "", id: task.id, historyLength: undefined }))).name).toBe(
        "TaskNotFoundError",
      );
  }, 30_000);

  it("answers 503 (ask again) while the serving node is cut off and not taken over, then the context goes on on the survivor", async () => {
    // A lease of 3 s leaves time to ask node-b before it takes node-a over.
    const cluster = newCluster(3_000);
    const [a, b] = [await startNode(cluster, "node-a"), await startNode(cluster, "node-b")];
    const viaA = await clientOf(a, "slow");
    const viaB = await clientOf(b, "slow");
    const first = viaA.sendMessage(message("Design it"));
    await until(() => a.slow.prompts.length === 1);
    a.slow.current().reply({ text: "Designed" });
    const designed = asTask(await first);
    const interrupted = asTask(await viaA.sendMessage(atOnce(message("Build it", { contextId: designed.contextId }))));
    await until(() => a.slow.prompts.length === 2);

    // node-a is cut from NATS, as a killed node is for the others: it answers nothing more.
    await a.bus.cluster!.close();
    const unavailable = await rpc(b, "slow", "GetTask", { id: interrupted.id });
    expect(unavailable).toMatchObject({
      status: 503,
      body: { jsonrpc: "2.0", id: 7, error: { code: -32603, data: [{ reason: "UNAVAILABLE", metadata: { retryable: "true", nodeId: "node-a" } }] } },
    });
    const viaClient = await rejectionOf(viaB.sendMessage(message("Review it", { contextId: designed.contextId })));
    expect(viaClient.message).toMatch(/cannot answer now; ask again shortly .*No node node-a answers a2a now/);

    // Once node-b took node-a over: the task that was running failed, the context goes on there with its history.
    await until(() => b.takeovers.includes("node-a"), 15_000);
    expect(b.runtime.health().sessions.total).toBe(1);
    // node-a, its lease run out, answers nothing any more: 503 there too.
    expect(await rpc(a, "slow", "GetTask", { id: designed.id })).toMatchObject({ status: 503 });
    const failed = await viaB.getTask({ tenant: "", id: interrupted.id, historyLength: undefined });
    expect(stateName(failed.status?.state)).toBe("failed");
    expect(statusTextOf(failed)).toBe(INTERRUPTED_TASK_MESSAGE);
    expect(await taskRecordNames(b, "slow", interrupted.id, "node-b")).toBe(true);
    expect(answerOf(await viaB.getTask({ tenant: "", id: designed.id, historyLength: undefined }))).toBe("Designed");

    const reviewing = viaB.sendMessage(message("Review it", { contextId: designed.contextId }));
    await until(() => b.slow.prompts.length === 1);
    expect(b.slow.current().ctx.history).toEqual([
      { role: "user", content: "Design it" },
      { role: "assistant", content: "Designed" },
    ]);
    b.slow.current().reply({ text: "Reviewed" });
    const reviewed = asTask(await reviewing);
    expect(reviewed.contextId).toBe(designed.contextId);
    expect(answerOf(reviewed)).toBe("Reviewed");
  }, 40_000);
});
