/**
 * The A2A tasks troupe serves, kept in memory and bounded: past `maxTasks`, the task saved longest ago that
 * no longer runs (ended, or waiting for input) is forgotten first, so that a client sending message after
 * message cannot grow the server's memory. Each agent sees only its own tasks (`forAgent`): a task id of one
 * agent names nothing under another's URL.
 */
import { TaskState, type ListTasksRequest, type ListTasksResponse, type Task } from "@a2a-js/sdk";
import type { ServerCallContext, TaskStore } from "@a2a-js/sdk/server";
import { agentScopedKey } from "./agent-scoped-key.js";

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

/** Every agent's tasks, least recently saved first. */
export class BoundedTaskStore {
  private readonly tasks = new Map<string, { agentId: string; task: Task }>();

  constructor(private readonly maxTasks: number) {}

  /** How many tasks are kept. */
  get size(): number {
    return this.tasks.size;
  }

  /** The store as one agent's request handler sees it. */
  forAgent(agentId: string): TaskStore {
    return {
      load: (taskId: string) => {
        const entry = this.tasks.get(agentScopedKey(agentId, taskId));
        return Promise.resolve(entry === undefined ? undefined : structuredClone(entry.task));
      },
      save: (task: Task) => {
        const key = agentScopedKey(agentId, task.id);
        this.tasks.delete(key);
        this.tasks.set(key, { agentId, task: structuredClone(task) });
        this.evict();
        return Promise.resolve();
      },
      list: (params: ListTasksRequest, _context: ServerCallContext) => Promise.resolve(this.list(agentId, params)),
    };
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
      this.tasks.delete(victim ?? this.tasks.keys().next().value!);
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
