/**
 * A remote A2A agent as the runtime's options and the server's configuration name it
 * (`createRuntime({ a2aAgents })`, `"a2aAgents"` in `troupe serve --config`).
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { parseWith } from "../validation.js";

/** A remote A2A agent that the runtime uses as one of its own agents (docs/a2a.md). */
export interface A2aAgentConfig {
  /** The agent id sessions, asks and workflow steps name. */
  id: string;
  /** Its base URL: the agent card is read from `<url>/.well-known/agent-card.json` (a trailing `/` is added). */
  url: string;
  /** Sent with every request to it, the card's included: its credentials (`authorization`, `x-agent-api-key`). */
  headers?: Record<string, string>;
}

const httpUrl = z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" });

/** One remote A2A agent, as the options and the configuration file take it. */
export const a2aAgentSchema = z.strictObject({
  id: z.string().min(1).max(512),
  url: httpUrl,
  headers: z.record(z.string().min(1), z.string()).optional(),
});

/** Validates the remote A2A agents of a runtime; a bad one, or an id given twice, is CONFIG naming it. */
export function parseA2aAgents(configs: unknown): A2aAgentConfig[] {
  const parsed = parseWith(z.array(a2aAgentSchema), configs, { root: "a2aAgents", prefix: ["a2aAgents"] });
  const seen = new Set<string>();
  for (const [index, config] of parsed.entries()) {
    const field = `a2aAgents.${index}.id`;
    if (seen.has(config.id)) throw new BridgeError("CONFIG", `${field}: duplicate agent id ${config.id}`, { field });
    seen.add(config.id);
  }
  return parsed;
}
