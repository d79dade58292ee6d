/**
 * The bridge sessions that the runtime agents' endpoints hold (SPEC §3.6). A task is answered in the session
 * of its owner: the asked agent, the sender, the sender's workflow session, and, for a `ctx.ask` of a runtime
 * agent, the bridge session of the asking prompt. So each workflow, and each conversation that asks, talks to
 * its own session of the asked agent: one user's turns never show up in another's history, and an agent that
 * asks itself (or a chain that comes back to it) gets a new session per level instead of queueing behind
 * its own prompt.
 *
 * A session is forgotten the moment its runtime session is gone (closed, expired, its worker crashed): the
 * event hub says so, not the next task. Sessions end with what they were opened for: the workflow ending,
 * the asking session being gone, the bus stopping. The bus's sessions are bounded (`maxBusSessions`), so
 * that senders of the bus can never take every session of the runtime from the bridge's own users.
 */
import type { CreateResult } from "../bridge/schemas.js";
import { BridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";

/** What a bus session answers for: the asked agent (a runtime id), the sender, and the contexts it belongs to. */
export interface BusSessionOwner {
  agentId: string;
  sender: string;
  /** The sender's workflow session (`sender.session_id`). */
  workflowId: string | undefined;
  /** The bridge session of the asking prompt (`metadata.ask_session` of a runtime agent's ask). */
  askSession: string | undefined;
}

/** One bridge session of the bus: its owner, and its id (known once it is open). */
export interface BusSession {
  readonly key: string;
  readonly owner: BusSessionOwner;
  readonly sessionId: Promise<string>;
  /** The id, once the session is open and while the bus still uses it. */
  openedAs?: string;
}

/** What the bus sessions need from the bus. */
export interface BusSessionsHost {
  runtime: Runtime;
  /** Sessions the bus may hold at once (`maxBusSessions`). */
  maxSessions: number;
  /** Whether a workflow session is still active. */
  workflowActive(workflowId: string): boolean;
}

function keyOf(owner: BusSessionOwner): string {
  return [owner.agentId, owner.sender, owner.workflowId ?? "", owner.askSession ?? ""].join("\n");
}

/** The bridge sessions of one bus's endpoints, by owner. */
export class BusSessions {
  private readonly byKey = new Map<string, BusSession>();
  /** Opened sessions by their runtime session id: what the event hub names. */
  private readonly byId = new Map<string, BusSession>();
  /** Sessions by the bridge session whose prompts asked in them. */
  private readonly byAskSession = new Map<string, Set<BusSession>>();
  private unsubscribe: Array<() => void> = [];
  private stopped = false;

  constructor(private readonly host: BusSessionsHost) {}

  /** Listens for sessions that are gone and workers that crashed. */
  start(): void {
    const { runtime } = this.host;
    this.unsubscribe = [
      runtime.on("actor.stopped", (event) => this.sessionGone(event.actorId)),
      // A worker's sessions fail right after its agent goes offline (docs/architecture.md): look once they have.
      runtime.on("agent.offline", (event) => {
        if (event.kind === "worker") setImmediate(() => this.dropFailed(event.agentId));
      }),
    ];
  }

  /**
   * The owner's session, opened on first use. CANCELLED when what it would belong to has ended (its workflow,
   * the asking session), CAPACITY when the bus holds `maxBusSessions` already.
   */
  sessionFor(owner: BusSessionOwner): BusSession {
    const key = keyOf(owner);
    const known = this.byKey.get(key);
    if (known !== undefined) return known;
    this.checkOpenable(owner);
    const { runtime } = this.host;
    const bus = {
      sender: owner.sender,
      ...(owner.workflowId === undefined ? {} : { session_id: owner.workflowId }),
      ...(owner.askSession === undefined ? {} : { ask_session: owner.askSession }),
    };
    // Through the bridge, so that the bus's sessions are held to the same limits as any bridge user's.
    const created = runtime.bridge.sessionsCreate({ agentId: owner.agentId, metadata: { bus } });
    const session: BusSession = { key, owner, sessionId: created.then((result: CreateResult) => result.sessionId) };
    this.byKey.set(key, session);
    if (owner.askSession !== undefined) {
      const asked = this.byAskSession.get(owner.askSession) ?? new Set();
      this.byAskSession.set(owner.askSession, asked.add(session));
    }
    session.sessionId.then(
      (sessionId) => {
        if (!this.isCurrent(session)) return;
        session.openedAs = sessionId;
        this.byId.set(sessionId, session);
      },
      () => this.forget(session),
    );
    return session;
  }

  /**
   * Takes back a session the runtime restored for this owner (after a restart), so that the owner's next task
   * goes on in it, with its history. One that nothing will use any more (its workflow or asking session has
   * ended, another session has the owner, or `maxBusSessions` is reached) is closed.
   */
  adopt(sessionId: string, owner: BusSessionOwner): void {
    const key = keyOf(owner);
    const usable =
      !this.stopped &&
      !this.byKey.has(key) &&
      this.byKey.size < this.host.maxSessions &&
      (owner.workflowId === undefined || this.host.workflowActive(owner.workflowId)) &&
      (owner.askSession === undefined || this.host.runtime.hasSession(owner.askSession));
    if (!usable) {
      // A session that is gone or failed meanwhile needs no closing.
      this.host.runtime.closeSession(sessionId).catch(() => undefined);
      return;
    }
    const session: BusSession = { key, owner, sessionId: Promise.resolve(sessionId), openedAs: sessionId };
    this.byKey.set(key, session);
    this.byId.set(sessionId, session);
    if (owner.askSession !== undefined) this.byAskSession.set(owner.askSession, (this.byAskSession.get(owner.askSession) ?? new Set()).add(session));
  }

  /** Whether later tasks of its owner still go to this session. */
  isCurrent(session: BusSession): boolean {
    return this.byKey.get(session.key) === session;
  }

  /** No later task may use this session (it failed, or its context ended): forget it and close it. */
  drop(session: BusSession): Promise<void> {
    this.forget(session);
    return session.sessionId
      .then((sessionId) => this.host.runtime.closeSession(sessionId))
      .then(
        () => undefined,
        // A session that was never opened, or is gone already (expired, runtime stopped), needs no closing.
        () => undefined,
      );
  }

  /** A workflow session ended: the sessions that answered its tasks are closed. */
  workflowEnded(workflowId: string): void {
    for (const session of this.byKey.values()) if (session.owner.workflowId === workflowId) void this.drop(session);
  }

  /** The bus is stopping: none opens any more, and every session is closed, unless the runtime keeps them in a store. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe();
    const sessions = [...this.byKey.values()];
    // A runtime that keeps its sessions in a store keeps these too: the next start brings them back to the bus
    // that then runs (with their history); a runtime that goes on without a bus lets them expire.
    if (this.host.runtime.persistent) {
      for (const session of sessions) this.forget(session);
      return;
    }
    await Promise.all(sessions.map((session) => this.drop(session)));
  }

  private checkOpenable(owner: BusSessionOwner): void {
    if (this.stopped) throw new BridgeError("TRANSPORT", "The bus is stopping");
    if (owner.workflowId !== undefined && !this.host.workflowActive(owner.workflowId)) {
      throw new BridgeError("CANCELLED", `Workflow session ${owner.workflowId} has ended: its task is not run`, { sessionId: owner.workflowId });
    }
    if (owner.askSession !== undefined && !this.host.runtime.hasSession(owner.askSession)) {
      throw new BridgeError("CANCELLED", `The asking session ${owner.askSession} is gone: its ask is not run`, { sessionId: owner.askSession });
    }
    const limit = this.host.maxSessions;
    if (this.byKey.size >= limit) {
      throw new BridgeError("CAPACITY", `${owner.agentId} cannot open a session for ${owner.sender}: the bus holds ${limit} bridge sessions (maxBusSessions)`, {
        limit,
        agentId: owner.agentId,
      });
    }
  }

  private forget(session: BusSession): void {
    if (!this.isCurrent(session)) return;
    this.byKey.delete(session.key);
    const { askSession } = session.owner;
    const asked = askSession === undefined ? undefined : this.byAskSession.get(askSession);
    asked?.delete(session);
    if (askSession !== undefined && asked?.size === 0) this.byAskSession.delete(askSession);
    if (session.openedAs !== undefined) this.byId.delete(session.openedAs);
  }

  /** A runtime session stopped: if it was one of ours, it is forgotten; the sessions asked from it are closed. */
  private sessionGone(sessionId: string): void {
    const session = this.byId.get(sessionId);
    if (session !== undefined) this.forget(session);
    for (const asked of [...(this.byAskSession.get(sessionId) ?? [])]) void this.drop(asked);
  }

  /** A worker crashed: its sessions that failed answer no later task. */
  private dropFailed(agentId: string): void {
    const { runtime } = this.host;
    if (this.stopped) return;
    for (const [sessionId, session] of [...this.byId]) {
      if (session.owner.agentId === agentId && runtime.hasSession(sessionId) && runtime.sessionStatus(sessionId).status === "failed") void this.drop(session);
    }
  }
}
