/**
 * `InProcessExecutor`: agents that run in this process. Its sessions expire (SPEC §2.2).
 */
import type { PromptReply, RunPromptInput, SessionCloseReason, SessionInfo } from "../../machines/session.machine.js";
import type { Agent } from "../agents/agent.js";
import { BridgeError } from "../errors.js";
import { mergeRuntimeParams, runtimeParamsSchema, type RuntimeParams } from "../providers/params.js";
import type { AgentDescription, Executor, ExecutorHost, PromptEmitter } from "./executor.js";

function sessionRuntimeParams(session: SessionInfo): RuntimeParams | undefined {
  const { runtimeParams } = session.metadata;
  // Most sessions set none: a failed parse builds an error (with its stack) on every prompt.
  if (runtimeParams === undefined) return undefined;
  const parsed = runtimeParamsSchema.safeParse(runtimeParams);
  return parsed.success ? parsed.data : undefined;
}

/** Runs `Agent` objects in this process. */
export class InProcessExecutor implements Executor {
  readonly kind = "in-process";
  readonly sessionsExpire = true;
  private readonly agents = new Map<string, Agent>();
  private host: ExecutorHost | undefined;

  constructor(agents: Agent[] = []) {
    for (const agent of agents) this.register(agent);
  }

  /** Adds an agent; an id already registered is CONFIG. */
  register(agent: Agent): void {
    if (this.agents.has(agent.id)) throw new BridgeError("CONFIG", `agents: duplicate agent id ${agent.id}`, { field: "agents" });
    this.agents.set(agent.id, agent);
  }

  attach(host: ExecutorHost): void {
    this.host = host;
  }

  hasAgent(agentId: string): boolean {
    return this.agents.has(agentId);
  }

  describeAgents(): AgentDescription[] {
    return [...this.agents.values()].map((agent) => ({
      id: agent.id,
      name: agent.name ?? agent.id,
      description: agent.description ?? "",
      capabilities: agent.capabilities ?? [],
      ...(agent.providers ? { providers: agent.providers } : {}),
      ...(agent.defaultProviderId ? { defaultProvider: agent.defaultProviderId } : {}),
    }));
  }

  async openSession(session: SessionInfo): Promise<void> {
    await this.agentOf(session).onSessionOpen?.(session);
  }

  /** A restored session is opened again in this process: its agent's `onSessionOpen` runs as for a new one. */
  async reopenSession(session: SessionInfo): Promise<void> {
    await this.openSession(session);
  }

  async runPrompt(input: RunPromptInput, signal: AbortSignal, emit: PromptEmitter): Promise<PromptReply> {
    const { request, history, ...session } = input;
    const agent = this.agentOf(session);
    const reply = await agent.prompt({
      session,
      prompt: request.prompt,
      requestId: request.requestId,
      runtimeParams: mergeRuntimeParams(sessionRuntimeParams(session), request.runtimeParams),
      history,
      signal,
      emit: emit.delta,
      warn: emit.warning,
      reportTool: emit.tool,
      ask: (agentId, message, options = {}) => {
        if (this.host === undefined) return Promise.reject(new BridgeError("CONFIG", "ctx.ask needs a runtime attached to a CommunicationBus"));
        return this.host.ask({
          from: agent.id,
          sessionId: session.sessionId,
          requestId: request.requestId,
          agentId,
          message,
          ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
          signal,
        });
      },
    });
    return { text: reply.text, stopReason: reply.stopReason ?? "end_turn", ...(reply.usage ? { usage: reply.usage } : {}) };
  }

  promptCancelled(session: SessionInfo, requestId: string): void {
    this.agentOf(session).onCancel?.({ session, requestId });
  }

  async closeSession(session: SessionInfo, reason: SessionCloseReason): Promise<void> {
    await this.agentOf(session).onSessionClose?.(session, reason);
  }

  private agentOf(session: SessionInfo): Agent {
    const agent = this.agents.get(session.agentId);
    if (agent === undefined) throw new BridgeError("NOT_FOUND", `Agent not found: ${session.agentId}`, { agentId: session.agentId });
    return agent;
  }
}
