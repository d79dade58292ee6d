/**
 * Bridge sessions in the store (`bridge_sessions`): what a restart needs to bring each one back.
 *
 * Two records per session. `<sessionId>` is the session (status, metadata, history, usage, timestamps and
 * limits), written when it is created and whenever one of those changes: once per prompt that ends, never per
 * delta, and not when a prompt starts. `<sessionId>/pending` lists the request ids of the prompts in flight or
 * queued, while there are any: a few bytes per prompt started, so that a restart knows which prompts it
 * interrupted without rewriting the history at every prompt. Both are written in the turn of the change and
 * committed with that turn's batch; nothing waits for them (a bridge answer does not wait for the disk).
 */
import { z } from "zod";
import type { HistoryMessage, SessionContext, SessionStatus, Usage } from "../../machines/session.machine.js";
import { toBridgeError } from "../errors.js";
import { compareCodePoints } from "../store/keys.js";
import { listPages } from "../store/pages.js";
import type { Store, WriteOptions } from "../store/store.js";
import type { RecordOwner } from "../cluster/record-owner.js";

/** A session's pending prompts record; `node` owns it in a cluster (as it owns the session), so that its node lists it. */
export function pendingRecordOf(requestIds: string[], node: string | undefined): { requestIds: string[]; node?: string } {
  return { requestIds, ...(node === undefined ? {} : { node }) };
}

/** The id of a session's pending prompts record. */
export function pendingRecordId(sessionId: string): string {
  return `${sessionId}/pending`;
}

/** The statuses a stored session comes back in: a session that was busy comes back `idle`. */
export type StoredSessionStatus = Exclude<SessionStatus, "busy">;

/** A bridge session as the store keeps it. Times are epoch milliseconds, so its delays resume where they were. */
export interface StoredSession {
  /** The record's format. */
  v: 1;
  sessionId: string;
  agentId: string;
  metadata: Record<string, unknown>;
  createdAt: number;
  ttlMs: number;
  idleMs: number;
  maxQueuedPrompts: number;
  historyWindow: number;
  status: StoredSessionStatus;
  lastActivityAt: number;
  history: HistoryMessage[];
  usage: Usage;
  error: { type: string; message: string } | null;
  /** In a cluster, the node it lives on (its records are that node's); absent on a single node. */
  node?: string;
}

/** A stored session, and the request ids of the prompts it held when the process ended (interrupted). */
export interface LoadedSession {
  session: StoredSession;
  interrupted: string[];
}

const storedSessionSchema = z.object({
  v: z.literal(1),
  sessionId: z.string().min(1),
  agentId: z.string().min(1),
  metadata: z.record(z.string(), z.unknown()),
  createdAt: z.number(),
  ttlMs: z.number().int().nonnegative(),
  idleMs: z.number().int().nonnegative(),
  maxQueuedPrompts: z.number().int().nonnegative(),
  historyWindow: z.number().int().nonnegative(),
  status: z.enum(["active", "idle", "failed"]),
  lastActivityAt: z.number(),
  history: z.array(z.object({ role: z.enum(["user", "assistant"]), content: z.string() })),
  usage: z.object({ inputTokens: z.number(), outputTokens: z.number() }),
  error: z.object({ type: z.string(), message: z.string() }).nullable(),
  node: z.string().min(1).optional(),
});
const pendingSchema = z.object({ requestIds: z.array(z.string()) });

/** What was last written for one session: a change is seen by comparing these (the machine replaces what it changes). */
interface Written {
  status: StoredSessionStatus;
  lastActivityAt: number;
  history: HistoryMessage[];
  usage: Usage;
  error: SessionContext["error"];
  /** The pending request ids as one string; "" when there are none (and no pending record). */
  pending: string;
}

/** Request ids of the prompts a session holds, the one in flight first. */
function pendingOf(context: SessionContext): string[] {
  return context.inFlight === null
    ? context.queue.map((queued) => queued.requestId)
    : [context.inFlight.requestId, ...context.queue.map((queued) => queued.requestId)];
}

/**
 * Keeps the store's `bridge_sessions` in step with the runtime's session actors. The runtime calls `changed`
 * with each new snapshot of a session, and `gone` when one is deleted.
 */
export class SessionRecords {
  private readonly written = new Map<string, Written>();

  /** `owner`: in a cluster, the node whose sessions these are (named in each record, its lease fencing each write). */
  constructor(
    private readonly store: Store,
    private readonly owner?: RecordOwner,
  ) {}

  /**
   * Reads every stored session (with `node`, only that node's: those of another node or of none stay); a record
   * troupe cannot read is reported and left as it is, and pending prompts left without their session are removed.
   */
  static async load(store: Store, node?: string): Promise<LoadedSession[]> {
    const loaded: LoadedSession[] = [];
    for await (const batch of SessionRecords.loadPages(store, node)) loaded.push(...batch);
    return loaded;
  }

  /**
   * The stored sessions `load` reads, a page of the store at a time (what a takeover holds at once is a page), each
   * with the prompts its pending record names: that record's id follows its session's (`<id>/pending`), so a session
   * is given once the listing has passed where its pending record would be, the others at the end.
   */
  static async *loadPages(store: Store, node?: string): AsyncGenerator<LoadedSession[], void, undefined> {
    const pending = new Map<string, string[]>();
    let waiting: StoredSession[] = [];
    const given = (sessions: StoredSession[]): LoadedSession[] =>
      sessions.map((session) => {
        const id = pendingRecordId(session.sessionId);
        const interrupted = pending.get(id) ?? [];
        pending.delete(id);
        return { session, interrupted };
      });
    // A node's records (sessions and pending prompts name it) by the store's node index, a page at a time.
    for await (const page of listPages(store, "bridge_sessions", node === undefined ? {} : { node })) {
      for (const { id, value } of page) {
        if (id.endsWith("/pending")) {
          const parsed = pendingSchema.safeParse(value);
          if (parsed.success) pending.set(id, parsed.data.requestIds);
          continue;
        }
        const parsed = storedSessionSchema.safeParse(value);
        if (parsed.success && node !== undefined && parsed.data.node !== node) continue;
        if (parsed.success && parsed.data.sessionId === id) waiting.push(parsed.data);
        else process.emitWarning(`troupe: bridge session ${id} in the store is not one this version can restore; it is left there`, { code: "TROUPE_RESTORE" });
      }
      const lastId = page[page.length - 1]!.id;
      const ready: StoredSession[] = [];
      const still: StoredSession[] = [];
      for (const session of waiting) (compareCodePoints(pendingRecordId(session.sessionId), lastId) <= 0 ? ready : still).push(session);
      waiting = still;
      if (ready.length > 0) yield given(ready);
    }
    if (waiting.length > 0) yield given(waiting);
    // In a cluster, a pending record whose session is another node's is that node's.
    if (node === undefined) for (const orphan of pending.keys()) store.delete("bridge_sessions", orphan);
  }

  /** The ids of the sessions these records follow (those the runtime runs). */
  sessionIds(): string[] {
    return [...this.written.keys()];
  }

  /** How a record is written: fenced by the node's lease in a cluster; `undefined` when the node lost it and must not write. */
  private writeOptions(): WriteOptions | undefined {
    if (this.owner === undefined) return {};
    const fence = this.owner.fence();
    return fence === undefined ? undefined : { fence };
  }

  /**
   * A session's new snapshot: writes the session when it changed, and its pending prompts when they changed. A
   * write the store refuses is reported, never thrown: this runs inside the actor system's inspection.
   */
  changed(status: SessionStatus, context: SessionContext): void {
    try {
      this.write(status, context);
    } catch (error) {
      reportWriteError(context.sessionId, error);
    }
  }

  private write(status: SessionStatus, context: SessionContext): void {
    const { sessionId } = context;
    const last = this.written.get(sessionId);
    // While busy, the session is stored as it will come back after a restart: idle.
    const storedStatus: StoredSessionStatus = status === "busy" ? "idle" : status;
    const sessionChanged =
      last === undefined ||
      last.history !== context.history ||
      last.usage !== context.usage ||
      last.error !== context.error ||
      (status !== "busy" && (last.status !== storedStatus || last.lastActivityAt !== context.lastActivityAt));
    const pendingIds = status === "busy" || (last !== undefined && last.pending !== "") ? pendingOf(context) : [];
    const pending = pendingIds.join("\n");
    if (!sessionChanged && last.pending === pending) return;
    const options = this.writeOptions();
    if (options === undefined) return;
    if (sessionChanged) this.store.put("bridge_sessions", sessionId, storedSessionOf(storedStatus, context, this.owner?.nodeId), options);
    if (pending !== (last?.pending ?? "")) {
      if (pending === "") this.store.delete("bridge_sessions", pendingRecordId(sessionId), options);
      else this.store.put("bridge_sessions", pendingRecordId(sessionId), pendingRecordOf(pendingIds, this.owner?.nodeId), options);
    }
    this.written.set(sessionId, {
      status: sessionChanged ? storedStatus : last.status,
      lastActivityAt: sessionChanged ? context.lastActivityAt : last.lastActivityAt,
      history: context.history,
      usage: context.usage,
      error: context.error,
      pending,
    });
  }

  /**
   * A session restored from `stored` is about to run with `context`. What the store holds is what was written,
   * so its first snapshot writes nothing unless the restore changed it (one that was busy comes back idle, its
   * last activity now). Its pending record, the prompts the restart interrupted, is removed.
   */
  restored(stored: LoadedSession, context: SessionContext): void {
    const { session } = stored;
    const options = this.writeOptions();
    if (stored.interrupted.length > 0 && options !== undefined) this.store.delete("bridge_sessions", pendingRecordId(session.sessionId), options);
    this.written.set(session.sessionId, {
      status: session.status,
      lastActivityAt: session.lastActivityAt,
      history: context.history,
      usage: context.usage,
      error: context.error,
      pending: "",
    });
  }

  /** A session was deleted: closed or expired ones leave the store; one stopped with the runtime stays, to be restored. */
  gone(sessionId: string, keep: boolean): void {
    const last = this.written.get(sessionId);
    this.written.delete(sessionId);
    const options = this.writeOptions();
    if (keep || options === undefined) return;
    try {
      this.store.delete("bridge_sessions", sessionId, options);
      if (last === undefined || last.pending !== "") this.store.delete("bridge_sessions", pendingRecordId(sessionId), options);
    } catch (error) {
      reportWriteError(sessionId, error);
    }
  }

  /** Removes a stored session that cannot be restored (its agent is gone, or there is no room for it). */
  drop(sessionId: string): void {
    this.gone(sessionId, false);
  }
}

/** A session the store could not take (a value that is not JSON, a closed store): it is not durable, and the operator hears so. */
function reportWriteError(sessionId: string, error: unknown): void {
  process.emitWarning(`troupe: bridge session ${sessionId} could not be written to the store: ${toBridgeError(error).message}`, { code: "TROUPE_STORE" });
}

function storedSessionOf(status: StoredSessionStatus, context: SessionContext, node: string | undefined): StoredSession {
  return {
    ...(node === undefined ? {} : { node }),
    v: 1,
    sessionId: context.sessionId,
    agentId: context.agentId,
    metadata: context.metadata,
    createdAt: context.createdAt,
    ttlMs: context.ttlMs,
    idleMs: context.idleMs,
    maxQueuedPrompts: context.maxQueuedPrompts,
    historyWindow: context.historyWindow,
    status,
    lastActivityAt: context.lastActivityAt,
    history: context.history,
    usage: context.usage,
    error: context.error,
  };
}
