/**
 * The real-engine harness itself (test/support/postgres-server.ts, nats-server.ts): engines on 127.0.0.1 in
 * temporary directories, restartable with their data, and gone after, even when the test process dies first.
 */
import { existsSync } from "node:fs";
import { setTimeout as delay } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { connectNats } from "../../src/cluster/nats-connection.js";
import { startNats, startNatsCluster } from "../support/nats-server.js";
import { startPostgres } from "../support/postgres-server.js";
import { runModuleScript } from "../support/module-script.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until `pid` is gone: a killed process leaves the process table once its new parent reaps it. */
async function gone(pid: number): Promise<boolean> {
  for (let attempt = 0; attempt < 100 && alive(pid); attempt++) await delay(50);
  return !alive(pid);
}

describe("the real-engine harness", () => {
  it("runs PostgreSQL 15 or later on 127.0.0.1 in a temporary directory, brings it back with its data, and removes it all at stop", async () => {
    const server = await startPostgres();
    try {
      expect(existsSync(server.dir)).toBe(true);
      const [settings] = await server.query<{ address: string; version: number }>(
        "SELECT host(inet_server_addr()) AS address, current_setting('server_version_num')::int AS version",
      );
      expect(settings!.address).toBe("127.0.0.1");
      expect(settings!.version).toBeGreaterThanOrEqual(150_000);
      await server.query("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)");
      await server.halt("immediate");
      expect(server.running()).toBe(false);
      await server.start();
      expect(await server.query("SELECT n FROM kept")).toEqual([{ n: 42 }]);
    } finally {
      await server.stop();
    }
    expect(server.running()).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
  }, 30_000);

  it("runs nats-server with JetStream on 127.0.0.1, on the same port after a restart, and removes its directory at stop", async () => {
    const server = await startNats();
    try {
      expect(server.url).toBe(`nats://127.0.0.1:${server.port}`);
      expect(server.output()).toMatch(/Starting JetStream/);
      await server.halt("SIGKILL");
      await server.start();
      expect(server.output()).toContain(`Listening for client connections on 127.0.0.1:${server.port}`);
    } finally {
      await server.stop();
    }
    expect(server.running()).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
  });

  it("runs a NATS cluster of three JetStream servers on 127.0.0.1 that keeps a stream's copies on each, and removes their directories at stop", async () => {
    const cluster = await startNatsCluster();
    try {
      expect(cluster.servers.map((server) => server.name)).toEqual(["s1", "s2", "s3"]);
      expect(new Set(cluster.servers.map((server) => server.dir)).size).toBe(3);
      expect(cluster.url).toBe(cluster.servers.map((server) => `nats://127.0.0.1:${server.port}`).join(","));
      for (const server of cluster.servers) expect(existsSync(server.dir)).toBe(true);
      // They are one JetStream cluster: a stream made through one server has a copy on each.
      const connection = await connectNats({ url: cluster.servers[0]!.url });
      try {
        const info = await connection.manager.streams.add({ name: "HARNESS", subjects: ["harness.>"], num_replicas: 3 });
        expect([info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((replica) => replica.name)].sort()).toEqual(["s1", "s2", "s3"]);
      } finally {
        await connection.close();
      }
    } finally {
      await cluster.stop();
    }
    for (const server of cluster.servers) {
      expect(server.running()).toBe(false);
      expect(existsSync(server.dir)).toBe(false);
    }
  });

  it("kills the engines and removes their directories when the test process exits without stopping them", async () => {
    const script = [
      'import { startPostgres } from "./test/support/postgres-server.ts";',
      'import { startNats } from "./test/support/nats-server.ts";',
      "const [postgres, nats] = await Promise.all([startPostgres(), startNats()]);",
      "const [{ pid }] = await postgres.query(\"SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'\");",
      "console.log(JSON.stringify({ dirs: [postgres.dir, nats.dir], pids: [postgres.pid(), nats.pid(), pid] }));",
      "process.exit(0);",
    ].join("\n");
    const output = await runModuleScript(script);
    const { dirs, pids } = JSON.parse(output) as { dirs: string[]; pids: number[] };
    // The postmaster and nats-server were killed; the checkpointer leaves once it notices, as every PostgreSQL child does.
    expect(pids).toHaveLength(3);
    for (const pid of pids) expect(await gone(pid)).toBe(true);
    expect(dirs.filter((dir) => existsSync(dir))).toEqual([]);
  }, 30_000);
});
