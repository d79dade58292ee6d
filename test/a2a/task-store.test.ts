/**
 * The bounded store of served A2A tasks: each agent sees its own, and past the bound the oldest settled task
 * goes first.
 */
import { TaskState, type ListTasksRequest, type Task } from "@a2a-js/sdk";
import { ServerCallContext } from "@a2a-js/sdk/server";
import { describe, expect, it } from "vitest";
import { BoundedTaskStore } from "../../src/a2a/task-store.js";

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
