/**
 * The agents the bus knows: the runtime's own agents (`troupe://<id>`), registered descriptors, and whether each
 * is online and when it last answered a ping. The participants of workflow sessions count as registered
 * (SPEC §3.1). Each agent's `status` is its actor's state (SPEC §3.6).
 *
 * Registrations and the hashes of agent tokens are kept in the store (`agents/<agent_id>`), written when they
 * change and read back by `restore()` after a restart; presence is not (every agent starts offline).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { AgentState } from "../../machines/agent.machine.js";
import { agentIdSchema, frameworkOf } from "../protocol/envelope.js";
import { RUNTIME_FRAMEWORK, type RuntimeBusAgent } from "../runtime/bus-agents.js";
import type { Store } from "../store/store.js";
import { parseWith } from "../validation.js";

/** A capability as the seed project's adapters describe it: a name, and whatever else they say about it. */
export type CapabilityDetail = { name: string } & Record<string, unknown>;

/** What an agent says about itself when it registers. The optional fields are the seed project's (SPEC §3.9). */
export interface AgentDescriptor {
  agent_id: string;
  framework: string;
  /** Capability names: the strings given, or the `name` of each capability given as an object. */
  capabilities: string[];
  /** Free-form; `acks: false` asks for at-most-once delivery (the agent never sends `ack` frames). */
  metadata: Record<string, unknown>;
  /** Every capability as given, strings as `{ name }`; present when any was given as an object. */
  capability_details?: CapabilityDetail[];
  endpoints?: Record<string, unknown> | unknown[];
  health_check_url?: string;
  status_endpoint?: string;
  /** The adapter's declared authentication, every value but `type` redacted (troupe authenticates with its own key). */
  authentication?: string | Record<string, unknown>;
}

/** An agent as `GET /agents` lists it. Times are epoch milliseconds. */
export interface AgentListing extends AgentDescriptor {
  online: boolean;
  last_heartbeat: number | null;
  registered_at: number | null;
  /**
   * One of the `runtime`'s own agents, `registered` through `POST /agents/register`, or known as a
   * `participant` of a workflow session only.
   */
  source: "runtime" | "registered" | "participant";
  /** Its actor's state; a participant that never registered has no actor: `ready` while connected, else `offline`. */
  status: AgentState;
  /** On a cluster node (`GET /agents`): the node its socket is on (the runtime's agents: the node asked), null when offline. */
  node?: string | null;
  /** On a cluster node (`GET /agents`): when its socket connected to that node (epoch ms, that node's clock), null when offline. */
  connected_at?: number | null;
}

/** What replaces a credential the seed project's `authentication` block carries. */
const REDACTED = "[REDACTED]";

const capabilityName = z.string().min(1).max(256);
const url = z.string().min(1).max(2_048);

const descriptorSchema = z.strictObject({
  agent_id: agentIdSchema,
  /** The agent's own token, when it chooses it; otherwise the bus makes one. Never listed. */
  agent_token: z
    .string()
    .min(16)
    .max(256)
    .regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces")
    .optional(),
  framework: z.string().min(1).max(256).optional(),
  capabilities: z
    .array(z.union([capabilityName, z.looseObject({ name: capabilityName })]))
    .max(256)
    .default([]),
  metadata: z.looseObject({ acks: z.boolean().optional() }).default({}),
  endpoints: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown()).max(256)]).optional(),
});

/** What the seed project's adapters send beside the descriptor (or in it, for a bare one). */
const seedFields = {
  health_check_url: url.optional(),
  status_endpoint: url.optional(),
  authentication: z.union([z.string().max(256), z.record(z.string(), z.unknown())]).optional(),
};

const bareSchema = descriptorSchema.extend(seedFields);
const wrappedSchema = z.strictObject({ agent_descriptor: descriptorSchema, ...seedFields });

/**
 * Validates a registration body, `{ agent_descriptor: {...} }` or the bare descriptor; the framework defaults
 * to the id's prefix. The seed project's body (capabilities as objects, `endpoints`, `health_check_url`,
 * `status_endpoint`, `authentication`) is accepted and kept.
 */
export function parseRegistration(body: unknown): { descriptor: AgentDescriptor; agentToken: string | undefined } {
  const wrapped = typeof body === "object" && body !== null && "agent_descriptor" in body;
  const parsed = wrapped ? parseWith(wrappedSchema, body) : parseWith(bareSchema, body);
  const descriptor = "agent_descriptor" in parsed ? parsed.agent_descriptor : parsed;
  const { health_check_url, status_endpoint, authentication } = parsed;
  const { agent_id, capabilities, metadata, endpoints, agent_token } = descriptor;
  const details = capabilities.map((capability): CapabilityDetail => (typeof capability === "string" ? { name: capability } : capability));
  return {
    agentToken: agent_token,
    descriptor: {
      agent_id,
      framework: descriptor.framework ?? frameworkOf(agent_id),
      capabilities: details.map((capability) => capability.name),
      metadata,
      ...(capabilities.some((capability) => typeof capability !== "string") ? { capability_details: details } : {}),
      ...(endpoints === undefined ? {} : { endpoints }),
      ...(health_check_url === undefined ? {} : { health_check_url }),
      ...(status_endpoint === undefined ? {} : { status_endpoint }),
      ...(authentication === undefined ? {} : { authentication: redactedAuthentication(authentication) }),
    },
  };
}

/** A scheme name is kept as it is; in an object only `type` is: the rest may be credentials. */
function redactedAuthentication(authentication: string | Record<string, unknown>): string | Record<string, unknown> {
  if (typeof authentication === "string") return authentication;
  return Object.fromEntries(Object.entries(authentication).map(([key, value]) => [key, key === "type" ? value : REDACTED]));
}

function hashToken(token: string): Buffer {
  return createHash("sha256").update(token, "utf8").digest();
}

/** Participants of workflow sessions, as the registry needs to see them. */
export interface ParticipantDirectory {
  hasParticipant(agentId: string): boolean;
  participantAgents(): Array<{ agent_id: string; framework: string }>;
}

/** The runtime's agent actors, as the registry needs to see them. */
export interface AgentDirectory {
  /** The runtime agent a bus agent id names, if any. */
  agentIdOfBusAgent(busAgentId: string): string | undefined;
  /** The runtime's own agents as bus agents. */
  busAgents(): RuntimeBusAgent[];
  /** The state of an agent's actor (a remote agent's by its bus id); undefined without one. */
  agentState(agentId: string): AgentState | undefined;
}

interface Presence {
  online: boolean;
  lastHeartbeat: number | null;
}

/** A registration as the store keeps it: the token only as its SHA-256 (hex), never the token. */
export interface StoredRegistration {
  descriptor: AgentDescriptor;
  registeredAt: number;
  tokenSha256: string | null;
}

/** Registered agents and their presence. */
export class AgentRegistry {
  private readonly registered = new Map<string, { descriptor: AgentDescriptor; registeredAt: number }>();
  private readonly presence = new Map<string, Presence>();
  /** Each registered agent's token, hashed (`agentAuth: "token"`). */
  private readonly tokens = new Map<string, Buffer>();
  /** Agents whose presence is online: `onlineCount` without a scan. */
  private connected = 0;

  constructor(
    private readonly participants: ParticipantDirectory,
    private readonly agents: AgentDirectory,
    /** The runtime's store (open once the runtime has started). */
    private readonly store: () => Store,
  ) {}

  /** Registers (or re-registers) an agent; the store gets it (durable at its next flush). */
  register(descriptor: AgentDescriptor, at: number): AgentDescriptor {
    this.registered.set(descriptor.agent_id, { descriptor, registeredAt: at });
    this.persist(descriptor.agent_id);
    return descriptor;
  }

  /** Forgets a registration, here and in the store; false when the agent was not registered. */
  deregister(agentId: string): boolean {
    this.tokens.delete(agentId);
    if (!this.registered.delete(agentId)) return false;
    this.store().delete("agents", agentId);
    return true;
  }

  /** Sets a registered agent's token (kept hashed, here and in the store). */
  setToken(agentId: string, token: string): void {
    this.tokens.set(agentId, hashToken(token));
    this.persist(agentId);
  }

  /**
   * Reads the registrations back from the store (after a restart), oldest first; each agent starts offline
   * with the token it had. Returns the descriptors, for the bus to give each its actor.
   */
  async restore(): Promise<AgentDescriptor[]> {
    const records = await this.readAllStored();
    return records.map((record) => this.applyStored(record.descriptor.agent_id, record) as AgentDescriptor);
  }

  /**
   * Reads one registration from the store, for a cluster node (docs/cluster.md): the agent may have registered,
   * re-registered or deregistered on another node. `applyStored` makes it this node's.
   */
  async readStored(agentId: string): Promise<StoredRegistration | undefined> {
    const record = (await this.store().get("agents", agentId)) as StoredRegistration | null | undefined;
    return record ?? undefined;
  }

  /** Reads every registration from the store, oldest first (as they are listed). */
  async readAllStored(): Promise<StoredRegistration[]> {
    const records = (await this.store().list("agents")).map(({ value }) => value as StoredRegistration);
    return records.sort((left, right) => left.registeredAt - right.registeredAt);
  }

  /** The agents registered through `POST /agents/register` (here, or on another node of a cluster). */
  registeredIds(): IterableIterator<string> {
    return this.registered.keys();
  }

  /**
   * Makes a registration read from the store this node's (descriptor and token replaced), or, when the store has
   * none, forgets it here without writing. Answers the descriptor, undefined when it is gone.
   */
  applyStored(agentId: string, record: StoredRegistration | undefined): AgentDescriptor | undefined {
    if (record === undefined) {
      this.registered.delete(agentId);
      this.tokens.delete(agentId);
      return undefined;
    }
    this.registered.set(agentId, { descriptor: record.descriptor, registeredAt: record.registeredAt });
    if (record.tokenSha256 === null) this.tokens.delete(agentId);
    else this.tokens.set(agentId, Buffer.from(record.tokenSha256, "hex"));
    return record.descriptor;
  }

  private persist(agentId: string): void {
    const registration = this.registered.get(agentId);
    if (registration === undefined) return;
    const record: StoredRegistration = { ...registration, tokenSha256: this.tokens.get(agentId)?.toString("hex") ?? null };
    this.store().put("agents", agentId, record);
  }

  /** Whether `presented` is the agent's token (constant time); false for an agent without one. */
  tokenMatches(agentId: string, presented: string | undefined): boolean {
    const expected = this.tokens.get(agentId);
    return expected !== undefined && presented !== undefined && timingSafeEqual(expected, hashToken(presented));
  }

  /** One of the runtime's agents, registered, or a participant of a workflow session. */
  isKnown(agentId: string): boolean {
    return this.registered.has(agentId) || this.participants.hasParticipant(agentId) || this.isRuntimeAgent(agentId);
  }

  /** Registered, or a participant of a workflow session, and not one of the runtime's agents (which have no socket). */
  mayConnect(agentId: string): boolean {
    return (this.registered.has(agentId) || this.participants.hasParticipant(agentId)) && !this.isRuntimeAgent(agentId);
  }

  /** One of the runtime's own agents (`troupe://<id>`). */
  isRuntimeAgent(agentId: string): boolean {
    return this.agents.agentIdOfBusAgent(agentId) !== undefined;
  }

  /** Agents registered through `POST /agents/register`. */
  registeredCount(): number {
    return this.registered.size;
  }

  /** Registered through `POST /agents/register`. */
  isRegistered(agentId: string): boolean {
    return this.registered.has(agentId);
  }

  /** Marks an agent online (connected) or offline. */
  setOnline(agentId: string, online: boolean, at: number): void {
    const presence = this.presence.get(agentId) ?? { online: false, lastHeartbeat: null };
    if (presence.online !== online) this.connected += online ? 1 : -1;
    presence.online = online;
    if (online) presence.lastHeartbeat = at;
    if (!online && !this.isKnown(agentId)) this.presence.delete(agentId);
    else this.presence.set(agentId, presence);
  }

  /** Records a sign of life (a pong, a frame). */
  heartbeat(agentId: string, at: number): void {
    const presence = this.presence.get(agentId);
    if (presence !== undefined) presence.lastHeartbeat = at;
  }

  /** Agents online: the runtime's while it runs, and those connected. */
  onlineCount(): number {
    return this.agents.busAgents().filter((agent) => agent.online).length + this.connected;
  }

  /** How many agents `list()` would list, without building it. */
  knownCount(): number {
    let participantsOnly = 0;
    for (const { agent_id } of this.participants.participantAgents()) {
      if (!this.registered.has(agent_id) && !this.isRuntimeAgent(agent_id)) participantsOnly += 1;
    }
    return this.agents.busAgents().length + this.registered.size + participantsOnly;
  }

  /** Every known agent: the runtime's own, registered ones, then participants that never registered. */
  list(): AgentListing[] {
    return [...this.listings()].map((make) => make());
  }

  /** The listings, in `list()` order, each built only when called (a page builds its own alone). */
  *listings(): Generator<() => AgentListing> {
    const listing = (descriptor: AgentDescriptor, registeredAt: number | null, source: AgentListing["source"]): AgentListing => {
      const presence = this.presence.get(descriptor.agent_id);
      const online = presence?.online ?? false;
      return {
        ...descriptor,
        online,
        last_heartbeat: presence?.lastHeartbeat ?? null,
        registered_at: registeredAt,
        source,
        status: this.agents.agentState(descriptor.agent_id) ?? (online ? "ready" : "offline"),
      };
    };
    for (const agent of this.agents.busAgents()) {
      yield (): AgentListing => ({
        agent_id: agent.busAgentId,
        framework: RUNTIME_FRAMEWORK,
        capabilities: agent.capabilities,
        metadata: { name: agent.name, description: agent.description, kind: agent.kind },
        online: agent.online,
        last_heartbeat: null,
        registered_at: null,
        source: "runtime",
        status: agent.state,
      });
    }
    for (const { descriptor, registeredAt } of this.registered.values()) yield () => listing(descriptor, registeredAt, "registered");
    for (const { agent_id, framework } of this.participants.participantAgents()) {
      if (this.registered.has(agent_id) || this.isRuntimeAgent(agent_id)) continue;
      yield () => listing({ agent_id, framework, capabilities: [], metadata: {} }, null, "participant");
    }
  }
}
