/**
 * The A2A tasks troupe serves, kept in memory and bounded: past `maxTasks`, the task saved longest ago that
 * no longer runs (ended, or waiting for input) is forgotten first, so that a client sending message after
 * message cannot grow the server's memory. Each agent sees only its own tasks (`forAgent`): a task id of one
 * agent names nothing under another's URL.
 *
 * On a cluster node (`records`), each task also has its record in the shared store (./a2a-records.ts): written
 * when the task is first saved, before the SDK lets its id reach the client (its `save` is awaited), then at each
 * change of its state; removed when the task is forgotten. A node that takes tasks over (`adopt`) keeps them as
 * their records say, the running ones failed.
 */
import { Task, TaskState, type ListTasksRequest, type ListTasksResponse } from "@a2a-js/sdk";
import type { ServerCallContext, TaskStore } from "@a2a-js/sdk/server";
import { toBridgeError } from "../errors.js";
import { agentScopedKey } from "./agent-scoped-key.js";
import type { A2aRecords, A2aTaskRecord } from "./a2a-records.js";
import { agentMessage } from "./parts.js";

/** The page size of `ListTasks` when the client gives none (the protocol's default). */
const DEFAULT_LIST_PAGE_SIZE = 50;

/** States of a task that is not running: ended, or waiting for the client. */
const SETTLED_STATES = new Set<TaskState>([
  TaskState.TASK_STATE_COMPLETED,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_CANCELED,
  TaskState.TASK_STATE_REJECTED,
  TaskState.TASK_STATE_INPUT_REQUIRED,
  TaskState.TASK_STATE_AUTH_REQUIRED,
]);

/**
 * Where a request's call context notes a new task whose record the store did not take (`{ taskId, error }`): the
 * endpoint answers 503 (ask again) rather than the SDK's internal error, and stops the task nobody could find.
 */
export const UNRECORDED_TASK_STATE_KEY = "troupe.a2a.unrecordedTask";

/** The status message of a task taken over from a node that stopped while it ran. */
export const INTERRUPTED_TASK_MESSAGE = "The node that ran this task stopped while it was pending: it was not answered";

/** A kept task, and the state its record holds (on a cluster node). */
interface KeptTask {
  agentId: string;
  task: Task;
  recordedState?: TaskState | undefined;
}

/** Every agent's tasks, least recently saved first. */
export class BoundedTaskStore {
  private readonly tasks = new Map<string, KeptTask>();

  /** `records`: on a cluster node, where each task's record goes; `now`: the clock of a taken-over task's new status. */
  constructor(
    private readonly maxTasks: number,
    private readonly records?: A2aRecords,
    private readonly now: () => number = Date.now,
  ) {}

  /** How many tasks are kept. */
  get size(): number {
    return this.tasks.size;
  }

  /** Whether agent `agentId`'s task `taskId` is kept here. */
  has(agentId: string, taskId: string): boolean {
    return this.tasks.has(agentScopedKey(agentId, taskId));
  }

  /** Forgets agent `agentId`'s task `taskId`, and its record (a task its client was told failed to start). */
  forget(agentId: string, taskId: string): void {
    if (this.tasks.delete(agentScopedKey(agentId, taskId))) this.records?.deleteTask(agentId, taskId);
  }

  /** The store as one agent's request handler sees it. */
  forAgent(agentId: string): TaskStore {
    return {
      load: (taskId: string) => {
        const entry = this.tasks.get(agentScopedKey(agentId, taskId));
        return Promise.resolve(entry === undefined ? undefined : structuredClone(entry.task));
      },
      save: (task: Task, context: ServerCallContext) =>
        this.save(agentId, task).catch((error: unknown) => {
          context.state.set(UNRECORDED_TASK_STATE_KEY, { taskId: task.id, error });
          throw error;
        }),
      list: (params: ListTasksRequest, _context: ServerCallContext) => Promise.resolve(this.list(agentId, params)),
    };
  }

  /**
   * Keeps tasks whose records name this node (taken over from a dead node, kept by this node before a restart, or
   * kept while it had lost its lease), as the records say; a task that was still running is failed (its prompt died
   * with its node), and its record says so. `replace`: they are all this node keeps from now on (its lease taken
   * back: what others took over meanwhile is theirs). Those taken over count first against the bound.
   */
  adopt(stored: readonly A2aTaskRecord[], { replace = false }: { replace?: boolean } = {}): void {
    const adopted = new Map<string, KeptTask>();
    for (const record of stored) {
      let task: Task;
      try {
        task = Task.fromJSON(record.task);
      } catch (error) {
        process.emitWarning(`troupe: A2A task ${record.taskId} could not be read from its record: ${toBridgeError(error).message}`, { code: "TROUPE_RESTORE" });
        continue;
      }
      if (task.status === undefined || !SETTLED_STATES.has(task.status.state)) {
        task.status = {
          state: TaskState.TASK_STATE_FAILED,
          message: agentMessage(INTERRUPTED_TASK_MESSAGE, task.contextId, task.id),
          timestamp: new Date(this.now()).toISOString(),
        };
        this.records?.putTask(record.agentId, task.id, Task.toJSON(task));
      }
      adopted.set(agentScopedKey(record.agentId, task.id), { agentId: record.agentId, task, recordedState: task.status.state });
    }
    const kept = replace ? [] : [...this.tasks].filter(([key]) => !adopted.has(key));
    this.tasks.clear();
    for (const [key, entry] of [...adopted, ...kept]) this.tasks.set(key, entry);
    this.evict();
  }

  private async save(agentId: string, task: Task): Promise<void> {
    const key = agentScopedKey(agentId, task.id);
    const previous = this.tasks.get(key);
    this.tasks.delete(key);
    const entry: KeptTask = { agentId, task: structuredClone(task), recordedState: previous?.recordedState };
    this.tasks.set(key, entry);
    this.evict();
    // Forgotten at once (settled while every other kept task runs): no record may outlive it.
    if (this.tasks.get(key) !== entry) return;
    const state = task.status?.state;
    if (this.records === undefined || (previous !== undefined && previous.recordedState === state)) return;
    entry.recordedState = state;
    // A new task: durable before the SDK answers with it, so that any node finds it when the client asks next.
    if (previous === undefined) {
      try {
        await this.records.recordTask(agentId, task.id, Task.toJSON(task));
      } catch (error) {
        entry.recordedState = undefined;
        throw error;
      }
    } else this.records.putTask(agentId, task.id, Task.toJSON(task));
  }

  /** Forgets tasks past the bound: settled ones first, oldest first; a running one only when none is settled. */
  private evict(): void {
    while (this.tasks.size > this.maxTasks) {
      let victim: string | undefined;
      for (const [key, { task }] of this.tasks) {
        if (task.status !== undefined && SETTLED_STATES.has(task.status.state)) {
          victim = key;
          break;
        }
      }
      const key = victim ?? this.tasks.keys().next().value!;
      const { agentId, task } = this.tasks.get(key)!;
      this.tasks.delete(key);
      this.records?.deleteTask(agentId, task.id);
    }
  }

  /** `ListTasks`: one agent's tasks, newest first, filtered and paged (the page token is an offset). */
  private list(agentId: string, params: ListTasksRequest): ListTasksResponse {
    const { contextId, status, statusTimestampAfter, pageToken, includeArtifacts } = params;
    const pageSize = params.pageSize ?? DEFAULT_LIST_PAGE_SIZE;
    const after = statusTimestampAfter ? Date.parse(statusTimestampAfter) : undefined;
    const matching = [...this.tasks.values()]
      .filter((entry) => entry.agentId === agentId)
      .map((entry) => entry.task)
      .filter((task) => !contextId || task.contextId === contextId)
      .filter((task) => status === undefined || status === TaskState.TASK_STATE_UNSPECIFIED || task.status?.state === status)
      .filter((task) => after === undefined || Date.parse(task.status?.timestamp ?? "") > after)
      .reverse();
    const offset = pageToken ? Number(Buffer.from(pageToken, "base64url").toString("utf8")) || 0 : 0;
    const page = matching.slice(offset, offset + pageSize).map((task) => {
      const copy = structuredClone(task);
      if (includeArtifacts !== true) copy.artifacts = [];
      return copy;
    });
    const next = offset + page.length;
    return {
      tasks: page,
      nextPageToken: next < matching.length ? Buffer.from(String(next), "utf8").toString("base64url") : "",
      pageSize,
      totalSize: matching.length,
    };
  }
}
