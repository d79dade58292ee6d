/**
 * One agent.yaml file (SPEC §4): its fields and their schema. The schema is built for the tools and providers
 * a runtime has, so that a file naming another one fails at load, at its line.
 */
import { z } from "zod";
import { MAX_TIMER_DELAY_MS } from "../../../machines/session.machine.js";

/** How an agent reaches the user: `auto` decides by the seed's heuristics (routing.ts). */
export const ROUTING_MODES = ["auto", "inline", "delegate"] as const;
/** A `routing:` value. */
export type RoutingSetting = (typeof ROUTING_MODES)[number];

/**
 * An agent's name, its id in the runtime: letters, digits, `_`, `-` and `.`, optionally after a framework
 * prefix (`opencode://backend`), which makes it its bus id as it is (SPEC §3.6).
 */
export const AGENT_NAME_PATTERN = /^(?:[A-Za-z][A-Za-z0-9+.-]*:\/\/)?[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** The longest name, framework prefix included. */
const MAX_AGENT_NAME_LENGTH = 128;
/** The longest `idle_timeout_minutes`: the longest delay a timer takes. */
const MAX_IDLE_TIMEOUT_MINUTES = Math.floor(MAX_TIMER_DELAY_MS / 60_000);

/** What the file's fields are checked against. */
export interface AgentFileContext {
  /** Names a capability may list under `tools`. */
  toolNames: readonly string[];
  /** Ids `provider` may name. */
  providerIds: readonly string[];
}

/** `name, other` or `none` for a message. */
function listOf(names: readonly string[]): string {
  return names.length === 0 ? "none" : [...names].sort().join(", ");
}

function nonEmptyText(what: string) {
  return z
    .string()
    .trim()
    .min(1, { error: `expected ${what}, got an empty string` });
}

function capabilitySchema({ toolNames }: AgentFileContext) {
  const known = new Set(toolNames);
  return z.strictObject({
    name: nonEmptyText("a capability name"),
    prompt: z.string().trim().default(""),
    tools: z
      .array(z.string().refine((tool) => known.has(tool), { error: (issue) => `unknown tool ${JSON.stringify(issue.input)} (known: ${listOf(toolNames)})` }))
      .default([]),
  });
}

/** agent.yaml's `session:` block: how conversations use the agent. */
const sessionSchema = z.strictObject({
  trigger: z.enum(["mention", "always"]).optional(),
  idle_timeout_minutes: z
    .number()
    .positive({ error: "expected a number of minutes above 0" })
    .max(MAX_IDLE_TIMEOUT_MINUTES, { error: `expected at most ${MAX_IDLE_TIMEOUT_MINUTES} minutes` })
    .optional(),
  isolation: z.enum(["shared", "per_thread"]).optional(),
  history_window: z.number().int().positive({ error: "expected a whole number of messages above 0" }).optional(),
});

/** The schema of one agent.yaml, for these tools and providers. Unknown fields are refused. */
export function agentFileSchema(context: AgentFileContext) {
  const providers = new Set(context.providerIds);
  return z
    .strictObject({
      name: z
        .string()
        .max(MAX_AGENT_NAME_LENGTH, { error: `expected at most ${MAX_AGENT_NAME_LENGTH} characters` })
        .regex(AGENT_NAME_PATTERN, {
          error: (issue) => `expected letters, digits, "_", "-" or ".", optionally after a framework:// prefix (got ${JSON.stringify(issue.input)})`,
        }),
      default: z.boolean().optional(),
      description: nonEmptyText("a description").optional(),
      provider: z
        .string()
        .refine((id) => providers.has(id), {
          error: (issue) => `no provider ${JSON.stringify(issue.input)} is available (available: ${listOf(context.providerIds)})`,
        })
        .optional(),
      model: nonEmptyText("a model").optional(),
      system_prompt: z.string().trim().optional(),
      routing: z.enum(ROUTING_MODES).default("auto"),
      capabilities: z.array(capabilitySchema(context)).default([]),
      session: sessionSchema.optional(),
    })
    .superRefine((file, check) => {
      // Checked once every field is valid: these read two fields together.
      if (file.default === true && file.routing === "inline") {
        check.addIssue({ code: "custom", path: ["routing"], message: "the default agent cannot be inline: it is the agent others are inlined into" });
      }
      for (const field of ["provider", "model"] as const) {
        if (file.routing === "inline" && file[field] !== undefined) {
          check.addIssue({
            code: "custom",
            path: [field],
            message: `an inline agent runs on the default agent's ${field}: remove ${field}, or use routing: delegate`,
          });
        }
      }
      const seen = new Set<string>();
      file.capabilities.forEach((capability, index) => {
        if (seen.has(capability.name))
          check.addIssue({ code: "custom", path: ["capabilities", index, "name"], message: `duplicate capability ${JSON.stringify(capability.name)}` });
        seen.add(capability.name);
      });
    });
}

/** A valid agent.yaml, as its schema outputs it. */
export type AgentFile = z.output<ReturnType<typeof agentFileSchema>>;

/** The fields an object at `path` of an agent.yaml may have, for an unknown-field message. */
export function fieldsAt(path: readonly PropertyKey[]): string[] {
  const none: AgentFileContext = { toolNames: [], providerIds: [] };
  if (path.length === 0) return Object.keys(agentFileSchema(none).shape);
  if (path[0] === "session") return Object.keys(sessionSchema.shape);
  if (path[0] === "capabilities") return Object.keys(capabilitySchema(none).shape);
  return [];
}
