/**
 * The runtime: one supervisor actor and the effects its machines need (prompt runs, hooks, events).
 */
import { randomUUID } from "node:crypto";
// From node:timers/promises, which fake timers in tests leave alone: stopping must not wait on a fake clock.
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { createActor, fromCallback, fromPromise, type Actor, type AnyActor } from "xstate";
import {
  agentMachine,
  agentSystemId,
  type AgentActorRef,
  type AgentEmitted,
  type AgentEvent,
  type AgentInput,
  type AgentState,
} from "../../machines/agent.machine.js";
import {
  sessionMachine,
  type PendingPrompt,
  type PromptError,
  type PromptReply,
  type RunPromptFailure,
  type RunPromptInput,
  type RunPromptOutput,
  type SessionCloseReason,
  type SessionEmitted,
  type SessionEvent,
  type SessionInfo,
  type SessionStatus,
} from "../../machines/session.machine.js";
import { sessionShardMachine } from "../../machines/session-shard.machine.js";
import { supervisorMachine, type SupervisorEmitted } from "../../machines/supervisor.machine.js";
import { workerMachine, type WorkerEvent, type WorkerProcessInput } from "../../machines/worker.machine.js";
import { Bridge } from "../bridge/bridge.js";
import type { HealthResult, SessionStatusResult, CancelResult, CloseResult, CreateResult, PromptResult, DiscoverResult } from "../bridge/schemas.js";
import { systemClock, unrefClock, type Clock } from "../clock.js";
import { BridgeError, sessionNotFound, toBridgeError } from "../errors.js";
import { createInspector, sourceOf } from "../events/inspector.js";
import { EventHub, type RuntimeEventListener, type RuntimeEventType } from "../events/event-hub.js";
import type { AgentDescription, Executor, PromptEmitter } from "../executors/executor.js";
import { InProcessExecutor } from "../executors/in-process.js";
import { WorkerExecutor, type WorkerConfig } from "../executors/worker.js";
import { VERSION } from "../version.js";
import { busAgentIdOf, discoverStatusOf, runtimeAgentIdCandidates, type RuntimeBusAgent } from "./bus-agents.js";
import { indexScheduler } from "./indexed-scheduler.js";
import { resolveLimits, type ResolvedLimits, type RuntimeOptions } from "./options.js";
import { Replies } from "./replies.js";

type SupervisorActor = Actor<typeof supervisorMachine>;

/** What a prompt carries besides its text. */
export interface PromptRequest {
  prompt: string;
  requestId?: string;
  runtimeParams?: Record<string, unknown>;
  timeoutMs?: number;
}

function failure(error: BridgeError, at: number): RunPromptFailure {
  const { retryable, sessionValid, ...details } = error.details;
  return { type: error.type, message: error.message, retryable, sessionValid, details, at };
}

function timeoutError(timeoutMs: number): BridgeError {
  return new BridgeError("TIMEOUT", `Prompt timed out after ${timeoutMs} ms`, { timeoutMs });
}

function bridgeErrorOf(error: PromptError): BridgeError {
  return new BridgeError(error.type as BridgeError["type"], error.message, {
    ...error.details,
    retryable: error.retryable,
    sessionValid: error.sessionValid,
  });
}

/** An actor-model runtime of agent sessions. Create it with `createRuntime`. */
export class Runtime {
  /** The eight bridge tools (SPEC §2.1). */
  readonly bridge: Bridge;
  readonly limits: ResolvedLimits;
  readonly clock: Clock;
  private readonly hub: EventHub;
  private readonly inspectObserver: RuntimeOptions["inspect"];
  private readonly executors: Executor[];
  private readonly workers: WorkerExecutor;
  private readonly replies = new Replies();
  private readonly sessionCounts: Record<SessionStatus, number> = { active: 0, busy: 0, idle: 0, failed: 0 };
  /** Sessions whose agent was already told `failed`; their deletion calls no second hook. */
  private readonly failedSessions = new Set<string>();
  private readonly pendingHooks = new Set<Promise<void>>();
  private readonly closeWaiters = new Map<string, Promise<void>>();
  private supervisor: SupervisorActor | undefined;
  private state: "new" | "running" | "stopping" | "stopped" = "new";
  private startedAt = 0;

  constructor(options: RuntimeOptions = {}) {
    this.limits = resolveLimits(options);
    this.clock = options.clock ?? systemClock;
    this.hub = new EventHub(this.clock);
    this.inspectObserver = options.inspect;
    this.workers = new WorkerExecutor(options.workers ?? [], {
      killGraceMs: this.limits.workerKillGraceMs,
      startTimeoutMs: this.limits.workerStartTimeoutMs,
    });
    // Order is precedence: an in-process agent wins over a worker with the same id.
    this.executors = [new InProcessExecutor(options.agents ?? []), this.workers];
    if (options.executor) this.executors.push(options.executor);
    for (const executor of this.executors) {
      executor.attach?.({ failSession: (sessionId, error) => this.failSession(sessionId, error), agentActor: (agentId) => this.agentActor(agentId) });
    }
    const { defaultAgentId } = this.limits;
    if (defaultAgentId !== undefined && !this.executors.some((executor) => executor.hasAgent(defaultAgentId))) {
      throw new BridgeError("CONFIG", `defaultAgentId: no agent ${defaultAgentId}`, { field: "defaultAgentId" });
    }
    this.bridge = new Bridge(this);
  }

  /** Starts the supervisor. Calls before `start()` fail with INTERNAL. */
  async start(): Promise<void> {
    if (this.state !== "new") throw new BridgeError("INTERNAL", `Runtime cannot start: it is ${this.state}`);
    const session = sessionMachine.provide({
      actors: { runPrompt: fromPromise<RunPromptOutput, RunPromptInput>(({ input, signal }) => this.runPrompt(input, signal)) },
    });
    const shard = sessionShardMachine.provide({ actors: { session } });
    const worker = workerMachine.provide({
      actors: {
        workerProcess: fromCallback<WorkerEvent, WorkerProcessInput>(({ input, sendBack }) =>
          this.workers.startProcess(input.workerId, input.generation, sendBack),
        ),
      },
    });
    const agent = agentMachine.provide({ actors: { worker } });
    const supervisor = supervisorMachine.provide({ actors: { sessionShard: shard, agent } });
    const actor = createActor(supervisor, {
      id: "supervisor",
      systemId: "supervisor",
      clock: unrefClock(this.clock),
      input: { maxSessions: this.limits.maxSessions, shardSize: this.limits.shardSize },
      inspect: createInspector(this.hub, this.inspectObserver, {
        created: (actorRef) => {
          const source = sourceOf(actorRef);
          if (source === "session") actorRef.on("*", (event) => this.onSessionEmitted(event as SessionEmitted));
          if (source === "agent") actorRef.on("*", (event) => this.onAgentEmitted(event as AgentEmitted));
        },
        stateChanged: (actorRef, from, to) => {
          if (sourceOf(actorRef) !== "session") return;
          if (from !== undefined) this.sessionCounts[from as SessionStatus] -= 1;
          if (to !== undefined) this.sessionCounts[to as SessionStatus] += 1;
          // A session in `busy` runs one prompt of its agent: the agent's actor counts them.
          if ((from === "busy") !== (to === "busy")) {
            const { agentId } = (actorRef.getSnapshot() as { context: SessionInfo }).context;
            this.agentActor(agentId)?.send({ type: to === "busy" ? "WORK.STARTED" : "WORK.FINISHED" } satisfies AgentEvent);
          }
        },
      }),
    });
    indexScheduler(actor.system);
    actor.on("*", (event: SupervisorEmitted) => this.onSupervisorEmitted(event));
    actor.subscribe({ error: (error) => this.onSupervisorError(error) });
    this.supervisor = actor;
    this.startedAt = this.clock.now();
    this.state = "running";
    actor.start();
    for (const { input } of this.describedAgents()) actor.send({ type: "AGENT.REGISTER", agent: input });
  }

  /** Adds an ACP worker (SPEC §2.5); its process starts at once when the runtime runs. */
  registerWorker(config: WorkerConfig): void {
    const agent = this.workers.add(config);
    // An in-process agent of the same id keeps its actor: it wins the id.
    if (this.state === "running" && this.agentActor(config.id) === undefined) this.supervisor?.send({ type: "AGENT.REGISTER", agent });
  }

  /**
   * Spawns the actor of a remote bus agent (`claude-code://qa`), offline until `setRemoteAgentOnline`. Nothing
   * happens when an actor of that id exists, or while the runtime is not running (it has no actors then).
   */
  registerRemoteAgent(agentId: string): void {
    if (this.state !== "running" || this.agentActor(agentId) !== undefined) return;
    this.supervisor?.send({ type: "AGENT.REGISTER", agent: { agentId, kind: "remote" } });
  }

  /** Stops a remote agent's actor (it deregistered); the runtime's own agents are never removed. */
  removeRemoteAgent(agentId: string): void {
    if (this.agentActor(agentId)?.getSnapshot().context.kind !== "remote") return;
    this.supervisor?.send({ type: "AGENT.REMOVE", agentId });
  }

  /** Tells a remote agent's actor that its WebSocket connected (`true`) or is gone (`false`). */
  setRemoteAgentOnline(agentId: string, online: boolean): void {
    const agent = this.agentActor(agentId);
    if (agent?.getSnapshot().context.kind !== "remote") return;
    agent.send({ type: online ? "AGENT.ONLINE" : "AGENT.OFFLINE" } satisfies AgentEvent);
  }

  /** The state of an agent's actor (a runtime agent by its id, a remote agent by its bus id); undefined without one. */
  agentState(agentId: string): AgentState | undefined {
    return this.agentActor(agentId)?.getSnapshot().value;
  }

  /** The runtime agent a bus agent id names (`troupe://<id>`, or an id with a framework of its own), if any. */
  agentIdOfBusAgent(busAgentId: string): string | undefined {
    return runtimeAgentIdCandidates(busAgentId).find((agentId) => this.executors.some((executor) => executor.hasAgent(agentId)));
  }

  /** Every agent of the runtime as a bus agent, online while the runtime runs. */
  busAgents(): RuntimeBusAgent[] {
    return this.describedAgents().map(({ agent, input }) => ({
      busAgentId: busAgentIdOf(agent.id),
      agentId: agent.id,
      kind: input.kind,
      name: agent.name,
      description: agent.description,
      capabilities: agent.capabilities,
      state: this.agentState(agent.id) ?? "offline",
      online: this.state === "running",
    }));
  }

  /** Closes every session (reason `shutdown`), waits for agents' hooks, then stops executors. */
  async stop(): Promise<void> {
    if (this.state !== "running" || this.supervisor === undefined) return;
    this.state = "stopping";
    const supervisor = this.supervisor;
    const stopped = new Promise<void>((resolve) => {
      if (supervisor.getSnapshot().status !== "active") return resolve();
      supervisor.subscribe({ complete: () => resolve(), error: () => resolve() });
    });
    supervisor.send({ type: "SHUTDOWN" });
    // One shard at a time, yielding in between: a runtime of 100k sessions stays responsive while it stops.
    while (supervisor.getSnapshot().status === "active") {
      supervisor.send({ type: "SHUTDOWN.NEXT" });
      await yieldToEventLoop();
    }
    await stopped;
    while (this.pendingHooks.size > 0) await Promise.allSettled([...this.pendingHooks]);
    this.replies.rejectAll(new BridgeError("CANCELLED", "Runtime stopped"));
    await Promise.allSettled(this.executors.map((executor) => executor.stop?.()));
    this.state = "stopped";
  }

  /** Listens to the event stream (SPEC §5); `"*"` for every type. Returns the function that unsubscribes. */
  on<T extends RuntimeEventType | "*">(type: T, listener: RuntimeEventListener<T>): () => void {
    return this.hub.on(type, listener);
  }

  // ---- the operations behind the bridge tools (arguments are already validated) ----

  /** `bridge_health`. */
  health(): HealthResult {
    this.running();
    const { active, busy, idle, failed } = this.sessionCounts;
    return {
      status: "ok",
      version: VERSION,
      uptimeMs: this.clock.now() - this.startedAt,
      executors: this.executors.map((executor) => executor.kind),
      sessions: { total: active + busy + idle + failed, active, busy, idle, failed, capacity: this.limits.maxSessions },
      agents: this.executors.reduce((count, executor) => count + executor.describeAgents().length, 0),
    };
  }

  /** `agents_discover`: every agent, the first executor winning an id, filtered by capability; status from its actor. */
  discoverAgents(capability?: string): DiscoverResult {
    this.running();
    const agents = this.describedAgents()
      .map(({ agent }) => agent)
      .filter((agent) => capability === undefined || agent.capabilities.includes(capability))
      // An agent a custom executor added after start() has no actor; like an in-process agent, it is ready.
      .map((agent) => ({ ...agent, status: discoverStatusOf(this.agentState(agent.id) ?? "ready") }));
    return { agents };
  }

  /** `sessions_create`. */
  async createSession(agentId: string | undefined, metadata: Record<string, unknown>): Promise<CreateResult> {
    const supervisor = this.running();
    const resolvedAgentId = this.resolveAgentId(agentId);
    const executor = this.executorFor(resolvedAgentId);
    const sessionId = randomUUID();
    const created = this.replies.wait<void>(sessionId);
    supervisor.send({
      type: "SESSION.CREATE",
      session: {
        sessionId,
        agentId: resolvedAgentId,
        metadata,
        createdAt: this.clock.now(),
        ttlMs: executor.sessionsExpire ? this.limits.sessionTtlMs : 0,
        idleMs: executor.sessionsExpire ? this.limits.sessionIdleMs : 0,
        maxQueuedPrompts: this.limits.maxQueuedPrompts,
        historyWindow: this.limits.historyWindow,
      },
    });
    await created;
    try {
      await executor.openSession({ sessionId, agentId: resolvedAgentId, metadata });
    } catch (error) {
      await this.closeSession(sessionId).catch(() => undefined);
      throw toBridgeError(error, "UPSTREAM");
    }
    return { sessionId, agentId: resolvedAgentId, status: "active" };
  }

  /** `sessions_prompt`: resolves with the reply, or rejects with the prompt's error. */
  async promptSession(sessionId: string, request: PromptRequest): Promise<PromptResult> {
    const session = this.sessionRef(sessionId);
    const requestId = request.requestId ?? randomUUID();
    const commandId = randomUUID();
    const pending: PendingPrompt = { requestId, commandId, prompt: request.prompt };
    if (request.runtimeParams !== undefined) pending.runtimeParams = request.runtimeParams;
    const at = this.clock.now();
    const reply = this.replies.wait<PromptReply>(commandId, sessionId);
    let queuedTimer: unknown;
    if (request.timeoutMs !== undefined) {
      const { timeoutMs } = request;
      pending.timeoutMs = timeoutMs;
      pending.deadlineAt = at + timeoutMs;
      // A prompt still queued at its deadline is dropped here; one in flight is timed out by runPrompt.
      queuedTimer = this.clock.setTimeout(() => {
        if (!session.getSnapshot().context.queue.some((queued) => queued.commandId === commandId)) return;
        this.replies.reject(commandId, timeoutError(timeoutMs));
        session.send({ type: "CANCEL", commandId: randomUUID(), requestId, at: this.clock.now() } satisfies SessionEvent);
      }, timeoutMs);
    }
    session.send({ type: "PROMPT", request: pending, at } satisfies SessionEvent);
    try {
      const { text, stopReason, usage } = await reply;
      return { text, stopReason, requestId, ...(usage ? { usage } : {}) };
    } finally {
      if (queuedTimer !== undefined) this.clock.clearTimeout(queuedTimer);
    }
  }

  /** `sessions_status`. */
  sessionStatus(sessionId: string): SessionStatusResult {
    const snapshot = this.sessionRef(sessionId).getSnapshot();
    const { context } = snapshot;
    const status = snapshot.value as SessionStatus;
    const provider = typeof context.metadata.provider === "string" ? context.metadata.provider : this.defaultProviderOf(context.agentId);
    const expiries: number[] = [];
    if (context.ttlMs > 0) expiries.push(context.createdAt + context.ttlMs);
    if (context.idleMs > 0 && status !== "busy") expiries.push(context.lastActivityAt + context.idleMs);
    return {
      sessionId,
      agentId: context.agentId,
      status,
      createdAt: context.createdAt,
      lastActivityAt: context.lastActivityAt,
      ...(provider ? { provider } : {}),
      ...(context.inFlight ? { activeRequestId: context.inFlight.requestId } : {}),
      queued: context.queue.length,
      usage: context.usage,
      ...(expiries.length > 0 ? { expiresAt: Math.min(...expiries) } : {}),
      ...(context.error ? { error: context.error } : {}),
    };
  }

  /** `sessions_close`: resolves once the session is deleted and its agent's hook has run. */
  async closeSession(sessionId: string): Promise<CloseResult> {
    const pending = this.closeWaiters.get(sessionId);
    if (pending === undefined) {
      const session = this.sessionRef(sessionId);
      const closed = this.replies.wait<void>(`close:${sessionId}`);
      this.closeWaiters.set(sessionId, closed);
      session.send({ type: "CLOSE", reason: "closed" } satisfies SessionEvent);
      await closed.finally(() => this.closeWaiters.delete(sessionId));
    } else {
      await pending;
    }
    return { closed: true, sessionId };
  }

  /** `sessions_cancel`: the in-flight prompt without `requestId`, else the named one. */
  async cancelPrompt(sessionId: string, requestId: string | undefined): Promise<CancelResult> {
    const session = this.sessionRef(sessionId);
    const commandId = randomUUID();
    const cancelled = this.replies.wait<string>(commandId, sessionId);
    const event: SessionEvent = { type: "CANCEL", commandId, at: this.clock.now() };
    if (requestId !== undefined) event.requestId = requestId;
    session.send(event);
    return { cancelled: true, sessionId, requestId: await cancelled };
  }

  /** The executor that runs an agent; in-process first. */
  executorFor(agentId: string): Executor {
    const executor = this.executors.find((candidate) => candidate.hasAgent(agentId));
    if (executor === undefined) throw new BridgeError("NOT_FOUND", `Agent not found: ${agentId}`, { agentId, sessionValid: false });
    return executor;
  }

  /** The provider an agent binds sessions to when `metadata.provider` names none (its `defaultProvider`). */
  private defaultProviderOf(agentId: string): string | undefined {
    return this.executorFor(agentId).describeAgents().find((agent) => agent.id === agentId)?.defaultProvider;
  }

  private resolveAgentId(agentId: string | undefined): string {
    const resolved = agentId ?? this.limits.defaultAgentId;
    if (resolved === undefined) throw new BridgeError("CONFIG", "agentId: required (the runtime has no defaultAgentId)", { field: "agentId" });
    return resolved;
  }

  private running(): SupervisorActor {
    if (this.state !== "running" || this.supervisor === undefined) {
      throw new BridgeError("INTERNAL", this.state === "new" ? "Runtime is not started" : "Runtime is stopped", { retryable: false });
    }
    return this.supervisor;
  }

  private sessionRef(sessionId: string): Actor<typeof sessionMachine> {
    const session = this.running().system.get(sessionId) as Actor<typeof sessionMachine> | undefined;
    if (session === undefined) throw sessionNotFound(sessionId);
    return session;
  }

  private async runPrompt(input: RunPromptInput, signal: AbortSignal): Promise<RunPromptOutput> {
    const { request } = input;
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    signal.addEventListener("abort", abort, { once: true });
    let timer: unknown;
    const timedOut = new Promise<never>((_, reject) => {
      const { timeoutMs, deadlineAt } = request;
      if (timeoutMs === undefined || deadlineAt === undefined) return;
      timer = this.clock.setTimeout(
        () => {
          // Reject before aborting: an agent that rejects at once on abort must not win the race with UPSTREAM.
          reject(timeoutError(timeoutMs));
          controller.abort();
        },
        Math.max(0, deadlineAt - this.clock.now()),
      );
    });
    const { sessionId } = input;
    const { requestId } = request;
    const emit: PromptEmitter = {
      delta: (delta) => this.hub.emit("prompt.delta", sessionId, { sessionId, requestId, delta }),
      warning: (message) => this.hub.emit("prompt.warning", sessionId, { sessionId, requestId, message }),
    };
    try {
      const executor = this.executorFor(input.agentId);
      const reply = await Promise.race([executor.runPrompt(input, controller.signal, emit), timedOut]);
      return { reply, at: this.clock.now() };
    } catch (error) {
      throw failure(toBridgeError(error, "UPSTREAM"), this.clock.now());
    } finally {
      if (timer !== undefined) this.clock.clearTimeout(timer);
      signal.removeEventListener("abort", abort);
    }
  }

  private onSessionEmitted(event: SessionEmitted): void {
    switch (event.type) {
      case "prompt.started":
        this.hub.emit("prompt.started", event.sessionId, { sessionId: event.sessionId, requestId: event.requestId });
        return;
      case "prompt.completed": {
        const { reply } = event;
        this.replies.resolve(event.commandId, reply);
        this.hub.emit("prompt.completed", event.sessionId, {
          sessionId: event.sessionId,
          requestId: event.requestId,
          stopReason: reply.stopReason,
          ...(reply.usage ? { usage: reply.usage } : {}),
        });
        return;
      }
      case "prompt.failed":
        this.replies.reject(event.commandId, bridgeErrorOf(event.error));
        this.hub.emit("prompt.failed", event.sessionId, { sessionId: event.sessionId, requestId: event.requestId, error: event.error });
        return;
      case "prompt.cancelled": {
        const message = event.cause === "cancel" ? "Prompt cancelled" : `Prompt cancelled: session ${event.cause}`;
        this.replies.reject(event.commandId, new BridgeError("CANCELLED", message, { requestId: event.requestId, cause: event.cause }));
        if (event.cancelCommandId !== undefined) this.replies.resolve(event.cancelCommandId, event.requestId);
        if (event.cause === "cancel" && event.inFlight) this.notifyCancel(event.sessionId, event.requestId);
        this.hub.emit("prompt.cancelled", event.sessionId, { sessionId: event.sessionId, requestId: event.requestId, cause: event.cause });
        return;
      }
      case "cancel.rejected":
        this.replies.reject(event.commandId, bridgeErrorOf(event.error));
        return;
      case "session.failed":
        this.failedSessions.add(event.session.sessionId);
        this.runHook(event.session, "failed");
        return;
    }
  }

  private onSupervisorEmitted(event: SupervisorEmitted): void {
    switch (event.type) {
      case "session.created":
        this.replies.resolve(event.sessionId, undefined);
        return;
      case "session.rejected":
        this.replies.reject(event.sessionId, bridgeErrorOf(event.error));
        return;
      case "session.closed": {
        const { sessionId } = event.session;
        // A command that reached the session while it was being deleted was dropped with its mailbox.
        this.replies.rejectGroup(sessionId, sessionNotFound(sessionId));
        const alreadyTold = this.failedSessions.delete(sessionId);
        const hook = alreadyTold ? Promise.resolve() : this.runHook(event.session, event.reason);
        void hook.then(() => this.replies.resolve(`close:${sessionId}`, undefined));
        return;
      }
      case "supervisor.stopped":
        return;
    }
  }

  /** Fails a session whose agent's side is gone (an executor says so); a deleted session is left alone. */
  private failSession(sessionId: string, error: BridgeError): void {
    const session = this.supervisor?.system.get(sessionId) as Actor<typeof sessionMachine> | undefined;
    if (session === undefined) return;
    const { retryable, sessionValid: _sessionValid, ...details } = error.details;
    session.send({
      type: "FAIL",
      error: { type: error.type, message: error.message, retryable, sessionValid: false, details },
      at: this.clock.now(),
    } satisfies SessionEvent);
  }

  /** An agent actor's `agent.*` event, into the event stream under the actor's id. */
  private onAgentEmitted(event: AgentEmitted): void {
    const { type, ...fields } = event;
    if (type === "agent.offline") this.hub.emit(type, agentSystemId(event.agentId), { ...fields, unavailable: event.unavailable });
    else this.hub.emit(type, agentSystemId(event.agentId), fields);
  }

  /**
   * Every agent once, the first executor winning an id, with the input of its actor (a custom executor's
   * agents run in this process as far as their actors can tell).
   */
  private describedAgents(): Array<{ agent: AgentDescription; input: AgentInput }> {
    const seen = new Set<string>();
    return this.executors.flatMap((executor) =>
      executor
        .describeAgents()
        .filter((agent) => !seen.has(agent.id) && seen.add(agent.id))
        .map((agent) => ({
          agent,
          input: executor === this.workers ? this.workers.agentInput(agent.id) : { agentId: agent.id, kind: "in-process" as const },
        })),
    );
  }

  private agentActor(agentId: string): AgentActorRef | undefined {
    return this.supervisor?.system.get(agentSystemId(agentId)) as AgentActorRef | undefined;
  }

  private notifyCancel(sessionId: string, requestId: string): void {
    const session = this.supervisor?.system.get(sessionId) as AnyActor | undefined;
    const info = session?.getSnapshot().context as SessionInfo | undefined;
    if (info === undefined) return;
    try {
      this.executorFor(info.agentId).promptCancelled({ sessionId, agentId: info.agentId, metadata: info.metadata }, requestId);
    } catch (error) {
      this.reportHookError(error);
    }
  }

  /** Runs an agent's `onSessionClose`; its failure is reported, never thrown into the actor system. */
  private runHook(session: SessionInfo, reason: SessionCloseReason): Promise<void> {
    const hook = Promise.resolve()
      .then(() => this.executorFor(session.agentId).closeSession(session, reason))
      .catch((error: unknown) => this.reportHookError(error))
      .finally(() => this.pendingHooks.delete(hook));
    this.pendingHooks.add(hook);
    return hook;
  }

  private reportHookError(error: unknown): void {
    process.emitWarning(`troupe: an agent hook failed: ${toBridgeError(error).message}`);
  }

  private onSupervisorError(error: unknown): void {
    this.state = "stopped";
    // The supervisor cannot stop its worker actors any more: end their processes here, none may outlive us.
    this.workers.killAll();
    this.replies.rejectAll(new BridgeError("INTERNAL", `Supervisor failed: ${toBridgeError(error).message}`));
  }
}

/** Creates a runtime; call `await runtime.start()` before using `runtime.bridge`. */
export function createRuntime(options: RuntimeOptions = {}): Runtime {
  return new Runtime(options);
}
