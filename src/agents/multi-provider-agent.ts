/**
 * `MultiProviderCompanionAgent`: the built-in agent that answers with a registered provider, one provider
 * per session, chosen by `metadata.provider` at `sessions_create` (SPEC §2.4).
 */
import type { SessionInfo } from "../../machines/session.machine.js";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import { mergeRuntimeParams, parseRuntimeParams, runtimeParamsSchema, type RuntimeParams } from "../providers/params.js";
import type { Provider } from "../providers/provider.js";
import { ProviderRegistry } from "../providers/registry.js";
import type { Tool } from "../tools/tool.js";
import { parseWith } from "../validation.js";
import type { Agent, AgentReply, ConversationSettings, PromptContext, ProviderInfo } from "./agent.js";
import { checkMaxToolRounds, runToolLoop } from "../tools/tool-loop.js";
import { ToolRegistry } from "../tools/tool-registry.js";

/** Configuration of a `MultiProviderCompanionAgent`. */
export interface MultiProviderAgentConfig {
  id: string;
  name?: string;
  description?: string;
  capabilities?: string[];
  /** The providers sessions can bind to. */
  registry: ProviderRegistry;
  /** The provider of sessions created without `metadata.provider`; default: the first registered. */
  defaultProviderId?: string;
  /**
   * The agent's system prompt: above the providers' `defaults`, under session and prompt `runtimeParams`
   * (an agent is more specific than a provider that several agents share).
   */
  systemPrompt?: string;
  /** The model of this agent's sessions (agent.yaml `model`): above the providers' defaults, like `systemPrompt`. */
  model?: string;
  /**
   * Tools its model may call (SPEC §4), sent in each provider's native format; the loop runs behind every
   * bridge tool. Two of one name are CONFIG.
   */
  tools?: Tool[];
  /**
   * Most rounds of tool calls in one prompt before the model must answer: after them, one last call in
   * which it may call no tool (docs/tools.md). A positive integer; default 8.
   */
  maxToolRounds?: number;
  /** Times tool calls (`tool.completed`'s `durationMs`). Default: the system clock. */
  clock?: Clock;
  /** How conversations use this agent (agent.yaml `session:`). */
  conversation?: ConversationSettings;
  /** The agents merged into this one (agent.yaml `routing: inline`), see `Agent.inlined`. */
  inlined?: readonly string[];
}

/** `createMultiProviderAgent`'s configuration: providers given as a list instead of a registry. */
export interface MultiProviderAgentOptions extends Omit<MultiProviderAgentConfig, "registry"> {
  providers: Provider[];
}

function providerIdOf(session: SessionInfo): string | undefined {
  const { provider } = session.metadata;
  return typeof provider === "string" ? provider : undefined;
}

/** An agent whose sessions each answer with one provider of its registry, for their whole life. */
export class MultiProviderCompanionAgent implements Agent {
  readonly id: string;
  readonly name: string;
  readonly description: string;
  readonly capabilities: string[];
  readonly defaultProviderId: string;
  /** How conversations use this agent (agent.yaml `session:`). */
  readonly conversation?: ConversationSettings;
  /** The agents merged into this one (agent.yaml `routing: inline`). */
  readonly inlined?: readonly string[];
  private readonly registry: ProviderRegistry;
  private readonly agentParams: RuntimeParams;
  private readonly tools: ToolRegistry;
  private readonly maxToolRounds: number;
  private readonly clock: Clock;
  /** The provider each open session is bound to. */
  private readonly bindings = new Map<string, Provider>();

  constructor(config: MultiProviderAgentConfig) {
    this.id = config.id;
    this.name = config.name ?? config.id;
    this.description = config.description ?? "Answers with one of several AI providers, chosen per session";
    this.capabilities = config.capabilities ?? [];
    if (config.conversation !== undefined) this.conversation = config.conversation;
    if (config.inlined !== undefined && config.inlined.length > 0) this.inlined = [...config.inlined];
    this.registry = config.registry;
    this.tools = new ToolRegistry(config.tools);
    this.maxToolRounds = checkMaxToolRounds(config.maxToolRounds);
    this.clock = config.clock ?? systemClock;
    const defaultProviderId = config.defaultProviderId ?? config.registry.ids()[0];
    if (defaultProviderId === undefined) {
      throw new BridgeError("CONFIG", `providers: agent ${config.id} needs at least one provider`, { field: "providers" });
    }
    if (!config.registry.has(defaultProviderId)) {
      throw new BridgeError("CONFIG", `defaultProviderId: no provider ${defaultProviderId} is registered (${this.registeredList()})`, {
        field: "defaultProviderId",
      });
    }
    this.defaultProviderId = defaultProviderId;
    // Checked under the config's own names (`model: …`), as the agent's layer of RuntimeParams.
    this.agentParams = parseWith(
      runtimeParamsSchema,
      {
        ...(config.systemPrompt === undefined ? {} : { systemPrompt: config.systemPrompt }),
        ...(config.model === undefined ? {} : { model: config.model }),
      },
      { root: "(agent)", details: { agentId: config.id } },
    );
  }

  /** The registry's providers, read at each `agents_discover`. */
  get providers(): ProviderInfo[] {
    return this.registry.list();
  }

  /**
   * Binds the session to its provider, and checks its `metadata.runtimeParams` against that provider: an
   * unregistered provider or a value it refuses fails `sessions_create` with CONFIG.
   */
  onSessionOpen(session: SessionInfo): void {
    const provider = this.providerFor(session);
    const { runtimeParams } = session.metadata;
    const sessionParams = runtimeParams === undefined ? undefined : parseRuntimeParams(runtimeParams, "metadata.runtimeParams");
    provider.resolveParams(mergeRuntimeParams(this.agentParams, sessionParams), "metadata.runtimeParams");
    this.bindings.set(session.sessionId, provider);
  }

  /** Answers with the session's provider, running the tools its model calls (`runToolLoop`). */
  prompt(ctx: PromptContext): Promise<AgentReply> {
    const provider = this.bindings.get(ctx.session.sessionId) ?? this.providerFor(ctx.session);
    return runToolLoop(
      { ...ctx, runtimeParams: mergeRuntimeParams(this.agentParams, ctx.runtimeParams) },
      { complete: (callCtx, tools) => provider.complete(callCtx, tools), tools: this.tools, maxToolRounds: this.maxToolRounds, clock: this.clock },
    );
  }

  /** Forgets the session's binding. */
  onSessionClose(session: SessionInfo): void {
    this.bindings.delete(session.sessionId);
  }

  /** The provider a session names, or the default; an unregistered one is CONFIG. */
  private providerFor(session: SessionInfo): Provider {
    const providerId = providerIdOf(session) ?? this.defaultProviderId;
    const provider = this.registry.get(providerId);
    if (provider === undefined) {
      throw new BridgeError("CONFIG", `metadata.provider: no provider ${providerId} is registered with agent ${this.id} (${this.registeredList()})`, {
        field: "metadata.provider",
        provider: providerId,
      });
    }
    return provider;
  }

  private registeredList(): string {
    const ids = this.registry.ids();
    return ids.length === 0 ? "none registered" : `registered: ${ids.join(", ")}`;
  }
}

/** A `MultiProviderCompanionAgent` over a registry of these providers. */
export function createMultiProviderAgent(options: MultiProviderAgentOptions): MultiProviderCompanionAgent {
  const { providers, ...config } = options;
  return new MultiProviderCompanionAgent({ ...config, registry: new ProviderRegistry(providers) });
}
