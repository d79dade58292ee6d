/**
 * A2A contexts ↔ bridge sessions. The first message of a context (of one agent) opens a bridge session through
 * `runtime.bridge` (so the bridge's limits hold); later messages of that context are prompts in the same
 * session, with its history. A context is forgotten the moment its session is gone (closed, expired, failed
 * and closed): the event hub says so. The mapping is bounded (`maxContexts`): past it, the context used
 * longest ago that runs nothing is closed to make room; when every one runs a task, the new context is
 * CAPACITY.
 *
 * On a cluster node (`records`), a context opened here has a record naming its session, durable before the session
 * is lent (so before the client hears of the context's first task), and removed when the session goes; the
 * sessions this node takes over (or restores) bring their contexts with them (`adoptRestored`: a session opened for
 * a context says so in its metadata), and a node that stops hands its contexts over with their sessions (`release`).
 */
import { BridgeError } from "../errors.js";
import type { RestoredSession, Runtime } from "../runtime/runtime.js";
import type { A2aRecords } from "./a2a-records.js";
import { agentScopedKey } from "./agent-scoped-key.js";

/** One context's session; `users` counts the tasks running in it (they keep it from being evicted). */
interface ContextSession {
  key: string;
  agentId: string;
  contextId: string;
  sessionId: Promise<string>;
  openedAs: string | undefined;
  users: number;
}

/** A session lent to one task: `release` once the task is over. */
export interface ContextLease {
  sessionId: string;
  release(): void;
}

/** The contexts of one A2A endpoint. */
export class A2aContexts {
  /** Least recently used first. */
  private readonly byKey = new Map<string, ContextSession>();
  private readonly byId = new Map<string, ContextSession>();
  private unsubscribe: (() => void) | undefined;
  private closed = false;

  constructor(
    private readonly runtime: Runtime,
    private readonly maxContexts: number,
    private readonly records?: A2aRecords,
  ) {}

  /** Contexts mapped now. */
  get size(): number {
    return this.byKey.size;
  }

  /** Whether agent `agentId`'s context `contextId` is mapped to a session here. */
  has(agentId: string, contextId: string): boolean {
    return this.byKey.has(agentScopedKey(agentId, contextId));
  }

  /**
   * Maps the contexts of bridge sessions this node restored or took over (those opened for a context name it in their
   * metadata, `a2a.contextId`): their next messages are prompts in them, with their history.
   */
  adoptRestored(restored: readonly RestoredSession[]): void {
    if (this.closed) return;
    for (const { sessionId, agentId, metadata } of restored) {
      const contextId = (metadata["a2a"] as { contextId?: unknown } | undefined)?.contextId;
      if (typeof contextId !== "string" || !this.runtime.hasSession(sessionId) || this.byId.has(sessionId)) continue;
      const key = agentScopedKey(agentId, contextId);
      // Already mapped here (opened again meanwhile): the context keeps the session it runs in.
      if (this.byKey.has(key)) continue;
      const context: ContextSession = { key, agentId, contextId, sessionId: Promise.resolve(sessionId), openedAs: sessionId, users: 0 };
      this.byKey.set(key, context);
      this.byId.set(sessionId, context);
    }
  }

  /** Forgets contexts as their sessions stop. */
  start(): void {
    this.unsubscribe = this.runtime.on("actor.stopped", (event) => {
      const context = this.byId.get(event.actorId);
      if (context !== undefined) this.forget(context);
    });
  }

  /** The session of an agent's context, opened on first use (making room past `maxContexts`), lent to one task. */
  async acquire(agentId: string, contextId: string): Promise<ContextLease> {
    if (this.closed) throw new BridgeError("TRANSPORT", "The A2A endpoint is closing");
    const key = agentScopedKey(agentId, contextId);
    let context = this.byKey.get(key);
    if (context === undefined) {
      this.makeRoom(agentId);
      context = this.open(key, agentId, contextId);
    } else {
      // Most recently used last.
      this.byKey.delete(key);
      this.byKey.set(key, context);
    }
    context.users += 1;
    const held = context;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      held.users -= 1;
    };
    try {
      return { sessionId: await held.sessionId, release };
    } catch (error) {
      release();
      throw error;
    }
  }

  /** Closes a context's session (it failed for good): the context's next message opens a new one. */
  drop(agentId: string, contextId: string): void {
    const context = this.byKey.get(agentScopedKey(agentId, contextId));
    if (context !== undefined) void this.close(context);
  }

  /** Closes every context's session: their running prompts are cancelled. */
  async closeAll(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    await Promise.all([...this.byKey.values()].map((context) => this.close(context)));
  }

  /**
   * Lets every context go without closing its session (a cluster node stopping: its sessions, and the contexts
   * their records name, go to the node that takes its work over); no record is touched.
   */
  release(): void {
    this.closed = true;
    this.unsubscribe?.();
    this.byKey.clear();
    this.byId.clear();
  }

  private open(key: string, agentId: string, contextId: string): ContextSession {
    const context: ContextSession = {
      key,
      agentId,
      contextId,
      sessionId: this.runtime.bridge.sessionsCreate({ agentId, metadata: { a2a: { contextId } } }).then(async ({ sessionId }) => {
        if (this.records === undefined) return sessionId;
        try {
          await this.records.recordContext(agentId, contextId, sessionId);
        } catch (error) {
          // Unrecorded, the context would be unknown to the other nodes: its session is closed, and the task fails.
          await this.runtime.bridge.sessionsClose({ sessionId }).catch(() => undefined);
          throw error;
        }
        return sessionId;
      }),
      openedAs: undefined,
      users: 0,
    };
    this.byKey.set(key, context);
    context.sessionId.then(
      (sessionId) => {
        if (this.byKey.get(key) !== context) {
          // Dropped while it opened: nothing will use it.
          void this.runtime.bridge.sessionsClose({ sessionId }).catch(() => undefined);
          return;
        }
        context.openedAs = sessionId;
        this.byId.set(sessionId, context);
      },
      () => this.forget(context),
    );
    return context;
  }

  /** Past `maxContexts`, closes the least recently used context that runs no task. */
  private makeRoom(agentId: string): void {
    if (this.byKey.size < this.maxContexts) return;
    for (const context of this.byKey.values()) {
      if (context.users > 0 || context.openedAs === undefined) continue;
      void this.close(context);
      return;
    }
    throw new BridgeError("CAPACITY", `${agentId} cannot open a context: the A2A endpoint holds ${this.maxContexts}, each running a task`, {
      limit: this.maxContexts,
      agentId,
    });
  }

  /** One still opening is closed once it has opened (see `open`); one gone already needs no closing. */
  private async close(context: ContextSession): Promise<void> {
    const sessionId = context.openedAs;
    this.forget(context);
    if (sessionId !== undefined) await this.runtime.bridge.sessionsClose({ sessionId }).catch(() => undefined);
  }

  /** Forgets a context whose session is gone (or never opened): so does its record, if it had one. */
  private forget(context: ContextSession): void {
    if (this.byKey.get(context.key) === context) this.byKey.delete(context.key);
    if (context.openedAs !== undefined && this.byId.get(context.openedAs) === context) {
      this.byId.delete(context.openedAs);
      this.records?.deleteContext(context.agentId, context.contextId);
    }
  }
}
