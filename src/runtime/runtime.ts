/**
 * The runtime: one supervisor actor and the effects its machines need (prompt runs, hooks, events).
 */
import { randomId } from "../ids.js";
// From node:timers/promises, which fake timers in tests leave alone: stopping must not wait on a fake clock.
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { createActor, fromCallback, fromPromise, type Actor, type AnyActor, type AnyActorRef } from "xstate";
import { deliveryMachine, type DeliveryContext } from "../../machines/delivery.machine.js";
import { poolShardMachine, type PoolChildEnding, type PoolChildSource } from "../../machines/pool-shard.machine.js";
import { poolMachine, poolSystemId, type PoolEmitted, type PoolKind } from "../../machines/pool.machine.js";
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
  sessionDelayDueAt,
  sessionMachine,
  type PendingPrompt,
  type PromptError,
  type PromptReply,
  type RunPromptInput,
  type RunPromptOutput,
  type SessionCloseReason,
  type SessionContext,
  type SessionEmitted,
  type SessionEvent,
  type SessionInfo,
  type SessionInput,
  type SessionStatus,
} from "../../machines/session.machine.js";
import { sessionShardMachine } from "../../machines/session-shard.machine.js";
import { supervisorMachine, type SupervisorEmitted } from "../../machines/supervisor.machine.js";
import { workerMachine, type WorkerEvent, type WorkerProcessInput } from "../../machines/worker.machine.js";
import { Bridge } from "../bridge/bridge.js";
import type { HealthResult, SessionStatusResult, CancelResult, CloseResult, CreateResult, PromptResult, DiscoverResult } from "../bridge/schemas.js";
import { systemClock, unrefClock, type Clock } from "../clock.js";
import { BridgeError, sessionNotFound, toBridgeError } from "../errors.js";
import { actorIdOf, createInspector, emitRoute, machineOf, parentOf, routeEmitted, type EmitRoute } from "../events/inspector.js";
import { actorViews, findActor, machineLogicOf, type ActorView } from "../events/actor-tree.js";
import { stateGraphOf, type StateGraph } from "../graph/state-graph.js";
import { EventHub, type PromptOrigin, type RuntimeEventListener, type RuntimeEventType } from "../events/event-hub.js";
import type { AskReply } from "../agents/agent.js";
import type { AgentDescription, Executor, PromptEmitter } from "../executors/executor.js";
import { InProcessExecutor } from "../executors/in-process.js";
import { WorkerExecutor, type WorkerConfig } from "../executors/worker.js";
import { A2aExecutor } from "../a2a/a2a-executor.js";
import { VERSION } from "../version.js";
import { busAgentIdOf, discoverStatusOf, runtimeAgentIdCandidates, workflowOfSession, type RuntimeBusAgent } from "./bus-agents.js";
import { compactSnapshots } from "./compact-snapshots.js";
import { useDelayQueue } from "./delay-queue.js";
import { inspectDirectly } from "./direct-inspection.js";
import type { AskRequest, Messenger } from "./messenger.js";
import { resolveLimits, type ResolvedLimits, type RuntimeOptions } from "./options.js";
import { Replies } from "./replies.js";
import { createMemoryStore } from "../store/memory-store.js";
import type { Store } from "../store/store.js";
import { restorableLogic, type Restoration } from "./restore.js";
import { checkOwnerHoldsLease, type RecordOwner } from "../cluster/record-owner.js";
import { SessionRecords, type LoadedSession } from "./session-records.js";
import { bridgeErrorOf, failure } from "./prompt-errors.js";
import { runInPromptScope, type PromptServices } from "./prompt-scope.js";
import { Conversations, type ConversationView, type ConverseOptions, type ConverseRequest, type ConverseResult } from "../conversations/conversations.js";
import { checkConversationSettings } from "../conversations/settings.js";
import { MemoryBook } from "../memory/memory-book.js";

type SupervisorActor = Actor<typeof supervisorMachine>;
type PoolActor = Actor<typeof poolMachine>;

/**
 * The owner of one kind of pooled children (the bus's session manager for workflows, its deliveries for
 * messages): it is told what its children emit, how their states change, and when one is released.
 */
export interface PoolHost {
  /** An event a child of this kind emitted. */
  emitted?(child: AnyActorRef, event: { type: string }): void;
  /** A child entered `to` from `from` (undefined when it starts or stops); `snapshot` is the one the transition leads to. */
  stateChanged?(child: AnyActorRef, from: string | undefined, to: string | undefined, snapshot?: { context?: unknown }): void;
  /** A child has a new snapshot (each transition, its start, its end; not its stop): what its owner stores. */
  snapshot?(child: AnyActorRef, snapshot: { status: string; value?: unknown; context?: unknown }): void;
  /** The child was reaped; `ending` is all that is left of it. */
  released(childId: string, ending: PoolChildEnding): void;
}

/** The owner of message deliveries: it also performs the delivery machine's `dispatch`. */
export interface DeliveryPoolHost extends PoolHost {
  /** The delivery machine's `dispatch` action: hand the message to its current target. */
  dispatch(context: DeliveryContext, self: AnyActorRef): void;
}

/** The machine a pooled kind's children run: what the inspector recognises them by. */
const POOL_KIND_OF_MACHINE: Record<string, PoolKind> = { workflow: "workflow", delivery: "delivery", conversation: "conversation" };

/** A bridge session that `start()` restored from the store. */
export interface RestoredSession extends SessionInfo {
  /** The request ids of its prompts in flight or queued when the process ended: they failed unanswered (`prompt.interrupted`). */
  interrupted: string[];
}

/** What a session's own lifetime and window may be, instead of the runtime's (a conversation's session: it ends it itself). */
export interface SessionLifetime {
  ttlMs?: number;
  idleMs?: number;
  historyWindow?: number;
}

/** What a prompt carries besides its text. */
export interface PromptRequest {
  prompt: string;
  requestId?: string;
  runtimeParams?: Record<string, unknown>;
  timeoutMs?: number;
}

/** How a prompt fails that was in flight or queued when the process ended: it was never answered; its session lives on. */
const INTERRUPTED_PROMPT_ERROR: PromptError = Object.freeze({
  type: "TRANSPORT",
  message: "The runtime restarted (or, in a cluster, another node took its work over) while the prompt was pending: it was not answered",
  retryable: true,
  sessionValid: true,
  details: Object.freeze({ interrupted: true }),
});

/** An actor-model runtime of agent sessions. Create it with `createRuntime`. */
export class Runtime {
  /** The eight bridge tools (SPEC §2.1). */
  readonly bridge: Bridge;
  /** Long-term memory of the agents about their users, in the store (SPEC §4): what the `memory_*` tools use. */
  readonly memory: MemoryBook;
  readonly limits: ResolvedLimits;
  readonly clock: Clock;
  /** The one event hub of this actor system: `runtime.on` and `bus.on` read it; the bus publishes its events here. */
  readonly hub: EventHub;
  private readonly inspectObserver: RuntimeOptions["inspect"];
  private readonly executors: Executor[];
  private readonly workers: WorkerExecutor;
  private readonly replies = new Replies();
  private readonly sessionCounts: Record<SessionStatus, number> = { active: 0, busy: 0, idle: 0, failed: 0 };
  /** Sessions whose agent was already told `failed`; their deletion calls no second hook. */
  private readonly failedSessions = new Set<string>();
  private readonly pendingHooks = new Set<Promise<void>>();
  private readonly closeWaiters = new Map<string, Promise<void>>();
  private readonly poolHosts: { workflow?: PoolHost; delivery?: DeliveryPoolHost; agent?: PoolHost; conversation?: PoolHost } = {};
  /** The child a pool refused while `spawnPooled` was sending it (pools answer synchronously when idle). */
  private refusedSpawn: string | undefined;
  /** The owner of the conversation actors (`converse`). */
  private readonly conversations: Conversations;
  /** What the built-in tools of this runtime's prompts reach (memory, capability state). */
  private readonly promptServices: PromptServices;
  /** How deep each pool's own processing is on the stack (a spawn it is making, a release it tells its owner). */
  private readonly poolDepth: Record<PoolKind, number> = { workflow: 0, delivery: 0, agent: 0, conversation: 0 };
  /** The bus that carries `ctx.ask`, once one is attached. */
  private messenger: Messenger | undefined;
  private supervisor: SupervisorActor | undefined;
  private readonly storeOption: RuntimeOptions["store"];
  private openedStore: Store | undefined;
  /** Keeps the store's bridge sessions in step with the session actors; there once the store is open. */
  private sessionRecords: SessionRecords | undefined;
  /** Stored sessions being restored, by id, until their actor takes them (see `sessionRestorationOf`). */
  private readonly restoringSessions = new Map<string, LoadedSession>();
  /** The sessions `start()` restored. */
  private restored: RestoredSession[] = [];
  /** In a cluster, the node whose bridge sessions this runtime runs (`setSessionOwner`). */
  private sessionOwner: RecordOwner | undefined;
  private state: "new" | "starting" | "running" | "stopping" | "stopped" = "new";
  private startedAt = 0;

  constructor(options: RuntimeOptions = {}) {
    this.limits = resolveLimits(options);
    this.clock = options.clock ?? systemClock;
    this.hub = new EventHub(this.clock);
    this.inspectObserver = options.inspect;
    this.storeOption = options.store;
    this.workers = new WorkerExecutor(options.workers ?? [], {
      killGraceMs: this.limits.workerKillGraceMs,
      startTimeoutMs: this.limits.workerStartTimeoutMs,
    });
    // Order is precedence: an in-process agent wins over a worker with the same id, a worker over an A2A agent.
    this.executors = [new InProcessExecutor(options.agents ?? []), this.workers];
    if (options.a2aAgents !== undefined && options.a2aAgents.length > 0) this.executors.push(new A2aExecutor(options.a2aAgents));
    if (options.executor) this.executors.push(options.executor);
    for (const executor of this.executors) {
      executor.attach?.({
        failSession: (sessionId, error) => this.failSession(sessionId, error),
        ask: (request) => this.ask(request),
        agentActor: (agentId) => this.agentActor(agentId),
        emit: (type, actorId, fields) => this.hub.emit(type, actorId, fields),
      });
    }
    const { defaultAgentId } = this.limits;
    if (defaultAgentId !== undefined && !this.executors.some((executor) => executor.hasAgent(defaultAgentId))) {
      throw new BridgeError("CONFIG", `defaultAgentId: no agent ${defaultAgentId}`, { field: "defaultAgentId" });
    }
    this.bridge = new Bridge(this);
    this.memory = new MemoryBook(() => this.store, this.clock);
    this.conversations = new Conversations(this, {
      settings: checkConversationSettings(options.agents ?? []),
      agentIds: () => this.describedAgents().map(({ agent }) => agent.id),
      inlinedInto: new Map((options.agents ?? []).flatMap((agent) => (agent.inlined ?? []).map((inlinedId): [string, string] => [inlinedId, agent.id]))),
      sessionMetadata: (sessionId) => (this.hasSession(sessionId) ? this.sessionRef(sessionId).getSnapshot().context.metadata : undefined),
    });
    this.poolHosts.conversation = this.conversations;
    this.promptServices = { memory: this.memory, capabilities: this.conversations };
  }

  /** Where this runtime keeps what must outlive it (docs/durability.md); there once `start()` resolved. */
  get store(): Store {
    if (this.openedStore === undefined) throw new BridgeError("INTERNAL", "The runtime's store is open only once the runtime started");
    return this.openedStore;
  }

  /** Whether `start()` was called (the runtime may be running, or stopped since). */
  get started(): boolean {
    return this.state !== "new";
  }

  /**
   * Whether sessions and workflows are written to the store: only to one given to the runtime. The in-memory
   * store the runtime makes for itself when given none dies with it, and nothing could be restored from it.
   */
  get persistent(): boolean {
    return this.storeOption !== undefined;
  }

  /**
   * Opens the store, starts the supervisor, then restores the bridge sessions the store holds (docs/durability.md):
   * each comes back in its state with its history, usage and remaining TTL and idle time; one that was busy
   * comes back idle, its interrupted prompts reported as `prompt.interrupted`. Calls before `start()` fail with
   * INTERNAL.
   */
  async start(): Promise<void> {
    if (this.state !== "new") throw new BridgeError("INTERNAL", `Runtime cannot start: it is ${this.state}`);
    this.state = "starting";
    let storedSessions: LoadedSession[];
    try {
      const option = this.storeOption;
      this.openedStore = option === undefined ? createMemoryStore() : typeof option === "function" ? await option() : option;
      storedSessions = await SessionRecords.load(this.openedStore, this.sessionOwner?.nodeId);
    } catch (error) {
      if (this.openedStore !== undefined && typeof this.storeOption !== "object") await this.openedStore.close().catch(() => undefined);
      this.openedStore = undefined;
      this.state = "new";
      throw error;
    }
    if (this.persistent) this.sessionRecords = new SessionRecords(this.openedStore, this.sessionOwner);
    const providedSession = sessionMachine.provide({
      actors: { runPrompt: fromPromise<RunPromptOutput, RunPromptInput>(({ input, signal }) => this.runPrompt(input, signal)) },
    });
    // Sessions are restored only now, at start: without stored ones, sessions spawn from the machine itself.
    // Thousands of sessions sit idle: their snapshots share what is the same in all of them.
    // A node of a cluster may take over another node's sessions at any time (`adoptSessions`).
    const session = compactSnapshots(
      storedSessions.length === 0 && this.sessionOwner === undefined
        ? providedSession
        : restorableLogic(providedSession, (input) => this.sessionRestorationOf(providedSession, input), this.clock),
    );
    const shard = sessionShardMachine.provide({ actors: { session } });
    const worker = workerMachine.provide({
      actors: {
        workerProcess: fromCallback<WorkerEvent, WorkerProcessInput>(({ input, sendBack }) =>
          this.workers.startProcess(input.workerId, input.generation, sendBack),
        ),
      },
    });
    const delivery = deliveryMachine.provide({ actions: { dispatch: ({ context, self }) => this.poolHosts.delivery?.dispatch(context, self) } });
    const agent = agentMachine.provide({ actors: { worker } });
    const pool = poolMachine.provide({ actors: { poolShard: poolShardMachine.provide({ actors: { delivery, agent } }) } });
    const supervisor = supervisorMachine.provide({ actors: { sessionShard: shard, pool } });
    // What the actors of each machine emit, routed here: one function per machine, none per actor.
    const routes = new Map<string | undefined, EmitRoute>([
      ["session", emitRoute((event, actorRef) => this.onSessionEmitted(event as SessionEmitted, actorRef))],
      ["agent", emitRoute((event) => this.onAgentEmitted(event as AgentEmitted))],
      ["pool", emitRoute((event) => this.onPoolEmitted(event as PoolEmitted))],
      ...Object.entries(POOL_KIND_OF_MACHINE).map(([machine, kind]): [string, EmitRoute] => [
        machine,
        emitRoute((event, actorRef) => this.poolHosts[kind]?.emitted?.(actorRef, event)),
      ]),
    ]);
    const inspect = createInspector(this.hub, this.inspectObserver, {
      created: (actorRef) => {
        const route = routes.get(machineOf(actorRef));
        if (route !== undefined) routeEmitted(actorRef, route);
      },
      snapshot: (actorRef, snapshot) => {
        const machine = machineOf(actorRef);
        if (machine === "session") {
          this.sessionRecords?.changed(snapshot.value as SessionStatus, snapshot.context as SessionContext);
          return;
        }
        const kind = machine === undefined ? undefined : POOL_KIND_OF_MACHINE[machine];
        if (kind !== undefined) this.poolHosts[kind]?.snapshot?.(actorRef, snapshot);
      },
      stateChanged: (actorRef, from, to, snapshot) => {
        const machine = machineOf(actorRef);
        const kind = machine === undefined ? undefined : POOL_KIND_OF_MACHINE[machine];
        if (kind !== undefined) this.poolHosts[kind]?.stateChanged?.(actorRef, from, to, snapshot);
        if (machine !== "session") return;
        if (from !== undefined) this.sessionCounts[from as SessionStatus] -= 1;
        if (to !== undefined) this.sessionCounts[to as SessionStatus] += 1;
        if (to === undefined && this.sessionRecords !== undefined) {
          const { sessionId, releaseReason } = (actorRef.getSnapshot() as { context: SessionContext }).context;
          // Closed and expired sessions leave the store; those the runtime stopped with it come back at the next start.
          this.sessionRecords.gone(sessionId, releaseReason !== "closed" && releaseReason !== "expired");
        }
        // A session in `busy` runs one prompt of its agent: the agent's actor counts them.
        if ((from === "busy") !== (to === "busy")) {
          const { agentId } = (actorRef.getSnapshot() as { context: SessionInfo }).context;
          this.agentActor(agentId)?.send({ type: to === "busy" ? "WORK.STARTED" : "WORK.FINISHED" } satisfies AgentEvent);
        }
      },
    });
    const clock = unrefClock(this.clock);
    const actor = createActor(supervisor, {
      id: "supervisor",
      systemId: "supervisor",
      clock,
      input: { maxSessions: this.limits.maxSessions, shardSize: this.limits.shardSize, maxWorkflows: this.limits.maxWorkflowSessions },
      inspect,
    });
    useDelayQueue(actor.system, clock, { shareTimer: this.clock === systemClock });
    inspectDirectly(actor, inspect);
    actor.on("*", (event: SupervisorEmitted) => this.onSupervisorEmitted(event));
    actor.subscribe({ error: (error) => this.onSupervisorError(error) });
    this.supervisor = actor;
    this.startedAt = this.clock.now();
    this.state = "running";
    actor.start();
    for (const { input } of this.describedAgents()) this.spawnAgent(input);
    await Promise.all(
      this.executors.map(async (executor) => {
        await executor.start?.();
      }),
    );
    this.restored = await this.restoreSessions(actor, storedSessions);
    await this.conversations.closeRestored(this.restored);
  }

  /**
   * Makes this runtime the one of node `owner` of a cluster (call it before `start()`, given a store shared by the
   * cluster's nodes): it restores only the bridge sessions whose records name that node, names it in every record
   * it writes, fences each write with the node's lease, and writes nothing while the node does not hold it.
   */
  setSessionOwner(owner: RecordOwner): void {
    if (this.state !== "new") throw new BridgeError("INTERNAL", "setSessionOwner: call it before start()");
    this.sessionOwner = owner;
  }

  /**
   * Takes over stored sessions of another node (dead, its records now naming this one): each comes back as
   * `start()` brings back its own after a restart (idle with its history, its interrupted prompts reported
   * `prompt.interrupted`). Resolves with those restored, for the bus to answer the tasks behind their prompts.
   */
  async adoptSessions(stored: LoadedSession[]): Promise<RestoredSession[]> {
    if (this.state !== "running" || this.supervisor === undefined)
      throw new BridgeError("INTERNAL", `The runtime cannot take sessions over: it is ${this.state}`);
    const adopted = await this.restoreSessions(
      this.supervisor,
      stored.filter((loaded) => !this.hasSession(loaded.session.sessionId)),
    );
    await this.conversations.closeRestored(adopted);
    return adopted;
  }

  /**
   * Closes every bridge session of this runtime without touching the store (the node lost its lease: another
   * node takes them over from their records). Their agents' hooks run as for a close.
   */
  async dropSessions(): Promise<void> {
    await Promise.all(
      (this.sessionRecords?.sessionIds() ?? []).map((sessionId) =>
        this.hasSession(sessionId) ? this.closeSession(sessionId).catch(() => undefined) : Promise.resolve(),
      ),
    );
  }

  /**
   * Brings back the stored sessions, oldest first, through the supervisor like new ones (so `maxSessions` holds),
   * then tells their agents (`reopenSession`). A session whose agent is gone, or that finds no room, is dropped
   * from the store with a warning.
   */
  private async restoreSessions(supervisor: SupervisorActor, stored: LoadedSession[]): Promise<RestoredSession[]> {
    const records = this.sessionRecords;
    const restored: RestoredSession[] = [];
    if (records === undefined) return restored;
    const reopening: Array<Promise<void>> = [];
    for (const loaded of [...stored].sort((left, right) => left.session.createdAt - right.session.createdAt)) {
      const { session, interrupted } = loaded;
      const { sessionId, agentId } = session;
      if (!this.hasAgent(agentId)) {
        process.emitWarning(`troupe: stored session ${sessionId} is not restored: its agent ${agentId} is not configured`, { code: "TROUPE_RESTORE" });
        records.drop(sessionId);
        continue;
      }
      const placed = this.replies.wait<void>(sessionId);
      this.restoringSessions.set(sessionId, loaded);
      supervisor.send({
        type: "SESSION.CREATE",
        session: {
          sessionId,
          agentId,
          metadata: session.metadata,
          createdAt: session.createdAt,
          ttlMs: session.ttlMs,
          idleMs: session.idleMs,
          maxQueuedPrompts: session.maxQueuedPrompts,
          historyWindow: session.historyWindow,
        },
      });
      try {
        await placed;
      } catch (error) {
        process.emitWarning(`troupe: stored session ${sessionId} is not restored: ${toBridgeError(error).message}`, { code: "TROUPE_RESTORE" });
        records.drop(sessionId);
        continue;
      } finally {
        this.restoringSessions.delete(sessionId);
      }
      restored.push({ sessionId, agentId, metadata: session.metadata, interrupted });
      const origin = promptOriginOf({ agentId, metadata: session.metadata });
      for (const requestId of interrupted) this.hub.emit("prompt.interrupted", sessionId, { sessionId, requestId, error: INTERRUPTED_PROMPT_ERROR, ...origin });
      // Its agent was told `failed` before the restart: deleting it calls no hook again.
      if (session.status === "failed") this.failedSessions.add(sessionId);
      else reopening.push(this.reopenSession({ sessionId, agentId, metadata: session.metadata }));
    }
    await Promise.all(reopening);
    return restored;
  }

  /** The restoration of a session being restored, when `input` is one (the shard spawns restored sessions like new ones). */
  private sessionRestorationOf(machine: typeof sessionMachine, input: SessionInput): Restoration | undefined {
    const loaded = this.restoringSessions.size === 0 ? undefined : this.restoringSessions.get(input.sessionId);
    if (loaded === undefined) return undefined;
    const { session, interrupted } = loaded;
    // A session that was busy comes back idle: its prompts failed with the restart, now.
    const wasBusy = interrupted.length > 0 && session.status !== "failed";
    const context: SessionContext = {
      lastActivityAt: wasBusy ? this.clock.now() : session.lastActivityAt,
      inFlight: null,
      queue: [],
      history: session.history,
      usage: session.usage,
      error: session.error,
      releaseReason: null,
      ...input,
    };
    this.sessionRecords?.restored(loaded, context);
    return {
      snapshot: machine.resolveState({ value: wasBusy ? "idle" : session.status, context }),
      dueAt: (delay) => sessionDelayDueAt(context, delay),
    };
  }

  /** Tells a restored session's executor it is back; one that cannot take it back (or fails to) fails the session. */
  private async reopenSession(session: SessionInfo): Promise<void> {
    try {
      const executor = this.executorFor(session.agentId);
      if (executor.reopenSession === undefined) {
        throw new BridgeError("TRANSPORT", `Session ${session.sessionId} ended with the restart: the ${executor.kind} executor cannot restore sessions`, {
          sessionValid: false,
        });
      }
      await executor.reopenSession(session);
    } catch (error) {
      const cause = toBridgeError(error, "UPSTREAM");
      this.failSession(session.sessionId, new BridgeError(cause.type, cause.message, { ...cause.details, sessionValid: false }));
    }
  }

  /**
   * The bridge sessions `start()` restored from the store, with the prompts each held when the process ended
   * (also reported as `prompt.interrupted`): the bus takes back its own sessions and answers the tasks behind
   * those prompts.
   */
  restoredSessions(): readonly RestoredSession[] {
    return this.restored;
  }

  /** Adds an ACP worker (SPEC §2.5); its process starts at once when the runtime runs. */
  registerWorker(config: WorkerConfig): void {
    const agent = this.workers.add(config);
    // An in-process agent of the same id keeps its actor: it wins the id.
    if (this.state === "running" && this.agentActor(config.id) === undefined) this.spawnAgent(agent);
  }

  /**
   * Spawns the actor of a remote bus agent (`claude-code://qa`), offline until `setRemoteAgentOnline`. Nothing
   * happens when an actor of that id exists, or while the runtime is not running (it has no actors then).
   */
  registerRemoteAgent(agentId: string): void {
    if (this.state !== "running" || this.agentActor(agentId) !== undefined) return;
    this.spawnAgent({ agentId, kind: "remote" });
  }

  /** Stops a remote agent's actor (it deregistered); the runtime's own agents are never removed. */
  removeRemoteAgent(agentId: string): void {
    if (this.agentActor(agentId)?.getSnapshot().context.kind !== "remote") return;
    this.evictPooled("agent", agentSystemId(agentId));
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
    return runtimeAgentIdCandidates(busAgentId).find((agentId) => this.hasAgent(agentId));
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
    this.conversations.stop();
    await Promise.allSettled(
      this.executors.map(async (executor) => {
        await executor.stop?.();
      }),
    );
    this.state = "stopped";
    // A store given as an instance belongs to the caller: it is only flushed. The runtime closes the one it opened.
    const store = this.openedStore;
    if (store !== undefined) await (typeof this.storeOption === "object" ? store.flush() : store.close());
  }

  /** Whether an executor runs an agent with this id. */
  hasAgent(agentId: string): boolean {
    return this.executors.some((executor) => executor.hasAgent(agentId));
  }

  /**
   * Lets the agents' `ctx.ask` go through `messenger` (the `CommunicationBus` calls this on `start()`).
   * Returns the function that detaches it again.
   */
  attachMessenger(messenger: Messenger): () => void {
    this.messenger = messenger;
    return () => {
      if (this.messenger === messenger) this.messenger = undefined;
    };
  }

  /** Listens to the event stream (SPEC §5); `"*"` for every type. Returns the function that unsubscribes. */
  on<T extends RuntimeEventType | "*">(type: T, listener: RuntimeEventListener<T>): () => void {
    return this.hub.on(type, listener);
  }

  // ---- the pools: workflow sessions and message deliveries, owned by the supervisor (for the bus) ----

  /** Makes `host` the owner of one kind of pooled children. The bus calls this; one owner per kind. */
  attachPool(kind: "delivery", host: DeliveryPoolHost): void;
  attachPool(kind: "workflow", host: PoolHost): void;
  attachPool(kind: "workflow" | "delivery", host: PoolHost | DeliveryPoolHost): void {
    if (kind === "delivery") this.poolHosts.delivery = host as DeliveryPoolHost;
    else this.poolHosts.workflow = host;
  }

  /**
   * Spawns a child in the pool of its kind, with `childId` as its id and system id. A full pool is CAPACITY
   * (retryable). Returns the child's actor; `undefined` when it already ended while it was spawned (a message
   * acknowledged at once), or when an unbounded pool was busy (see below) and spawns it once its current event is over.
   */
  spawnPooled(kind: PoolKind, childId: string, src: PoolChildSource, input: unknown): AnyActorRef | undefined {
    const pool = this.poolOf(kind);
    // Called from inside the pool's own processing (a listener of a release, or of a child being spawned),
    // the spawn would wait in the pool's mailbox until the current event is over: a bounded pool could not
    // answer now whether the child fits, nor hand its actor back. BUSY (retryable) instead of a half-made child.
    const { capacity } = pool.getSnapshot().context;
    if (this.poolDepth[kind] > 0 && capacity > 0) {
      throw new BridgeError(
        "BUSY",
        `The ${kind} pool is busy: a ${kind} cannot be created while the pool handles one of its own events (retry after it, e.g. from a microtask)`,
        {
          kind,
        },
      );
    }
    this.refusedSpawn = undefined;
    this.poolDepth[kind] += 1;
    try {
      pool.send({ type: "POOL.SPAWN", childId, src, input });
    } finally {
      this.poolDepth[kind] -= 1;
    }
    if (this.refusedSpawn === childId) {
      throw new BridgeError("CAPACITY", `The ${kind} pool is full (${capacity} alive)`, { retryable: true, limit: capacity, kind });
    }
    return this.pooledChild(childId);
  }

  /** A pooled child that is alive (ended children are no longer in the system: keep their ref while they are retained). */
  pooledChild(childId: string): AnyActorRef | undefined {
    return this.supervisor?.system.get(childId) as AnyActorRef | undefined;
  }

  /**
   * Reaps a pooled child now, ended or not; its owner hears `released`. An ended child is no longer in the
   * system: pass its actor as `child`, so that only its shard is asked rather than every shard of the pool.
   */
  evictPooled(kind: PoolKind, childId: string, child?: AnyActorRef): void {
    const actor = child ?? this.pooledChild(childId);
    const shard = actor === undefined ? undefined : parentOf(actor as AnyActor);
    // A shard's system id is its shard id (its local id is only its number).
    const shardId = shard === undefined ? undefined : actorIdOf(shard);
    this.poolOf(kind).send({ type: "POOL.EVICT", childId, ...(shardId === undefined ? {} : { shardId }) });
  }

  /** Reaps every child of a kind (their owner stops). */
  clearPool(kind: PoolKind): void {
    if (this.state === "running") this.poolOf(kind).send({ type: "POOL.CLEAR" });
  }

  /** Children of a kind alive now (ended-but-retained ones count), read from the pool. */
  pooledCount(kind: PoolKind): number {
    return this.state === "running" ? this.poolOf(kind).getSnapshot().context.live : 0;
  }

  private poolOf(kind: PoolKind): PoolActor {
    const pool = this.running().system.get(poolSystemId(kind)) as PoolActor | undefined;
    if (pool === undefined) throw new BridgeError("INTERNAL", `No ${kind} pool: the supervisor has stopped`);
    return pool;
  }

  private onPoolEmitted(event: PoolEmitted): void {
    if (event.type === "child.rejected") {
      this.refusedSpawn = event.childId;
      return;
    }
    this.poolDepth[event.kind] += 1;
    try {
      this.poolHosts[event.kind]?.released(event.childId, event.ending);
    } finally {
      this.poolDepth[event.kind] -= 1;
    }
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

  /** Bridge sessions by state, counted as they move (O(1): what `GET /metrics` reads). */
  sessionCountsByStatus(): Record<SessionStatus, number> {
    return { ...this.sessionCounts };
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

  // ---- conversations (SPEC §4, docs/conversations.md) ----

  /**
   * A user's message to the runtime's agents: routed to the agent it mentions (`@<agentId>`), else to the
   * conversation the thread follows up, else to the default agent; answered through that agent's conversation.
   */
  converse(request: ConverseRequest, options?: ConverseOptions): Promise<ConverseResult> {
    return this.conversations.converse(request, options);
  }

  /** The live conversation a bridge session belongs to (its state, threads and capability state), if any. */
  conversation(sessionId: string): ConversationView | undefined {
    return this.conversations.view(sessionId);
  }

  /** Whether a conversation is alive, by its id. */
  hasConversation(conversationId: string): boolean {
    return this.conversations.has(conversationId);
  }

  /** `sessions_create`. */
  async createSession(agentId: string | undefined, metadata: Record<string, unknown>, lifetime: SessionLifetime = {}): Promise<CreateResult> {
    const supervisor = this.running();
    const owner = this.sessionOwner;
    // A session it could not store would vanish with this node, unseen by the node that takes its work over.
    checkOwnerHoldsLease(owner);
    const resolvedAgentId = this.resolveAgentId(agentId);
    const executor = this.executorFor(resolvedAgentId);
    this.checkProvider(executor, resolvedAgentId, metadata.provider);
    const sessionId = randomId();
    const created = this.replies.wait<void>(sessionId);
    supervisor.send({
      type: "SESSION.CREATE",
      session: {
        sessionId,
        agentId: resolvedAgentId,
        metadata,
        createdAt: this.clock.now(),
        ttlMs: executor.sessionsExpire ? (lifetime.ttlMs ?? this.limits.sessionTtlMs) : 0,
        idleMs: executor.sessionsExpire ? (lifetime.idleMs ?? this.limits.sessionIdleMs) : 0,
        maxQueuedPrompts: this.limits.maxQueuedPrompts,
        historyWindow: lifetime.historyWindow ?? this.limits.historyWindow,
      },
    });
    await created;
    try {
      await executor.openSession({ sessionId, agentId: resolvedAgentId, metadata });
    } catch (error) {
      await this.closeSession(sessionId).catch(() => undefined);
      throw toBridgeError(error, "UPSTREAM");
    }
    if (owner !== undefined) await this.sessionStored(owner, sessionId);
    return { sessionId, agentId: resolvedAgentId, status: "active" };
  }

  /**
   * In a cluster, a new session is answered once its record is in the shared store: from then on every node finds
   * it (and forwards its tools here). One the store did not take (unreachable, or the node lost its lease meanwhile)
   * is closed: TRANSPORT, create it again.
   */
  private async sessionStored(owner: RecordOwner, sessionId: string): Promise<void> {
    let failure: BridgeError | undefined;
    try {
      await this.store.flush();
    } catch (error) {
      failure = toBridgeError(error, "TRANSPORT");
    }
    if (failure === undefined && owner.fence() !== undefined) return;
    await this.closeSession(sessionId).catch(() => undefined);
    throw new BridgeError(
      "TRANSPORT",
      `Session ${sessionId} could not be stored for the cluster (${failure?.message ?? `node ${owner.nodeId} lost its lease`}): create it again`,
      {
        retryable: true,
      },
    );
  }

  /** `sessions_prompt`: resolves with the reply, or rejects with the prompt's error. */
  async promptSession(sessionId: string, request: PromptRequest): Promise<PromptResult> {
    const session = this.sessionRef(sessionId);
    const requestId = request.requestId ?? randomId();
    const commandId = randomId();
    const pending: PendingPrompt = { requestId, commandId, prompt: request.prompt };
    if (request.runtimeParams !== undefined) pending.runtimeParams = request.runtimeParams;
    // The session times the prompt out itself (PROMPT.DEADLINE), counting from now: queued time counts.
    if (request.timeoutMs !== undefined) pending.timeoutMs = request.timeoutMs;
    const at = this.clock.now();
    const reply = this.replies.wait<PromptReply>(commandId, sessionId);
    session.send({ type: "PROMPT", request: pending, at } satisfies SessionEvent);
    const { text, stopReason, usage } = await reply;
    return { text, stopReason, requestId, ...(usage ? { usage } : {}) };
  }

  /** `sessions_status`. */
  sessionStatus(sessionId: string): SessionStatusResult {
    const snapshot = this.sessionRef(sessionId).getSnapshot();
    const { context } = snapshot;
    const status = snapshot.value;
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
      usage: { ...context.usage },
      ...(expiries.length > 0 ? { expiresAt: Math.min(...expiries) } : {}),
      ...(context.error ? { error: context.error } : {}),
    };
  }

  /** Whether a bridge session exists (closing and expiry delete it). */
  hasSession(sessionId: string): boolean {
    const actor = this.supervisor?.system.get(sessionId) as AnyActor | undefined;
    return actor !== undefined && machineOf(actor) === "session";
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
    const commandId = randomId();
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

  /**
   * `metadata.provider` must name one of the agent's providers (CONFIG otherwise, before any session exists).
   * An agent that lists no providers has none to bind a session to, so naming one is CONFIG too.
   */
  private checkProvider(executor: Executor, agentId: string, provider: unknown): void {
    if (typeof provider !== "string") return;
    const providers = executor.describeAgents().find((agent) => agent.id === agentId)?.providers ?? [];
    if (providers.some((each) => each.id === provider)) return;
    const registered = providers.length === 0 ? "it lists no providers" : `registered: ${providers.map((each) => each.id).join(", ")}`;
    throw new BridgeError("CONFIG", `metadata.provider: no provider ${provider} is registered with agent ${agentId} (${registered})`, {
      field: "metadata.provider",
      provider,
    });
  }

  /** The provider an agent binds sessions to when `metadata.provider` names none (its `defaultProvider`). */
  private defaultProviderOf(agentId: string): string | undefined {
    return this.executorFor(agentId)
      .describeAgents()
      .find((agent) => agent.id === agentId)?.defaultProvider;
  }

  private resolveAgentId(agentId: string | undefined): string {
    const resolved = agentId ?? this.limits.defaultAgentId;
    if (resolved === undefined) throw new BridgeError("CONFIG", "agentId: required (the runtime has no defaultAgentId)", { field: "agentId" });
    return resolved;
  }

  /**
   * The live actor tree, parents first (lazily: a page of `GET /actors` builds only its own views). Empty
   * before `start()` and after `stop()`.
   */
  actors(): Iterable<() => ActorView> {
    const supervisor = this.state === "running" ? this.supervisor : undefined;
    return supervisor === undefined ? [] : actorViews(supervisor);
  }

  /** The state graph of a live machine actor (by its event id), or `undefined` when there is none. */
  actorGraph(actorId: string): StateGraph | undefined {
    const supervisor = this.state === "running" ? this.supervisor : undefined;
    const actorRef = supervisor === undefined ? undefined : findActor(supervisor, actorId);
    const machine = actorRef === undefined ? undefined : machineLogicOf(actorRef);
    return machine === undefined ? undefined : stateGraphOf(machine);
  }

  private running(): SupervisorActor {
    if (this.state !== "running" || this.supervisor === undefined) {
      throw new BridgeError("INTERNAL", this.state === "new" || this.state === "starting" ? "Runtime is not started" : "Runtime is stopped", {
        retryable: false,
      });
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
    const { sessionId } = input;
    const { requestId } = request;
    const origin = promptOriginOf(input);
    const { hub } = this;
    // Each event is built only when someone listens for its type.
    const emit: PromptEmitter = {
      delta: (delta) => {
        if (hub.wants("prompt.delta")) hub.emit("prompt.delta", sessionId, { sessionId, requestId, delta, ...origin });
      },
      warning: (message) => {
        if (hub.wants("prompt.warning")) hub.emit("prompt.warning", sessionId, { sessionId, requestId, message, ...origin });
      },
      tool: ({ type, ...fields }) => {
        if (hub.wants(type)) hub.emit(type, sessionId, { sessionId, requestId, ...fields, ...origin });
      },
    };
    try {
      const executor = this.executorFor(input.agentId);
      // Built-in tools (memory, capability state) reach this runtime through the prompt's scope.
      const reply = await runInPromptScope(sessionId, this.promptServices, () => executor.runPrompt(input, signal, emit));
      return { reply, at: this.clock.now() };
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- the machine's xstate.error event carries this plain, serializable failure (it is kept in snapshots)
      throw failure(toBridgeError(error, "UPSTREAM"), this.clock.now());
    }
  }

  private onSessionEmitted(event: SessionEmitted, sessionRef: AnyActorRef): void {
    // Read only for the stream: a prompt's events name the session's agent (and workflow) for its filters.
    const origin = (): PromptOrigin => promptOriginOf((sessionRef.getSnapshot() as { context: SessionInfo }).context);
    switch (event.type) {
      case "prompt.started":
        if (this.hub.wants(event.type))
          this.hub.emit("prompt.started", event.sessionId, { sessionId: event.sessionId, requestId: event.requestId, ...origin() });
        return;
      case "prompt.completed": {
        const { reply } = event;
        this.replies.resolve(event.commandId, reply);
        if (!this.hub.wants(event.type)) return;
        this.hub.emit("prompt.completed", event.sessionId, {
          sessionId: event.sessionId,
          requestId: event.requestId,
          stopReason: reply.stopReason,
          ...(reply.usage ? { usage: reply.usage } : {}),
          ...origin(),
        });
        return;
      }
      case "prompt.failed":
        this.replies.reject(event.commandId, bridgeErrorOf(event.error));
        if (this.hub.wants(event.type))
          this.hub.emit("prompt.failed", event.sessionId, { sessionId: event.sessionId, requestId: event.requestId, error: event.error, ...origin() });
        return;
      case "prompt.cancelled": {
        const message = event.cause === "cancel" ? "Prompt cancelled" : `Prompt cancelled: session ${event.cause}`;
        this.replies.reject(event.commandId, new BridgeError("CANCELLED", message, { requestId: event.requestId, cause: event.cause }));
        if (event.cancelCommandId !== undefined) this.replies.resolve(event.cancelCommandId, event.requestId);
        if (event.cause === "cancel" && event.inFlight) this.notifyCancel(event.sessionId, event.requestId);
        if (this.hub.wants(event.type))
          this.hub.emit("prompt.cancelled", event.sessionId, { sessionId: event.sessionId, requestId: event.requestId, cause: event.cause, ...origin() });
        return;
      }
      case "cancel.rejected":
        this.replies.reject(event.commandId, bridgeErrorOf(event.error));
        return;
      case "session.failed":
        this.failedSessions.add(event.session.sessionId);
        void this.runHook(event.session, "failed");
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
        this.replies.rejectGroup(sessionId, () => sessionNotFound(sessionId));
        const alreadyTold = this.failedSessions.delete(sessionId);
        const hook = alreadyTold ? Promise.resolve() : this.runHook(event.session, event.reason);
        void hook.then(() => this.replies.resolve(`close:${sessionId}`, undefined));
        return;
      }
      case "supervisor.stopped":
        return;
    }
  }

  /** An agent's `ctx.ask`: through the attached bus; a runtime without one cannot reach other agents. */
  private ask(request: AskRequest): Promise<AskReply> {
    if (this.messenger === undefined) {
      return Promise.reject(
        new BridgeError(
          "CONFIG",
          `${request.from} cannot ask ${request.agentId}: ctx.ask needs a CommunicationBus on this runtime (new CommunicationBus({ runtime }))`,
          {
            agentId: request.agentId,
          },
        ),
      );
    }
    return this.messenger.ask(request).then((reply) => {
      this.conversations.answeredAsk(request.requestId, request.agentId);
      return reply;
    });
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
    // Every prompt makes its agent busy and ready again: build the events only for someone listening.
    if (!this.hub.wants(event.type)) return;
    const { type, ...fields } = event;
    if (type === "agent.offline") this.hub.emit(type, agentSystemId(event.agentId), { ...fields, unavailable: event.unavailable });
    else this.hub.emit(type, agentSystemId(event.agentId), fields);
  }

  /**
   * Every agent once, the first executor winning an id, with the input of its actor (the executor's, else an
   * in-process agent's: a custom executor's agents run in this process as far as their actors can tell).
   */
  private describedAgents(): Array<{ agent: AgentDescription; input: AgentInput }> {
    const seen = new Set<string>();
    return this.executors.flatMap((executor) =>
      executor
        .describeAgents()
        .filter((agent) => !seen.has(agent.id) && seen.add(agent.id))
        .map((agent) => ({
          agent,
          input: executor.agentInput?.(agent.id) ?? { agentId: agent.id, kind: "in-process" as const },
        })),
    );
  }

  /** Every agent actor is spawned here, in the supervisor's agent pool (sharded: registering the 10,000th costs what the 100th does). */
  private spawnAgent(agent: AgentInput): void {
    this.spawnPooled("agent", agentSystemId(agent.agentId), "agent", agent);
  }

  private agentActor(agentId: string): AgentActorRef | undefined {
    return this.supervisor?.system.get(agentSystemId(agentId)) as AgentActorRef | undefined;
  }

  private notifyCancel(sessionId: string, requestId: string): void {
    const session = this.supervisor?.system.get(sessionId) as AnyActor | undefined;
    const info = (session?.getSnapshot() as { context: SessionInfo } | undefined)?.context;
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

/** The agent a session's prompts go to, and the workflow whose tasks they run (when the bus opened it for one). */
function promptOriginOf(session: Pick<SessionInfo, "agentId" | "metadata">): PromptOrigin {
  const workflowId = workflowOfSession(session.metadata);
  return workflowId === undefined ? { agentId: session.agentId } : { agentId: session.agentId, workflowId };
}
