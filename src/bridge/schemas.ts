/**
 * The eight bridge tools' argument schemas (zod, validated at the edge) and result types (SPEC §2.1).
 */
import { z } from "zod";
import { MAX_TIMER_DELAY_MS, type Usage } from "../../machines/session.machine.js";
import type { StopReason } from "../agents/agent.js";
import type { AgentDescriptor } from "../executors/executor.js";
import { runtimeParamsSchema } from "../providers/params.js";

const id = z.string().min(1);
const timeout = z.number().int().positive().max(MAX_TIMER_DELAY_MS).describe("Milliseconds before the prompt fails with TIMEOUT (queued time counts)");
const metadata = z
  .looseObject({
    provider: z.string().min(1).optional().describe("Provider the session is bound to for its life"),
    runtimeParams: runtimeParamsSchema.optional().describe("Session-level generation parameters"),
  })
  .describe("Free-form session metadata");

/** Argument schemas by tool name. */
export const toolArgumentSchemas = {
  bridge_health: z.strictObject({}),
  agents_discover: z.strictObject({
    capability: z.string().min(1).optional().describe("Only agents with this capability"),
  }),
  sessions_create: z.strictObject({
    agentId: id.optional().describe("Agent to talk to; default: the runtime's defaultAgentId"),
    metadata: metadata.optional(),
  }),
  sessions_prompt: z.strictObject({
    sessionId: id,
    prompt: z.string(),
    runtimeParams: runtimeParamsSchema.optional(),
    requestId: id.optional().describe("Client-chosen id, unique among the session's pending prompts"),
    timeout: timeout.optional(),
  }),
  sessions_status: z.strictObject({ sessionId: id }),
  sessions_close: z.strictObject({ sessionId: id }),
  sessions_cancel: z.strictObject({
    sessionId: id,
    requestId: id.optional().describe("Prompt to cancel; default: the one in flight"),
  }),
  tasks_delegate: z.strictObject({
    agentId: id.optional(),
    prompt: z.string(),
    metadata: metadata.optional(),
    runtimeParams: runtimeParamsSchema.optional(),
    timeout: timeout.optional(),
  }),
} as const;

/** A tool name. */
export type ToolName = keyof typeof toolArgumentSchemas;

/** The arguments of a tool, as its callers write them. */
export type ToolArguments<T extends ToolName> = z.input<(typeof toolArgumentSchemas)[T]>;

/** `bridge_health` result. */
export interface HealthResult {
  status: "ok";
  version: string;
  uptimeMs: number;
  executors: string[];
  sessions: { total: number; active: number; busy: number; idle: number; failed: number; capacity: number };
  agents: number;
}

/** `agents_discover` result. */
export interface DiscoverResult {
  agents: AgentDescriptor[];
}

/** `sessions_create` result. */
export interface CreateResult {
  sessionId: string;
  agentId: string;
  status: "active";
}

/** `sessions_prompt` result. */
export interface PromptResult {
  text: string;
  stopReason: StopReason | (string & {});
  requestId: string;
  usage?: Usage;
}

/** `sessions_status` result. */
export interface SessionStatusResult {
  sessionId: string;
  agentId: string;
  status: "active" | "busy" | "idle" | "failed";
  createdAt: number;
  lastActivityAt: number;
  provider?: string;
  activeRequestId?: string;
  queued: number;
  usage: Usage;
  expiresAt?: number;
  error?: { type: string; message: string };
}

/** `sessions_close` result. */
export interface CloseResult {
  closed: true;
  sessionId: string;
}

/** `sessions_cancel` result. */
export interface CancelResult {
  cancelled: true;
  sessionId: string;
  requestId: string;
}

/** `tasks_delegate` result. */
export interface DelegateResult extends PromptResult {
  sessionId: string;
}

/** The result of each tool. */
export interface ToolResults {
  bridge_health: HealthResult;
  agents_discover: DiscoverResult;
  sessions_create: CreateResult;
  sessions_prompt: PromptResult;
  sessions_status: SessionStatusResult;
  sessions_close: CloseResult;
  sessions_cancel: CancelResult;
  tasks_delegate: DelegateResult;
}
