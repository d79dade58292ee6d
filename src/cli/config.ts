/**
 * The server's configuration file (`troupe serve --config troupe.json`): JSON, validated at load. It holds the
 * ACP workers to run (`workers`), the remote A2A agents to use (`a2aAgents`) and the bus's limits and timings
 * (`bus`). Paths in it are relative to the file's folder, so a configuration works from wherever the server is
 * started.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { busLimitsSchema, type BusLimits } from "../bus/options.js";
import { parseWith } from "../validation.js";
import type { WorkerConfig } from "../executors/worker.js";
import { a2aAgentSchema, type A2aAgentConfig } from "../a2a/config.js";
import { REPLICA_COUNTS, type Replicas } from "../cluster/nats-connection.js";

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

const configSchema = z.strictObject({
  workers: z.array(workerSchema).optional(),
  a2aAgents: z.array(a2aAgentSchema).optional(),
  bus: busLimitsSchema.optional(),
  cluster: z
    .strictObject({
      leaseMs: z.number().int().min(100).optional(),
      ackWaitMs: z.number().int().min(100).optional(),
      replicas: z
        .union(
          REPLICA_COUNTS.map((count) => z.literal(count)),
          { error: "1, 3 or 5 copies of the message stream and the lease bucket" },
        )
        .optional(),
    })
    .optional(),
});

/** What a configuration file may hold. */
export interface ServerConfig {
  workers?: WorkerConfig[];
  /** Remote A2A agents used as agents of the server (docs/a2a.md). */
  a2aAgents?: A2aAgentConfig[];
  /** The bus's limits and timings (`BusOptions` without where it listens, its key and its agent auth). */
  bus?: BusLimits;
  /** The cluster's timings and its stream's copies for `troupe serve --cluster` (docs/cluster.md): the same on every node. */
  cluster?: { leaseMs?: number; ackWaitMs?: number; replicas?: Replicas };
}

/** An argument that reads as a relative path: it starts with `./` or `../`. */
function isRelativePath(arg: string): boolean {
  return arg.startsWith("./") || arg.startsWith("../");
}

/**
 * Resolves a worker's paths against the configuration file's folder: a `command` with a `/` in it (a bare
 * name such as `node` is looked up on the PATH), arguments that start with `./` or `../`, `cwd` and `fsRoot`.
 */
export function resolveWorkerPaths(worker: WorkerConfig, folder: string): WorkerConfig {
  const against = (path: string): string => (isAbsolute(path) ? path : resolve(folder, path));
  return {
    ...worker,
    command: worker.command.includes("/") ? against(worker.command) : worker.command,
    ...(worker.args === undefined ? {} : { args: worker.args.map((arg) => (isRelativePath(arg) ? against(arg) : arg)) }),
    ...(worker.cwd === undefined ? {} : { cwd: against(worker.cwd) }),
    ...(worker.fsRoot === undefined ? {} : { fsRoot: against(worker.fsRoot) }),
  };
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
  let config: z.infer<typeof configSchema>;
  try {
    config = parseWith(configSchema, json, { root: "(root)", details: { file: path } });
  } catch (error) {
    const configError = error as BridgeError;
    throw new BridgeError("CONFIG", `${path}: ${configError.message}`, configError.details);
  }
  const folder = dirname(resolve(path));
  return {
    ...(config.workers === undefined ? {} : { workers: config.workers.map((worker) => resolveWorkerPaths(worker, folder)) }),
    ...(config.a2aAgents === undefined ? {} : { a2aAgents: config.a2aAgents }),
    ...(config.bus === undefined ? {} : { bus: config.bus }),
    ...(config.cluster === undefined ? {} : { cluster: config.cluster }),
  };
}
