/**
 * RuntimeParams: their schema (SPEC §2.4 ranges) and their merge across layers.
 */
import { z } from "zod";

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
  return merged as RuntimeParams;
}
