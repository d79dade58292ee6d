/**
 * RuntimeParams: their schema (SPEC §2.4 ranges) and their merge across layers.
 *
 * The layers, lowest priority first, and where each is merged (always with `mergeRuntimeParams`):
 * 1. `ProviderConfig.defaults`: added by the provider itself (`BaseProvider.resolveParams`);
 * 2. the agent's own defaults (the `systemPrompt` of a `MultiProviderCompanionAgent`): added by the agent;
 * 3. session `metadata.runtimeParams` < 4. the prompt's `runtimeParams`: merged by the executor into
 *    `PromptContext.runtimeParams`.
 * Merging is associative, so the provider merging its defaults under what it receives is the whole chain.
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { parseWith } from "../validation.js";

/** Generation parameters a session or a prompt may set. Unknown fields are refused. */
export const runtimeParamsSchema = z.strictObject({
  model: z.string().min(1).optional(),
  temperature: z.number().min(0).max(2).optional(),
  maxTokens: z.number().int().positive().optional(),
  topP: z.number().min(0).max(1).optional(),
  topK: z.number().int().positive().optional(),
  stopSequences: z.array(z.string()).optional(),
  systemPrompt: z.string().optional(),
  providerSpecific: z.record(z.string(), z.unknown()).optional(),
});

/** Generation parameters, validated. */
export type RuntimeParams = z.infer<typeof runtimeParamsSchema>;

/**
 * Merges layers in ascending priority: a later layer's defined fields override earlier ones, and
 * `providerSpecific` is shallow-merged across all layers.
 */
export function mergeRuntimeParams(...layers: Array<RuntimeParams | undefined>): RuntimeParams {
  const merged: Record<string, unknown> = {};
  let providerSpecific: Record<string, unknown> | undefined;
  for (const layer of layers) {
    if (layer === undefined) continue;
    for (const [key, value] of Object.entries(layer)) {
      if (value === undefined) continue;
      if (key === "providerSpecific") providerSpecific = { ...providerSpecific, ...(value as Record<string, unknown>) };
      else merged[key] = value;
    }
  }
  if (providerSpecific !== undefined) merged.providerSpecific = providerSpecific;
  return merged;
}

/**
 * Validates RuntimeParams from any source other than a bridge call (provider defaults, agent config). A bad
 * value is CONFIG naming the field under `field`, e.g. `defaults.temperature`.
 */
export function parseRuntimeParams(value: unknown, field: string): RuntimeParams {
  return parseWith(runtimeParamsSchema, value ?? {}, { prefix: [field] });
}

/** Throws CONFIG for one field of RuntimeParams: `<field>: <message>`, with `details.field`. */
export function configError(field: string, message: string, details: Record<string, unknown> = {}): never {
  throw new BridgeError("CONFIG", `${field}: ${message}`, { ...details, field });
}
