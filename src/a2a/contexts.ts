/**
 * A2A contexts ↔ bridge sessions. The first message of a context (of one agent) opens a bridge session through
 * `runtime.bridge` (so the bridge's limits hold); later messages of that context are prompts in the same
 * session, with its history. A context is forgotten the moment its session is gone (closed, expired, failed
 * and closed): the event hub says so. The mapping is bounded (`maxContexts`): past it, the context used
 * longest ago that runs nothing is closed to make room; when every one runs a task, the new context is
 * CAPACITY.
 */
import { BridgeError } from "../errors.js";
import { agentScopedKey } from "./agent-scoped-key.js";
import type { Runtime } from "../runtime/runtime.js";

/** One context's session; `users` counts the tasks running in it (they keep it from being evicted). */
interface ContextSession {
  key: string;
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
  ) {}

  /** Contexts mapped now. */
  get size(): number {
    return this.byKey.size;
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

  private open(key: string, agentId: string, contextId: string): ContextSession {
    const context: ContextSession = {
      key,
      sessionId: this.runtime.bridge.sessionsCreate({ agentId, metadata: { a2a: { contextId } } }).then((created) => created.sessionId),
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

  private forget(context: ContextSession): void {
    if (this.byKey.get(context.key) === context) this.byKey.delete(context.key);
    if (context.openedAs !== undefined && this.byId.get(context.openedAs) === context) this.byId.delete(context.openedAs);
  }
}
