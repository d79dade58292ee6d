/**
 * The server's configuration file (`troupe serve --config troupe.json`): JSON, validated at load.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { parseWith } from "../validation.js";
import type { WorkerConfig } from "../executors/worker.js";
import type { BusOptions } from "../bus/options.js";

const workerSchema = z.strictObject({
  id: z.string().min(1),
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: z.record(z.string(), z.string()).optional(),
  cwd: z.string().min(1).optional(),
  name: z.string().optional(),
  description: z.string().optional(),
  capabilities: z.array(z.string()).optional(),
  permissions: z.enum(["allow", "deny"]).optional(),
  fsRoot: z.string().min(1).optional(),
  restart: z
    .strictObject({
      maxCrashes: z.number().int().positive().optional(),
      backoffMs: z.number().int().nonnegative().optional(),
      maxBackoffMs: z.number().int().nonnegative().optional(),
      stableAfterMs: z.number().int().positive().optional(),
    })
    .optional(),
});

/** The bus's delivery timings and bounds a file may set; the bus checks their ranges, naming the option. */
const BUS_CONFIG_KEYS = [
  "ackTimeout",
  "retryDelay",
  "messageTimeout",
  "heartbeatInterval",
  "maxConnections",
  "maxInFlightPerAgent",
  "maxQueuedPerAgent",
  "maxQueuedBytes",
  "maxRetainedMessages",
  "maxAgents",
  "closeGraceMs",
  "workflowRetentionMs",
] as const;

/** The options of the bus a configuration file may set (`"bus": { "ackTimeout": 5000 }`). */
export type ServerBusConfig = Partial<Pick<BusOptions, (typeof BUS_CONFIG_KEYS)[number]>>;

const busSchema = z.strictObject(Object.fromEntries(BUS_CONFIG_KEYS.map((key) => [key, z.number().optional()])) as Record<(typeof BUS_CONFIG_KEYS)[number], z.ZodOptional<z.ZodNumber>>);

const configSchema = z.strictObject({
  workers: z.array(workerSchema).optional(),
  bus: busSchema.optional(),
});

/** What a configuration file may hold. */
export interface ServerConfig {
  workers?: WorkerConfig[];
  /** Delivery timings and bounds of the bus (durations in ms); see docs/bus.md for each. */
  bus?: ServerBusConfig;
}

/** Reads and validates a configuration file; a bad one is CONFIG naming the file and the field. */
export function loadServerConfig(path: string): ServerConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new BridgeError("CONFIG", `${path}: cannot read: ${(error as Error).message}`, { file: path });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new BridgeError("CONFIG", `${path}: not valid JSON: ${(error as Error).message}`, { file: path });
  }
  try {
    return parseWith(configSchema, json, { root: "(root)", details: { file: path } });
  } catch (error) {
    const configError = error as BridgeError;
    throw new BridgeError("CONFIG", `${path}: ${configError.message}`, configError.details);
  }
}
