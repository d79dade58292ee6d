/**
 * `A2aExecutor`: remote A2A agents as agents of the runtime (`createRuntime({ a2aAgents })`, docs/a2a.md).
 *
 * Each is an agent actor of kind `a2a` under the supervisor, offline until its agent card was fetched (at
 * `runtime.start()`, or again at the next session when it was not reached), and offline again when it cannot
 * be reached. A bridge session is an A2A context: its first prompt opens one, the agent's `contextId` carries
 * the later ones; a prompt is a streamed message (its artifacts' text are the deltas), cancelling it cancels
 * the task (`tasks/cancel`); a task that waits for input answers with the stop reason `input_required`, and the
 * session's next prompt goes into that task. Sessions expire as in-process ones do: the remote agent holds
 * nothing troupe must release.
 *
 * The SDK itself is loaded with the first agent reached (./remote-agent.ts).
 */
import type { AgentInput } from "../../machines/agent.machine.js";
import type { PromptReply, RunPromptInput, SessionCloseReason, SessionInfo } from "../../machines/session.machine.js";
import { BridgeError, sessionNotFound, toBridgeError } from "../errors.js";
import type { AgentDescription, Executor, ExecutorHost, PromptEmitter } from "../executors/executor.js";
import { parseA2aAgents, type A2aAgentConfig } from "./config.js";
import type { ContextBinding, RemoteA2aAgent } from "./remote-agent.js";

/** How long fetching an agent card may take. */
export const CARD_TIMEOUT_MS = 10_000;

/** One remote agent: its configuration, and its connection once its card was fetched. */
interface RemoteSlot {
  config: A2aAgentConfig;
  remote: RemoteA2aAgent | undefined;
  /** Whether the last call reached it; a new session fetches its card again while it is not. */
  reached: boolean;
  connecting: Promise<RemoteA2aAgent> | undefined;
}

/** Runs remote A2A agents. */
export class A2aExecutor implements Executor {
  readonly kind = "a2a";
  readonly sessionsExpire = true;
  private readonly slots = new Map<string, RemoteSlot>();
  private readonly bindings = new Map<string, ContextBinding>();
  private host: ExecutorHost | undefined;

  constructor(configs: A2aAgentConfig[]) {
    for (const config of parseA2aAgents(configs)) this.slots.set(config.id, { config, remote: undefined, reached: false, connecting: undefined });
  }

  attach(host: ExecutorHost): void {
    this.host = host;
  }

  hasAgent(agentId: string): boolean {
    return this.slots.has(agentId);
  }

  describeAgents(): AgentDescription[] {
    return [...this.slots.values()].map(({ config, remote }) => ({
      id: config.id,
      name: remote?.card.name || config.id,
      description: remote?.card.description || `A2A agent at ${config.url}`,
      capabilities: remote?.capabilities ?? [],
      a2a: { url: config.url, ...(remote === undefined ? {} : { card: remote.cardJson }) },
    }));
  }

  agentInput(agentId: string): AgentInput {
    return { agentId, kind: "a2a" };
  }

  /** Fetches every card; an agent that cannot be reached stays offline (a warning says why) until a session reaches it. */
  async start(): Promise<void> {
    await Promise.all(
      [...this.slots.values()].map((slot) =>
        this.connected(slot).catch((error: unknown) =>
          process.emitWarning(`troupe: A2A agent ${slot.config.id} is offline: ${toBridgeError(error).message}`, { code: "TROUPE_A2A" }),
        ),
      ),
    );
  }

  /** Reaches the agent (its card again, when the last call did not reach it): a session cannot open on an agent that refuses or is gone. */
  async openSession(session: SessionInfo): Promise<void> {
    await this.connected(this.slotOf(session.agentId));
    this.bindings.set(session.sessionId, {});
  }

  async runPrompt(input: RunPromptInput, signal: AbortSignal, emit: PromptEmitter): Promise<PromptReply> {
    const slot = this.slotOf(input.agentId);
    const binding = this.bindings.get(input.sessionId);
    if (binding === undefined) throw sessionNotFound(input.sessionId);
    const remote = await this.connected(slot);
    try {
      const reply = await remote.prompt(input.request.prompt, binding, signal, emit.delta);
      this.setReached(slot, true);
      return reply;
    } catch (error) {
      const failure = toBridgeError(error, "UPSTREAM");
      if (failure.type === "TRANSPORT") this.setReached(slot, false);
      throw failure;
    }
  }

  /** The task was cancelled with the prompt's signal (`tasks/cancel`). */
  promptCancelled(): void {}

  /** A task left waiting for input is cancelled: nobody will answer it. */
  async closeSession(session: SessionInfo, _reason: SessionCloseReason): Promise<void> {
    const binding = this.bindings.get(session.sessionId);
    this.bindings.delete(session.sessionId);
    const remote = this.slots.get(session.agentId)?.remote;
    if (binding?.inputTaskId !== undefined && remote !== undefined) await remote.cancel(binding.inputTaskId);
  }

  private slotOf(agentId: string): RemoteSlot {
    const slot = this.slots.get(agentId);
    if (slot === undefined) throw new BridgeError("NOT_FOUND", `Agent not found: ${agentId}`, { agentId });
    return slot;
  }

  /** The agent's connection; its card is fetched (once for concurrent callers) when it has none or was not reached last. */
  private connected(slot: RemoteSlot): Promise<RemoteA2aAgent> {
    if (slot.remote !== undefined && slot.reached) return Promise.resolve(slot.remote);
    slot.connecting ??= (async () => {
      const { RemoteA2aAgent } = await import("./remote-agent.js");
      return RemoteA2aAgent.connect(slot.config, CARD_TIMEOUT_MS);
    })()
      .then(
        (remote) => {
          slot.remote = remote;
          this.setReached(slot, true);
          return remote;
        },
        (error: unknown) => {
          this.setReached(slot, false);
          throw toBridgeError(error, "TRANSPORT");
        },
      )
      .finally(() => {
        slot.connecting = undefined;
      });
    return slot.connecting;
  }

  /** Tells the agent's actor whether it can be reached. */
  private setReached(slot: RemoteSlot, reached: boolean): void {
    slot.reached = reached;
    this.host?.agentActor(slot.config.id)?.send({ type: reached ? "AGENT.ONLINE" : "AGENT.OFFLINE" });
  }
}
