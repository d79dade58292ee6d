/**
 * The configuration file of `troupe serve --config`: its `bus` section takes the bus's limits and timings,
 * validated by the bus's own schema, and refuses anything else naming the file and the field.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadServerConfig } from "../../src/cli/config.js";
import { parse } from "yaml";
import { BridgeError } from "../../src/errors.js";
import { projectRoot } from "./support.js";

const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function configFile(content: unknown): string {
  const directory = mkdtempSync(join(tmpdir(), "troupe-config-"));
  directories.push(directory);
  const path = join(directory, "troupe.json");
  writeFileSync(path, JSON.stringify(content));
  return path;
}

function errorOf(path: string): BridgeError {
  try {
    loadServerConfig(path);
  } catch (error) {
    return error as BridgeError;
  }
  throw new Error(`${path} was accepted`);
}

describe("the bus section of a configuration file", () => {
  it("takes the bus's limits and timings", () => {
    const path = configFile({ bus: { maxQueuedBytes: 65_536, maxAgents: 3, connectionIdleMs: 250, maxBusSessions: 4 } });
    expect(loadServerConfig(path).bus).toMatchObject({ maxQueuedBytes: 65_536, maxAgents: 3, connectionIdleMs: 250, maxBusSessions: 4 });
  });

  it("refuses an unknown key with CONFIG naming the file and the field", () => {
    const path = configFile({ bus: { maxQueuedBytes: 65_536, maxQueueBytes: 1 } });
    const error = errorOf(path);
    expect(error).toBeInstanceOf(BridgeError);
    expect(error.type).toBe("CONFIG");
    expect(error.message).toBe(`${path}: bus.maxQueueBytes: unrecognized key "maxQueueBytes"`);
    expect(error.details).toMatchObject({ file: path, field: "bus.maxQueueBytes" });
  });

  it("refuses where the bus listens, its key and its agent auth, which are flags", () => {
    for (const flag of ["port", "host", "apiKey", "agentAuth"]) {
      const error = errorOf(configFile({ bus: { [flag]: flag === "port" ? 8080 : "x" } }));
      expect(error.details, flag).toMatchObject({ field: `bus.${flag}` });
    }
  });

  it("refuses a value the bus would refuse, naming the field", () => {
    const error = errorOf(configFile({ bus: { maxAgents: 0 } }));
    expect(error.type).toBe("CONFIG");
    expect(error.details).toMatchObject({ field: "bus.maxAgents" });
    expect(errorOf(configFile({ bus: { ackTimeout: "30s" } })).details).toMatchObject({ field: "bus.ackTimeout" });
  });
});

describe("the cluster section of a configuration file", () => {
  it("takes the cluster's lease and ack wait, and refuses anything else there (the URL and node id are flags)", () => {
    expect(loadServerConfig(configFile({ cluster: { leaseMs: 5_000, ackWaitMs: 20_000 } })).cluster).toEqual({ leaseMs: 5_000, ackWaitMs: 20_000 });
    expect(errorOf(configFile({ cluster: { url: "nats://127.0.0.1:4222" } })).details).toMatchObject({ field: "cluster.url" });
    expect(errorOf(configFile({ cluster: { leaseMs: 10 } })).details).toMatchObject({ field: "cluster.leaseMs" });
  });

  it("takes the copies NATS keeps of the stream and the bucket, 1, 3 or 5, and refuses any other number naming cluster.replicas", () => {
    expect(loadServerConfig(configFile({ cluster: { replicas: 3 } })).cluster).toEqual({ replicas: 3 });
    for (const replicas of [2, 0, 7, "3"]) {
      const error = errorOf(configFile({ cluster: { replicas } }));
      expect(error.type).toBe("CONFIG");
      expect(error.message).toContain("cluster.replicas: 1, 3 or 5");
      expect(error.details).toMatchObject({ field: "cluster.replicas" });
    }
  });

  it("loads the configurations of examples/cluster: one NATS server, and three with three copies of the stream and the bucket", () => {
    const example = (name: string) => join(projectRoot, "examples", "cluster", name);
    expect(loadServerConfig(example("troupe.json")).cluster).toEqual({ leaseMs: 10_000, ackWaitMs: 30_000 });
    expect(loadServerConfig(example("troupe-replicas.json")).cluster).toEqual({ leaseMs: 15_000, ackWaitMs: 30_000, replicas: 3 });
    // The replicated variant's nodes are given every NATS server and that configuration.
    const compose = parse(readFileSync(example("compose.replicas.yaml"), "utf8")) as { services: Record<string, { command?: string[] }> };
    for (const node of ["troupe-1", "troupe-2", "troupe-3"]) {
      expect(compose.services[node]?.command).toEqual(
        expect.arrayContaining([
          "--config=/etc/troupe/troupe-replicas.json",
          "--cluster=nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222",
          `--node-id=${node}`,
        ]),
      );
    }
  });
});
