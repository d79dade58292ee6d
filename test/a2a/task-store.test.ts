/**
 * The bounded store of served A2A tasks: each agent sees its own, and past the bound the oldest settled task
 * goes first.
 */
import { Task as TaskJson, TaskState, type ListTasksRequest, type Task } from "@a2a-js/sdk";
import { ServerCallContext } from "@a2a-js/sdk/server";
import { describe, expect, it } from "vitest";
import { A2aRecords, a2aRecordId, loadA2aTasks, type A2aTaskRecord } from "../../src/a2a/a2a-records.js";
import { BoundedTaskStore, INTERRUPTED_TASK_MESSAGE } from "../../src/a2a/task-store.js";
import type { RecordOwner } from "../../src/cluster/record-owner.js";
import { createMemoryStore, type Store } from "../../src/index.js";
import type { Fence } from "../../src/store/store.js";
import { rejectionOf } from "../support/runtime.js";

const context = new ServerCallContext();

function task(id: string, state: TaskState, contextId = "ctx"): Task {
  return {
    id,
    contextId,
    status: { state, message: undefined, timestamp: new Date(1_700_000_000_000).toISOString() },
    artifacts: [],
    history: [],
    metadata: undefined,
  };
}

const listAll: ListTasksRequest = { tenant: "", contextId: "", status: TaskState.TASK_STATE_UNSPECIFIED, pageToken: "", statusTimestampAfter: undefined };

describe("BoundedTaskStore", () => {
  it("keeps each agent's tasks apart: a task id of one agent names nothing under another", async () => {
    const store = new BoundedTaskStore(10);
    await store.forAgent("writer").save(task("t1", TaskState.TASK_STATE_COMPLETED), context);

    expect(await store.forAgent("writer").load("t1", context)).toMatchObject({ id: "t1" });
    expect(await store.forAgent("coder").load("t1", context)).toBeUndefined();
  });

  it("forgets the oldest settled task past its bound, keeping running ones", async () => {
    const store = new BoundedTaskStore(2);
    const writer = store.forAgent("writer");
    await writer.save(task("running", TaskState.TASK_STATE_WORKING), context);
    await writer.save(task("done", TaskState.TASK_STATE_COMPLETED), context);
    await writer.save(task("new", TaskState.TASK_STATE_SUBMITTED), context);

    expect(store.size).toBe(2);
    expect(await writer.load("done", context)).toBeUndefined();
    expect(await writer.load("running", context)).toMatchObject({ id: "running" });
    expect(await writer.load("new", context)).toMatchObject({ id: "new" });
  });

  it("lists an agent's tasks newest first, filtered by context and paged", async () => {
    const store = new BoundedTaskStore(10);
    const writer = store.forAgent("writer");
    for (const id of ["a", "b", "c"]) await writer.save(task(id, TaskState.TASK_STATE_COMPLETED), context);
    await writer.save(task("other", TaskState.TASK_STATE_COMPLETED, "elsewhere"), context);
    await store.forAgent("coder").save(task("theirs", TaskState.TASK_STATE_COMPLETED), context);

    const first = await writer.list({ ...listAll, contextId: "ctx", pageSize: 2 }, context);
    const second = await writer.list({ ...listAll, contextId: "ctx", pageSize: 2, pageToken: first.nextPageToken }, context);

    expect(first.tasks.map((each) => each.id)).toEqual(["c", "b"]);
    expect(first.totalSize).toBe(3);
    expect(second.tasks.map((each) => each.id)).toEqual(["a"]);
    expect(second.nextPageToken).toBe("");
  });
});

/** A cluster node's records in a memory store, its lease held until `lose()`; `puts` counts the task records written. */
function clusterRecords(): { store: Store; records: A2aRecords; owner: RecordOwner & { lose(): void }; puts: () => number } {
  const store = createMemoryStore();
  let fence: Fence | undefined = { resource: "node:node-a", token: 1 };
  let puts = 0;
  const put = store.put.bind(store);
  store.put = (collection, id, value, options) => {
    if (collection === "a2a_tasks") puts += 1;
    put(collection, id, value, options);
  };
  const owner = { nodeId: "node-a", fence: () => fence, lose: () => (fence = undefined) };
  return { store, records: new A2aRecords(() => store, owner), owner, puts: () => puts };
}

function recordOf(store: Store, agentId: string, taskId: string): Promise<A2aTaskRecord | undefined> {
  return store.get("a2a_tasks", a2aRecordId(agentId, taskId)) as Promise<A2aTaskRecord | undefined>;
}

describe("BoundedTaskStore on a cluster node", () => {
  it("records a new task before its save resolves, again only when its state changes, and forgets the record with the task", async () => {
    const { store, records, puts } = clusterRecords();
    const tasks = new BoundedTaskStore(2, records);
    const writer = tasks.forAgent("writer");

    await writer.save(task("t1", TaskState.TASK_STATE_SUBMITTED), context);
    // Written before the save resolved (tests on PostgreSQL show another node finds it then: test/cluster/a2a-cluster.test.ts).
    expect(await recordOf(store, "writer", "t1")).toMatchObject({
      v: 1,
      node: "node-a",
      agentId: "writer",
      taskId: "t1",
      task: { status: { state: "TASK_STATE_SUBMITTED" } },
    });
    expect(puts()).toBe(1);

    await writer.save(
      {
        ...task("t1", TaskState.TASK_STATE_SUBMITTED),
        artifacts: [{ artifactId: "a", name: "answer", description: "", parts: [], metadata: undefined, extensions: [] }],
      },
      context,
    );
    expect(puts()).toBe(1);
    await writer.save(task("t1", TaskState.TASK_STATE_WORKING), context);
    expect(puts()).toBe(2);

    await writer.save(task("t2", TaskState.TASK_STATE_COMPLETED), context);
    await writer.save(task("t3", TaskState.TASK_STATE_COMPLETED), context);
    await store.flush();
    expect(await recordOf(store, "writer", "t2")).toBeUndefined();
    expect(await recordOf(store, "writer", "t1")).toMatchObject({ task: { status: { state: "TASK_STATE_WORKING" } } });
    expect((await loadA2aTasks(store, "node-a")).map((record) => record.taskId).sort()).toEqual(["t1", "t3"]);
  });

  it("writes no record for a task forgotten as it is saved (settled while every other kept task runs)", async () => {
    const { store, records } = clusterRecords();
    const writer = new BoundedTaskStore(2, records).forAgent("writer");
    await writer.save(task("t1", TaskState.TASK_STATE_WORKING), context);
    await writer.save(task("t2", TaskState.TASK_STATE_WORKING), context);
    await writer.save(task("t3", TaskState.TASK_STATE_COMPLETED), context);
    await store.flush();
    expect(await writer.load("t3", context)).toBeUndefined();
    expect((await loadA2aTasks(store, "node-a")).map((record) => record.taskId).sort()).toEqual(["t1", "t2"]);
  });

  it("refuses a new task with TRANSPORT (503) while the node does not hold its lease: no other node could find it", async () => {
    const { store, records, owner } = clusterRecords();
    owner.lose();
    const failure = await rejectionOf(new BoundedTaskStore(10, records).forAgent("writer").save(task("t1", TaskState.TASK_STATE_SUBMITTED), context));

    expect(failure).toMatchObject({ type: "TRANSPORT", details: { unavailable: true, retryable: true, nodeId: "node-a" } });
    expect(await recordOf(store, "writer", "t1")).toBeUndefined();
  });

  it("keeps the tasks a takeover brings as their records say, failing those still running; replacing, it forgets the others", async () => {
    const { store, records } = clusterRecords();
    const tasks = new BoundedTaskStore(10, records, () => 1_800_000_000_000);
    await tasks.forAgent("writer").save(task("mine", TaskState.TASK_STATE_COMPLETED), context);
    const stored = (id: string, state: TaskState): A2aTaskRecord => ({
      v: 1,
      node: "node-a",
      agentId: "writer",
      taskId: id,
      task: TaskJson.toJSON(task(id, state)),
    });

    tasks.adopt([stored("running", TaskState.TASK_STATE_WORKING), stored("asking", TaskState.TASK_STATE_INPUT_REQUIRED)], { replace: false });

    const running = await tasks.forAgent("writer").load("running", context);
    expect(running?.status).toMatchObject({ state: TaskState.TASK_STATE_FAILED, timestamp: new Date(1_800_000_000_000).toISOString() });
    expect(running?.status?.message?.parts[0]?.content).toEqual({ $case: "text", value: INTERRUPTED_TASK_MESSAGE });
    expect(await recordOf(store, "writer", "running")).toMatchObject({ task: { status: { state: "TASK_STATE_FAILED" } } });
    expect((await tasks.forAgent("writer").load("asking", context))?.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(tasks.has("writer", "mine")).toBe(true);

    tasks.adopt([stored("asking", TaskState.TASK_STATE_INPUT_REQUIRED)], { replace: true });
    expect(tasks.size).toBe(1);
    expect(tasks.has("writer", "mine")).toBe(false);
  });
});
