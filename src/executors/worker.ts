/**
 * `WorkerExecutor`: agents that run as separate processes speaking the Agent Client Protocol (SPEC §2.5).
 *
 * Each worker's process lives under a worker actor (`machines/worker.machine.ts`), the child of the worker's
 * agent actor (`machines/agent.machine.ts`); the worker actor restarts the process with backoff. This executor
 * provides the worker actor's `workerProcess`, maps bridge sessions onto ACP sessions, and fails every session
 * of a process that exits. Whether a worker is ready or unavailable is its agent actor's state, read from its
 * snapshots. Worker sessions never expire.
 */
import type { AgentInput, AgentActorRef } from "../../machines/agent.machine.js";
import type { PromptReply, RunPromptInput, SessionCloseReason, SessionInfo } from "../../machines/session.machine.js";
import { workerSystemId, type WorkerEvent, type WorkerRestartPolicy } from "../../machines/worker.machine.js";
import { BridgeError, sessionNotFound } from "../errors.js";
import { AcpProcess, type PermissionPolicy } from "./acp-process.js";
import { describeExit, describeSpawnFailure, withStderr, type SpawnFailure } from "./process-exits.js";
import type { AgentDescription, Executor, ExecutorHost, PromptEmitter } from "./executor.js";
import type { StopReason } from "../agents/agent.js";

/** A worker: an ACP agent program and how troupe runs it. */
export interface WorkerConfig {
  /** The agent id sessions name. */
  id: string;
  command: string;
  args?: string[];
  env?: Record<string, string>;
  /** Working directory of the process and of its ACP sessions. Default: this process's. */
  cwd?: string;
  name?: string;
  description?: string;
  capabilities?: string[];
  /** How to answer the agent's permission requests. Default `deny`. */
  permissions?: PermissionPolicy;
  /** The agent may read and write files only below this directory. Default: no file access. */
  fsRoot?: string;
  restart?: Partial<WorkerRestartPolicy>;
}

/** Defaults of the restart policy. */
export const DEFAULT_RESTART_POLICY: WorkerRestartPolicy = {
  maxCrashes: 5,
  backoffMs: 500,
  maxBackoffMs: 30_000,
  stableAfterMs: 60_000,
};

/** How long `stop()` lets a process exit after SIGTERM before SIGKILL. */
export const DEFAULT_KILL_GRACE_MS = 2_000;
/** How long `sessions_create` waits for a (re)starting worker. */
export const DEFAULT_START_TIMEOUT_MS = 15_000;

const STOP_REASONS: Record<string, StopReason> = {
  end_turn: "end_turn",
  max_tokens: "max_tokens",
  max_turn_requests: "max_tokens",
  refusal: "content_filter",
  cancelled: "cancelled",
};

interface SessionBinding {
  process: AcpProcess;
  acpSessionId: string;
}

/** Whether an agent actor's snapshot says it is online (its worker's process answered `initialize`). */
function isOnline(agent: AgentActorRef): boolean {
  const { value } = agent.getSnapshot();
  return value === "ready" || value === "busy";
}

/** Runs agents as ACP worker processes. */
export class WorkerExecutor implements Executor {
  readonly kind = "worker";
  readonly sessionsExpire = false;
  private readonly configs = new Map<string, WorkerConfig>();
  /** The current process of each worker, while it has one. */
  private readonly processes = new Map<string, AcpProcess>();
  private readonly sessions = new Map<string, SessionBinding>();
  /** `sessions_create` calls waiting for a worker to be online; each entry fails its wait. */
  private readonly waiting = new Set<(error: BridgeError) => void>();
  private readonly exiting = new Set<Promise<unknown>>();
  /** Sessions whose `openSession` is under way, and those of them closed meanwhile. */
  private readonly opening = new Set<string>();
  private readonly closedWhileOpening = new Set<string>();
  private host: ExecutorHost | undefined;

  constructor(
    configs: WorkerConfig[] = [],
    private readonly options: { killGraceMs?: number; startTimeoutMs?: number } = {},
  ) {
    for (const config of configs) this.add(config);
  }

  /** Adds a worker; returns the input of its agent's actor. A duplicate id is CONFIG. */
  add(config: WorkerConfig): AgentInput {
    if (this.configs.has(config.id)) throw new BridgeError("CONFIG", `workers: duplicate worker id ${config.id}`, { field: "workers" });
    if (!config.command) throw new BridgeError("CONFIG", `workers.${config.id}.command: required`, { field: "command" });
    this.configs.set(config.id, config);
    return this.agentInput(config.id);
  }

  /** The input of a worker's agent actor, which spawns the worker actor with this restart policy. */
  agentInput(workerId: string): AgentInput {
    const { id, restart } = this.config(workerId);
    return { agentId: id, kind: "worker", worker: { workerId: id, ...DEFAULT_RESTART_POLICY, ...restart } };
  }

  attach(host: ExecutorHost): void {
    this.host = host;
  }

  hasAgent(agentId: string): boolean {
    return this.configs.has(agentId);
  }

  describeAgents(): AgentDescription[] {
    return [...this.configs.values()].map((config) => ({
      id: config.id,
      name: config.name ?? config.id,
      description: config.description ?? `ACP worker: ${config.command}`,
      capabilities: config.capabilities ?? [],
    }));
  }

  /**
   * The `workerProcess` of a worker actor: starts the process, reports READY after `initialize` and EXITED
   * when it ends, or SPAWN_FAILED when its command cannot be run; the returned function (run when the actor
   * leaves `running`) ends the process. What the process does is published as `worker.*` events.
   */
  startProcess(workerId: string, generation: number, sendBack: (event: WorkerEvent) => void): () => void {
    const config = this.config(workerId);
    const actorId = workerSystemId(workerId);
    let process: AcpProcess;
    try {
      process = new AcpProcess({
        command: config.command,
        args: config.args ?? [],
        env: config.env ?? {},
        cwd: config.cwd,
        permissions: config.permissions ?? "deny",
        fsRoot: config.fsRoot,
        onStderr: (line) => this.host?.emit("worker.stderr", actorId, { workerId, line }),
      });
    } catch (error) {
      // spawn() throws some errors at once (a cwd that is a file): the same answer as one reported later.
      const failure = describeSpawnFailure(error, config.command, config.cwd);
      queueMicrotask(() => this.reportSpawnFailure(workerId, generation, failure, sendBack));
      return () => undefined;
    }
    this.processes.set(workerId, process);
    if (process.pid !== undefined) this.host?.emit("worker.started", actorId, { workerId, pid: process.pid });
    // A process that never answers `initialize` is ended, so the worker actor restarts it.
    const initializing = setTimeout(() => process.kill(), this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    void process.exited.then(() => clearTimeout(initializing));
    process
      .initialize()
      .then(() => {
        clearTimeout(initializing);
        if (this.processes.get(workerId) !== process || !process.alive) return;
        sendBack({ type: "WORKER.READY", generation });
      })
      .catch(() => process.kill());
    void process.exited.then(({ code, signal, spawnFailure }) => {
      if (this.processes.get(workerId) === process) this.processes.delete(workerId);
      if (spawnFailure !== undefined && spawnFailure.permanent) return this.reportSpawnFailure(workerId, generation, spawnFailure, sendBack);
      const reason = withStderr(spawnFailure?.reason ?? describeExit(code, signal), process.stderr);
      this.host?.emit("worker.exited", actorId, {
        workerId,
        code,
        signal,
        reason,
        stopped: process.terminated,
        stderr: process.stderr,
        ...(spawnFailure === undefined ? {} : { spawnError: spawnFailure.code }),
      });
      // The agent goes offline first: its sessions fail after it, as the work they were running is lost.
      sendBack({ type: "WORKER.EXITED", generation, code, signal, reason });
      this.failSessionsOf(process, workerId, { code, signal, reason, stderr: process.stderr });
    });
    return () => {
      const ended = process.terminate(this.options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
      this.exiting.add(ended);
      void ended.finally(() => this.exiting.delete(ended));
    };
  }

  /** A command that cannot be run: the worker gives up at once (its agent's unavailable reason says why). */
  private reportSpawnFailure(workerId: string, generation: number, failure: SpawnFailure, sendBack: (event: WorkerEvent) => void): void {
    this.host?.emit("worker.exited", workerSystemId(workerId), {
      workerId,
      code: null,
      signal: null,
      reason: failure.reason,
      stopped: false,
      stderr: "",
      spawnError: failure.code,
    });
    sendBack({ type: "WORKER.SPAWN_FAILED", generation, reason: failure.reason });
  }

  async openSession(session: SessionInfo): Promise<void> {
    const { sessionId } = session;
    const config = this.config(session.agentId);
    this.opening.add(sessionId);
    try {
      const process = await this.whenOnline(config.id);
      const acpSessionId = await process.newSession(config.cwd ?? globalThis.process.cwd());
      // Closed (e.g. by shutdown) while this was under way: bind nothing that would never be released.
      if (this.closedWhileOpening.has(sessionId)) throw sessionNotFound(sessionId);
      this.sessions.set(sessionId, { process, acpSessionId });
    } finally {
      this.opening.delete(sessionId);
      this.closedWhileOpening.delete(sessionId);
    }
  }

  async runPrompt(input: RunPromptInput, signal: AbortSignal, emit: PromptEmitter): Promise<PromptReply> {
    const binding = this.sessions.get(input.sessionId);
    if (binding === undefined) throw new BridgeError("TRANSPORT", "Worker session is gone", { sessionValid: false });
    let text = "";
    const response = await binding.process.prompt(binding.acpSessionId, input.request.prompt, signal, (chunk) => {
      text += chunk;
      emit.delta(chunk);
    });
    return { text, stopReason: STOP_REASONS[response.stopReason] ?? "end_turn" };
  }

  /** Cancellation already went out as `session/cancel` when the prompt's signal aborted. */
  promptCancelled(): void {}

  closeSession(session: SessionInfo, _reason: SessionCloseReason): Promise<void> {
    if (this.opening.has(session.sessionId)) this.closedWhileOpening.add(session.sessionId);
    this.sessions.delete(session.sessionId);
    return Promise.resolve();
  }

  /** Waits for every process ended by the runtime's shutdown (SIGTERM, then SIGKILL after the grace). */
  async stop(): Promise<void> {
    this.failWaiting(new BridgeError("CANCELLED", "Runtime stopped", { sessionValid: false }));
    while (this.exiting.size > 0) await Promise.allSettled([...this.exiting]);
  }

  /** Kills every process at once: the runtime failed and cannot stop its worker actors in order. */
  killAll(): void {
    this.failWaiting(new BridgeError("INTERNAL", "Runtime failed", { sessionValid: false }));
    for (const process of this.processes.values()) process.kill();
  }

  private failWaiting(error: BridgeError): void {
    for (const fail of [...this.waiting]) fail(error);
  }

  private config(workerId: string): WorkerConfig {
    const config = this.configs.get(workerId);
    if (config === undefined) throw new BridgeError("NOT_FOUND", `Agent not found: ${workerId}`, { agentId: workerId });
    return config;
  }

  /** The worker's process once its agent actor is online (waiting up to `startTimeoutMs` while it starts). */
  private whenOnline(workerId: string): Promise<AcpProcess> {
    const agent = this.host?.agentActor(workerId);
    // Its actor is gone only once the runtime is stopping (sessions are never opened before it runs).
    if (agent === undefined) return Promise.reject(new BridgeError("CANCELLED", "Runtime stopped", { sessionValid: false }));
    const ready = (): AcpProcess | undefined => {
      const process = this.processes.get(workerId);
      // Online with a process that is already gone: its exit is on its way to the actor; wait for the next one.
      return isOnline(agent) && process?.alive ? process : undefined;
    };
    const unavailable = (reason?: string): BridgeError =>
      new BridgeError("TRANSPORT", `Worker ${workerId} is unavailable${reason === undefined ? "" : `: ${reason}`}`, {
        sessionValid: false,
        retryable: false,
        workerId,
      });
    const process = ready();
    if (process !== undefined) return Promise.resolve(process);
    const { value, context } = agent.getSnapshot();
    if (value === "unavailable") return Promise.reject(unavailable(context.unavailableReason ?? undefined));
    const timeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    return new Promise<AcpProcess>((resolve, reject) => {
      const settle = (): void => {
        clearTimeout(timer);
        subscription.unsubscribe();
        this.waiting.delete(fail);
      };
      const fail = (error: BridgeError): void => {
        settle();
        reject(error);
      };
      const timer = setTimeout(
        () => fail(new BridgeError("TIMEOUT", `Worker ${workerId} did not start within ${timeoutMs} ms`, { sessionValid: false })),
        timeoutMs,
      );
      const subscription = agent.subscribe((snapshot) => {
        const online = ready();
        if (online !== undefined) {
          settle();
          resolve(online);
        } else if (snapshot.value === "unavailable") {
          fail(unavailable(snapshot.context.unavailableReason ?? undefined));
        }
      });
      this.waiting.add(fail);
    });
  }

  private failSessionsOf(process: AcpProcess, workerId: string, exit: { code: number | null; signal: string | null; reason: string; stderr: string }): void {
    const error = new BridgeError("TRANSPORT", `Worker ${workerId} ${exit.reason}`, {
      sessionValid: false,
      workerId,
      code: exit.code,
      signal: exit.signal,
      ...(exit.stderr === "" ? {} : { stderr: exit.stderr }),
    });
    for (const [sessionId, binding] of this.sessions) {
      if (binding.process === process) this.host?.failSession(sessionId, error);
    }
  }
}
