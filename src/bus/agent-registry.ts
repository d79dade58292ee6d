/**
 * The agents the bus knows: registered descriptors, and whether each is online and when it last answered a ping.
 * The participants of workflow sessions count as registered (SPEC §3.1).
 */
import { z } from "zod";
import { agentIdSchema, frameworkOf } from "../protocol/envelope.js";
import { parseWith } from "../validation.js";

/** What an agent says about itself when it registers. */
export interface AgentDescriptor {
  agent_id: string;
  framework: string;
  capabilities: string[];
  metadata: Record<string, unknown>;
}

/** An agent as `GET /agents` lists it. Times are epoch milliseconds. */
export interface AgentListing extends AgentDescriptor {
  online: boolean;
  last_heartbeat: number | null;
  registered_at: number | null;
  /** `registered` through `POST /agents/register`, or known as a `participant` of a workflow session only. */
  source: "registered" | "participant";
}

const descriptorSchema = z.strictObject({
  agent_id: agentIdSchema,
  framework: z.string().min(1).max(256).optional(),
  capabilities: z.array(z.string().min(1).max(256)).max(256).default([]),
  metadata: z.record(z.string(), z.unknown()).default({}),
});

const wrappedSchema = z.strictObject({ agent_descriptor: descriptorSchema });

/** Validates a registration body, `{ agent_descriptor: {...} }` or the bare descriptor; the framework defaults to the id's prefix. */
export function parseRegistration(body: unknown): AgentDescriptor {
  const wrapped = typeof body === "object" && body !== null && "agent_descriptor" in body;
  const descriptor = wrapped ? parseWith(wrappedSchema, body).agent_descriptor : parseWith(descriptorSchema, body);
  const { agent_id, capabilities, metadata } = descriptor;
  return { agent_id, framework: descriptor.framework ?? frameworkOf(agent_id), capabilities, metadata };
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
