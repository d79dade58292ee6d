/**
 * The agents the bus knows: registered descriptors, and whether each is online and when it last answered a ping.
 * The participants of workflow sessions count as registered (SPEC §3.1).
 */
import { z } from "zod";
import { agentIdSchema, frameworkOf } from "../protocol/envelope.js";
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
  /** `registered` through `POST /agents/register`, or known as a `participant` of a workflow session only. */
  source: "registered" | "participant";
}

/** What replaces a credential the seed project's `authentication` block carries. */
const REDACTED = "[REDACTED]";

const capabilityName = z.string().min(1).max(256);
const url = z.string().min(1).max(2_048);

const descriptorSchema = z.strictObject({
  agent_id: agentIdSchema,
  framework: z.string().min(1).max(256).optional(),
  capabilities: z.array(z.union([capabilityName, z.looseObject({ name: capabilityName })])).max(256).default([]),
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
export function parseRegistration(body: unknown): AgentDescriptor {
  const wrapped = typeof body === "object" && body !== null && "agent_descriptor" in body;
  const parsed = wrapped ? parseWith(wrappedSchema, body) : parseWith(bareSchema, body);
  const descriptor = "agent_descriptor" in parsed ? parsed.agent_descriptor : parsed;
  const { health_check_url, status_endpoint, authentication } = parsed;
  const { agent_id, capabilities, metadata, endpoints } = descriptor;
  const details = capabilities.map((capability): CapabilityDetail => (typeof capability === "string" ? { name: capability } : capability));
  return {
    agent_id,
    framework: descriptor.framework ?? frameworkOf(agent_id),
    capabilities: details.map((capability) => capability.name),
    metadata,
    ...(capabilities.some((capability) => typeof capability !== "string") ? { capability_details: details } : {}),
    ...(endpoints === undefined ? {} : { endpoints }),
    ...(health_check_url === undefined ? {} : { health_check_url }),
    ...(status_endpoint === undefined ? {} : { status_endpoint }),
    ...(authentication === undefined ? {} : { authentication: redactedAuthentication(authentication) }),
  };
}

/** A scheme name is kept as it is; in an object only `type` is: the rest may be credentials. */
function redactedAuthentication(authentication: string | Record<string, unknown>): string | Record<string, unknown> {
  if (typeof authentication === "string") return authentication;
  return Object.fromEntries(Object.entries(authentication).map(([key, value]) => [key, key === "type" ? value : REDACTED]));
}

/** Participants of workflow sessions, as the registry needs to see them. */
export interface ParticipantDirectory {
  hasParticipant(agentId: string): boolean;
  participantAgents(): Array<{ agent_id: string; framework: string }>;
}

interface Presence {
  online: boolean;
  lastHeartbeat: number | null;
}

/** Registered agents and their presence. */
export class AgentRegistry {
  private readonly registered = new Map<string, { descriptor: AgentDescriptor; registeredAt: number }>();
  private readonly presence = new Map<string, Presence>();

  constructor(private readonly participants: ParticipantDirectory) {}

  /** Registers (or re-registers) an agent. */
  register(descriptor: AgentDescriptor, at: number): AgentDescriptor {
    this.registered.set(descriptor.agent_id, { descriptor, registeredAt: at });
    return descriptor;
  }

  /** Forgets a registration; false when the agent was not registered. */
  deregister(agentId: string): boolean {
    return this.registered.delete(agentId);
  }

  /** Registered, or a participant of a workflow session. */
  isKnown(agentId: string): boolean {
    return this.registered.has(agentId) || this.participants.hasParticipant(agentId);
  }

  /** Registered through `POST /agents/register`. */
  isRegistered(agentId: string): boolean {
    return this.registered.has(agentId);
  }

  /** Marks an agent online (connected) or offline. */
  setOnline(agentId: string, online: boolean, at: number): void {
    const presence = this.presence.get(agentId) ?? { online: false, lastHeartbeat: null };
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

  /** Agents currently connected. */
  onlineCount(): number {
    let online = 0;
    for (const presence of this.presence.values()) if (presence.online) online += 1;
    return online;
  }

  /** Every known agent: registered ones, then participants that never registered. */
  list(): AgentListing[] {
    const listing = (descriptor: AgentDescriptor, registeredAt: number | null, source: AgentListing["source"]): AgentListing => {
      const presence = this.presence.get(descriptor.agent_id);
      return {
        ...descriptor,
        online: presence?.online ?? false,
        last_heartbeat: presence?.lastHeartbeat ?? null,
        registered_at: registeredAt,
        source,
      };
    };
    const registered = [...this.registered.values()].map(({ descriptor, registeredAt }) => listing(descriptor, registeredAt, "registered"));
    const participants = new Map<string, AgentDescriptor>();
    for (const { agent_id, framework } of this.participants.participantAgents()) {
      if (!this.registered.has(agent_id) && !participants.has(agent_id)) {
        participants.set(agent_id, { agent_id, framework, capabilities: [], metadata: {} });
      }
    }
    return [...registered, ...[...participants.values()].map((descriptor) => listing(descriptor, null, "participant"))];
  }
}
