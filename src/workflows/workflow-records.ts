/**
 * Workflow sessions in the store (`workflows`): one record per session, its XState persisted snapshot (state,
 * participants, shared context, every task with its result and usage: what the aggregator summarizes), and,
 * once it has ended, when its retention runs out.
 */
import { z } from "zod";
import type { AnyActorRef } from "xstate";
import type { WorkflowContext } from "../../machines/workflow.machine.js";
import { listPages } from "../store/pages.js";
import type { Store } from "../store/store.js";

/** A workflow session as the store keeps it. */
export interface WorkflowRecord {
  /** The record's format. */
  v: 1;
  /** `actor.getPersistedSnapshot()`: restored with `machine.restoreSnapshot`. */
  snapshot: PersistedWorkflow;
  /** When an ended session is evicted (epoch ms); absent while it runs. */
  evictAt?: number;
  /** In a cluster, the node that owns it (runs its actor and alone writes it); absent on a single node. */
  node?: string;
}

/** The parts of a persisted workflow snapshot that troupe reads; XState reads the rest. */
export interface PersistedWorkflow {
  status: "active" | "done" | "error";
  value: unknown;
  context: WorkflowContext;
  output?: unknown;
  [key: string]: unknown;
}

const recordSchema = z.object({
  v: z.literal(1),
  snapshot: z
    .object({
      status: z.enum(["active", "done", "error"]),
      value: z.string(),
      context: z
        .object({
          sessionId: z.string().min(1),
          steps: z.array(z.object({ name: z.string(), required_agents: z.array(z.string()) }).passthrough()).min(1),
          participants: z.array(z.object({ agent_id: z.string(), framework: z.string() }).passthrough()),
          tasks: z.array(z.object({ task_id: z.string(), message_id: z.string(), status: z.string(), to: z.string() }).passthrough()),
          createdAt: z.number(),
          stepEnteredAt: z.number(),
        })
        .passthrough(),
    })
    .passthrough(),
  evictAt: z.number().optional(),
  node: z.string().min(1).optional(),
});

/** The record of a workflow actor's snapshot; an ended one is kept until `evictAt`; `node` owns it in a cluster. */
export function workflowRecordOf(child: AnyActorRef, evictAt: number | undefined, node: string | undefined): WorkflowRecord {
  const snapshot = child.getPersistedSnapshot() as unknown as PersistedWorkflow;
  return { v: 1, snapshot, ...(evictAt === undefined ? {} : { evictAt }), ...(node === undefined ? {} : { node }) };
}

/**
 * Every stored workflow, keyed by session id; a record troupe cannot read is reported and left as it is. With
 * `node`, only those that node owns (a node of a cluster loads its own, read by the store's node index a page at a
 * time: those of no node, or of another, are not read).
 */
export async function loadWorkflows(store: Store, node?: string): Promise<Array<{ sessionId: string; record: WorkflowRecord }>> {
  const loaded: Array<{ sessionId: string; record: WorkflowRecord }> = [];
  for await (const page of workflowPages(store, node)) loaded.push(...page);
  return loaded;
}

/** The stored workflows `loadWorkflows` reads, a page at a time: what a takeover holds at once is one page of them. */
export async function* workflowPages(store: Store, node?: string): AsyncGenerator<Array<{ sessionId: string; record: WorkflowRecord }>, void, undefined> {
  for await (const page of listPages(store, "workflows", node === undefined ? {} : { node })) {
    const loaded: Array<{ sessionId: string; record: WorkflowRecord }> = [];
    for (const { id, value } of page) {
      const record = workflowRecordIn(id, value);
      if (record !== undefined && node !== undefined && record.node !== node) continue;
      if (record !== undefined) loaded.push({ sessionId: id, record });
      else process.emitWarning(`troupe: workflow ${id} in the store is not one this version can restore; it is left there`, { code: "TROUPE_RESTORE" });
    }
    if (loaded.length > 0) yield loaded;
  }
}

/** The workflow record stored under `id`, or `undefined` when `value` is not one this version reads. */
export function workflowRecordIn(id: string, value: unknown): WorkflowRecord | undefined {
  const parsed = recordSchema.safeParse(value);
  return parsed.success && parsed.data.snapshot.context.sessionId === id ? (value as WorkflowRecord) : undefined;
}
