/**
 * What makes a cluster node's A2A tasks and contexts findable by every node (docs/cluster.md, "A2A across nodes"):
 * records in the shared store, written by the node that serves them, fenced by its lease as its bridge sessions
 * and workflows are.
 *
 * - `a2a_tasks`: one per task the node keeps, naming the node (`node`, moved by a takeover as the node's other
 *   records are) and holding the task as the protocol's JSON at its last state, for the node that takes it over.
 *   Written when the task is created (durable before its id reaches the client) and at each change of its state,
 *   never per streamed piece; removed when the node forgets the task (its bound).
 * - `a2a_contexts`: one per context of a runtime agent, naming the bridge session behind it, whose own record names
 *   its node (and follows it through takeovers): durable before the context's first task is told to its client;
 *   removed when the session closes or expires.
 *
 * A record's id is a digest of the agent's id and the task's or context's: clients choose context ids, of any
 * length and with any characters, and each agent's ids are its own. Types only, no SDK: a node reads these records
 * (at a takeover, to route a request) without loading the A2A SDK.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import type { RecordOwner } from "../cluster/record-owner.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { listPages } from "../store/pages.js";
import type { Store } from "../store/store.js";

/** A task's record: the node that serves it, and the task (A2A's JSON) at its last state. */
export interface A2aTaskRecord {
  v: 1;
  node: string;
  agentId: string;
  taskId: string;
  /** `Task.toJSON(task)` of the SDK. */
  task: unknown;
}

/** A context's record: the bridge session behind it. */
export interface A2aContextRecord {
  v: 1;
  agentId: string;
  contextId: string;
  sessionId: string;
}

const taskRecordSchema = z.object({
  v: z.literal(1),
  node: z.string().min(1),
  agentId: z.string(),
  taskId: z.string(),
  task: z.unknown(),
});

const contextRecordSchema = z.object({ v: z.literal(1), agentId: z.string(), contextId: z.string(), sessionId: z.string().min(1) });

/** The record id of task or context `id` of agent `agentId`. */
export function a2aRecordId(agentId: string, id: string): string {
  return createHash("sha256").update(agentId, "utf8").update("\n").update(id, "utf8").digest("base64url");
}

/** Reads every task record naming node `node` (by the store's node index, a page at a time: once at a start and per takeover). */
export async function loadA2aTasks(store: Store, node: string): Promise<A2aTaskRecord[]> {
  const tasks: A2aTaskRecord[] = [];
  for await (const page of listPages(store, "a2a_tasks", { node })) {
    for (const { id, value } of page) {
      const parsed = taskRecordSchema.safeParse(value);
      if (!parsed.success || a2aRecordId(parsed.data.agentId, parsed.data.taskId) !== id) {
        process.emitWarning(`troupe: A2A task record ${id} in the store is not one this version reads; it is left there`, { code: "TROUPE_RESTORE" });
      } else if (parsed.data.node === node) tasks.push(parsed.data);
    }
  }
  return tasks;
}

/** The bridge session behind context `contextId` of agent `agentId`, as its record names it (one read of the store). */
export async function contextSessionOf(store: Store, agentId: string, contextId: string): Promise<string | undefined> {
  const parsed = contextRecordSchema.safeParse(await store.get("a2a_contexts", a2aRecordId(agentId, contextId)));
  return parsed.success && parsed.data.agentId === agentId && parsed.data.contextId === contextId ? parsed.data.sessionId : undefined;
}

/** The A2A records one node writes, each fenced by its lease; none while it does not hold it. */
export class A2aRecords {
  constructor(
    private readonly store: () => Store,
    private readonly owner: RecordOwner,
  ) {}

  /** Writes a task's record (its state changed); skipped while the node does not hold its lease. */
  putTask(agentId: string, taskId: string, task: unknown): void {
    this.#write("put", "a2a_tasks", a2aRecordId(agentId, taskId), { v: 1, node: this.owner.nodeId, agentId, taskId, task } satisfies A2aTaskRecord);
  }

  /**
   * Writes a new task's record and resolves once it is durable: from then on every node finds the task. TRANSPORT
   * (503, ask again) when the store did not take it (unreachable, or this node lost its lease).
   */
  async recordTask(agentId: string, taskId: string, task: unknown): Promise<void> {
    this.putTask(agentId, taskId, task);
    await this.#durable(`task ${taskId}`);
  }

  /** Removes a task's record (the node forgets the task). */
  deleteTask(agentId: string, taskId: string): void {
    this.#write("delete", "a2a_tasks", a2aRecordId(agentId, taskId));
  }

  /** Writes which session a context opened here runs in, and resolves once it is durable (TRANSPORT otherwise, as `recordTask`). */
  async recordContext(agentId: string, contextId: string, sessionId: string): Promise<void> {
    this.#write("put", "a2a_contexts", a2aRecordId(agentId, contextId), { v: 1, agentId, contextId, sessionId } satisfies A2aContextRecord);
    await this.#durable(`context ${contextId}`);
  }

  /** Removes a context's record (its session is gone). */
  deleteContext(agentId: string, contextId: string): void {
    this.#write("delete", "a2a_contexts", a2aRecordId(agentId, contextId));
  }

  #write(operation: "put" | "delete", collection: "a2a_tasks" | "a2a_contexts", id: string, value?: unknown): void {
    const fence = this.owner.fence();
    if (fence === undefined) return;
    try {
      if (operation === "put") this.store().put(collection, id, value, { fence });
      else this.store().delete(collection, id, { fence });
    } catch (error) {
      // A value the store refuses (not JSON) or a closed store: reported, never thrown into the SDK's event loop.
      process.emitWarning(`troupe: an A2A record (${collection}) could not be written: ${toBridgeError(error).message}`, { code: "TROUPE_STORE" });
    }
  }

  async #durable(what: string): Promise<void> {
    let failure: BridgeError | undefined;
    try {
      await this.store().flush();
    } catch (error) {
      failure = toBridgeError(error, "TRANSPORT");
    }
    if (failure === undefined && this.owner.fence() !== undefined) return;
    throw new BridgeError(
      "TRANSPORT",
      `Node ${this.owner.nodeId} could not make A2A ${what} durable (${failure?.message ?? "it does not hold its cluster lease"}): send it again`,
      { retryable: true, unavailable: true, nodeId: this.owner.nodeId },
    );
  }
}
