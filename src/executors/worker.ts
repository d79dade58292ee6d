/**
 * `WorkerExecutor`: agents that run as separate processes speaking the Agent Client Protocol (SPEC §2.5).
 *
 * Each worker's process lives under a worker actor (`machines/worker.machine.ts`), which restarts it with
 * backoff; this executor provides that actor's `workerProcess`, maps bridge sessions onto ACP sessions, and
 * fails every session of a process that exits. Worker sessions never expire.
 */
import type { PromptReply, RunPromptInput, SessionCloseReason, SessionInfo } from "../../machines/session.machine.js";
import type { WorkerEvent, WorkerInput, WorkerRestartPolicy } from "../../machines/worker.machine.js";
import { BridgeError, sessionNotFound } from "../errors.js";
import { AcpProcess, type PermissionPolicy } from "./acp-process.js";
import type { AgentDescriptor, Executor, ExecutorHost, PromptEmitter } from "./executor.js";
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

interface WorkerSlot {
  config: WorkerConfig;
  process: AcpProcess | undefined;
  generation: number;
  ready: boolean;
  unavailable: boolean;
  inFlight: number;
  /** Waiters for the next ready process. */
  waiters: Array<{ resolve(): void; reject(error: BridgeError): void }>;
}

interface SessionBinding {
  workerId: string;
  generation: number;
  process: AcpProcess;
  acpSessionId: string;
}

/** Runs agents as ACP worker processes. */
export class WorkerExecutor implements Executor {
  readonly kind = "worker";
  readonly sessionsExpire = false;
  private readonly workers = new Map<string, WorkerSlot>();
  private readonly sessions = new Map<string, SessionBinding>();
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

  /** Adds a worker; returns the input of its actor. A duplicate id is CONFIG. */
  add(config: WorkerConfig): WorkerInput {
    if (this.workers.has(config.id)) throw new BridgeError("CONFIG", `workers: duplicate worker id ${config.id}`, { field: "workers" });
    if (!config.command) throw new BridgeError("CONFIG", `workers.${config.id}.command: required`, { field: "command" });
    this.workers.set(config.id, { config, process: undefined, generation: 0, ready: false, unavailable: false, inFlight: 0, waiters: [] });
    return { workerId: config.id, ...DEFAULT_RESTART_POLICY, ...config.restart };
  }

  /** The inputs of every worker's actor. */
  actorInputs(): WorkerInput[] {
    return [...this.workers.values()].map(({ config }) => ({ workerId: config.id, ...DEFAULT_RESTART_POLICY, ...config.restart }));
  }

  attach(host: ExecutorHost): void {
    this.host = host;
  }

  hasAgent(agentId: string): boolean {
    return this.workers.has(agentId);
  }

  describeAgents(): AgentDescriptor[] {
    return [...this.workers.values()].map((slot) => ({
      id: slot.config.id,
      name: slot.config.name ?? slot.config.id,
      description: slot.config.description ?? `ACP worker: ${slot.config.command}`,
      capabilities: slot.config.capabilities ?? [],
      status: !slot.ready ? "unavailable" : slot.inFlight > 0 ? "busy" : "ready",
    }));
  }

  /**
   * The `workerProcess` of a worker actor: starts the process, reports READY after `initialize` and EXITED
   * when it ends; the returned function (run when the actor leaves `running`) ends the process.
   */
  startProcess(workerId: string, generation: number, sendBack: (event: WorkerEvent) => void): () => void {
    const slot = this.slot(workerId);
    const { config } = slot;
    const process = new AcpProcess({
      command: config.command,
      args: config.args ?? [],
      env: config.env ?? {},
      cwd: config.cwd,
      permissions: config.permissions ?? "deny",
      fsRoot: config.fsRoot,
    });
    slot.process = process;
    slot.generation = generation;
    slot.ready = false;
    slot.unavailable = false;
    // A process that never answers `initialize` is ended, so the worker actor restarts it.
    const initializing = setTimeout(() => process.kill(), this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
    void process.exited.then(() => clearTimeout(initializing));
    process
      .initialize()
      .then(() => {
        clearTimeout(initializing);
        if (slot.process !== process || !process.alive) return;
        slot.ready = true;
        sendBack({ type: "WORKER.READY", generation });
        for (const waiter of slot.waiters.splice(0)) waiter.resolve();
      })
      .catch(() => process.kill());
    void process.exited.then(({ code, signal }) => {
      if (slot.process === process) {
        slot.process = undefined;
        slot.ready = false;
      }
      this.failSessionsOf(process, workerId, code, signal);
      sendBack({ type: "WORKER.EXITED", generation, code, signal });
    });
    return () => {
      const ended = process.terminate(this.options.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
      this.exiting.add(ended);
      void ended.finally(() => this.exiting.delete(ended));
    };
  }

  /** Told by the runtime when a worker's actor gives up on it. */
  markUnavailable(workerId: string, crashes: number): void {
    const slot = this.slot(workerId);
    slot.unavailable = true;
    const error = new BridgeError("TRANSPORT", `Worker ${workerId} is unavailable: it crashed ${crashes} times in a row`, {
      sessionValid: false,
      retryable: false,
      workerId,
    });
    for (const waiter of slot.waiters.splice(0)) waiter.reject(error);
  }

  async openSession(session: SessionInfo): Promise<void> {
    const { sessionId } = session;
    const slot = this.slot(session.agentId);
    this.opening.add(sessionId);
    try {
      await this.whenReady(slot);
      const process = slot.process!;
      const acpSessionId = await process.newSession(slot.config.cwd ?? globalThis.process.cwd());
      // Closed (e.g. by shutdown) while this was under way: bind nothing that would never be released.
      if (this.closedWhileOpening.has(sessionId)) throw sessionNotFound(sessionId);
      this.sessions.set(sessionId, { workerId: slot.config.id, generation: slot.generation, process, acpSessionId });
    } finally {
      this.opening.delete(sessionId);
      this.closedWhileOpening.delete(sessionId);
    }
  }

  async runPrompt(input: RunPromptInput, signal: AbortSignal, emit: PromptEmitter): Promise<PromptReply> {
    const binding = this.sessions.get(input.sessionId);
    if (binding === undefined) throw new BridgeError("TRANSPORT", "Worker session is gone", { sessionValid: false });
    const slot = this.slot(binding.workerId);
    let text = "";
    // The worker stops being busy with this prompt when it answers or when the prompt is cancelled,
    // whichever comes first (a cancelled turn may take a moment to be acknowledged).
    let counted = true;
    const release = (): void => {
      if (counted) slot.inFlight -= 1;
      counted = false;
    };
    slot.inFlight += 1;
    signal.addEventListener("abort", release, { once: true });
    try {
      const response = await binding.process.prompt(binding.acpSessionId, input.request.prompt, signal, (chunk) => {
        text += chunk;
        emit.delta(chunk);
      });
      return { text, stopReason: STOP_REASONS[response.stopReason] ?? "end_turn" };
    } finally {
      signal.removeEventListener("abort", release);
      release();
    }
  }

  /** Cancellation already went out as `session/cancel` when the prompt's signal aborted. */
  promptCancelled(): void {}

  async closeSession(session: SessionInfo, _reason: SessionCloseReason): Promise<void> {
    if (this.opening.has(session.sessionId)) this.closedWhileOpening.add(session.sessionId);
    this.sessions.delete(session.sessionId);
  }

  /** Waits for every process ended by the runtime's shutdown (SIGTERM, then SIGKILL after the grace). */
  async stop(): Promise<void> {
    this.rejectWaiters(new BridgeError("CANCELLED", "Runtime stopped", { sessionValid: false }));
    while (this.exiting.size > 0) await Promise.allSettled([...this.exiting]);
  }

  /** Kills every process at once: the runtime failed and cannot stop its worker actors in order. */
  killAll(): void {
    this.rejectWaiters(new BridgeError("INTERNAL", "Runtime failed", { sessionValid: false }));
    for (const slot of this.workers.values()) slot.process?.kill();
  }

  private rejectWaiters(error: BridgeError): void {
    for (const slot of this.workers.values()) for (const waiter of slot.waiters.splice(0)) waiter.reject(error);
  }

  private slot(workerId: string): WorkerSlot {
    const slot = this.workers.get(workerId);
    if (slot === undefined) throw new BridgeError("NOT_FOUND", `Agent not found: ${workerId}`, { agentId: workerId });
    return slot;
  }

  private whenReady(slot: WorkerSlot): Promise<void> {
    if (slot.ready && slot.process?.alive) return Promise.resolve();
    if (slot.unavailable) {
      return Promise.reject(
        new BridgeError("TRANSPORT", `Worker ${slot.config.id} is unavailable`, { sessionValid: false, retryable: false }),
      );
    }
    const timeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.waiters = slot.waiters.filter((candidate) => candidate !== waiter);
        reject(new BridgeError("TIMEOUT", `Worker ${slot.config.id} did not start within ${timeoutMs} ms`, { sessionValid: false }));
      }, timeoutMs);
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error: BridgeError) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      slot.waiters.push(waiter);
    });
  }

  private failSessionsOf(process: AcpProcess, workerId: string, code: number | null, signal: string | null): void {
    const error = new BridgeError("TRANSPORT", `Worker ${workerId} exited (code ${code}, signal ${signal})`, {
      sessionValid: false,
      workerId,
    });
    for (const [sessionId, binding] of this.sessions) {
      if (binding.process === process) this.host?.failSession(sessionId, error);
    }
  }
}
