/**
 * `troupe serve --cluster nats://… --store postgres://…`: two processes on one NATS and one PostgreSQL (real
 * servers started for this file) are two nodes of one cluster: a message posted to one reaches an agent
 * connected to the other.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { connectAgent, type AgentClient, type MessageEnvelope } from "../../src/index.js";
import { useEngines } from "../support/engines.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";
import { collect, exitCodeOf, run, troupe } from "./support.js";

let nats: NatsServer;
let postgres: PostgresServer;

useEngines((engines) => ({ nats, postgres } = engines));

/** `troupe serve --cluster` on a free port; resolves once it listens. */
async function serveNode(nodeId: string, extra: string[] = []) {
  const child = troupe([
    "serve",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--no-agents",
    "--store",
    postgres.url(),
    "--cluster",
    nats.url,
    "--node-id",
    nodeId,
    ...extra,
  ]);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  // A node that does not start says why on stderr: the failure shows it.
  const [line = "", url = ""] = await stdout.until(/troupe listening on (http:\/\/\S+).*\n/).catch((error: unknown) => {
    throw new Error(`${nodeId} did not start: ${String(error)}\n${stderr.text()}`);
  });
  return { child, url, line };
}

describe("troupe serve --cluster", () => {
  it("runs two nodes that share the store: a message posted to one reaches the agent connected to the other", async () => {
    const [first, second] = await Promise.all([serveNode("node-1"), serveNode("node-2")]);
    let agent: AgentClient | undefined;
    try {
      expect(first.line).toContain(`cluster node node-1 on NATS at ${nats.url}`);
      expect(second.line).toContain("cluster node node-2");
      const registered = await fetch(`${first.url}/agents/register`, { method: "POST", body: JSON.stringify({ agent_id: "test://far" }) });
      expect(registered.status).toBe(201);
      const received: MessageEnvelope[] = [];
      agent = connectAgent({ url: first.url, agentId: "test://far", onMessage: (message) => void received.push(message) });
      await agent.ready();
      const sent = await fetch(`${second.url}/messages/send`, {
        method: "POST",
        body: JSON.stringify({
          message_id: "m-1",
          timestamp: new Date().toISOString(),
          sender: { agent_id: "test://near", framework: "test" },
          recipient: { agent_id: "test://far", framework: "test" },
          message_type: "status_update",
          payload: { hello: 1 },
        }),
      });
      expect(sent.status).toBe(202);
      const deadline = Date.now() + 10_000;
      while (received.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(received.map((message) => message.payload)).toEqual([{ hello: 1 }]);
      const health = (await (await fetch(`${second.url}/health`)).json()) as { cluster: unknown };
      expect(health.cluster).toMatchObject({ node: "node-2", nats: "connected", store: "reachable" });
    } finally {
      await agent?.close();
      first.child.kill("SIGTERM");
      second.child.kill("SIGTERM");
    }
    expect(await exitCodeOf(first.child)).toBe(0);
    expect(await exitCodeOf(second.child)).toBe(0);
  }, 60_000);

  it("hands a stopped node's work to the other at its next scan, not a lease time later", async () => {
    const dir = await mkdtemp(join(tmpdir(), "troupe-serve-cluster-"));
    // A lease of 20 s: the other node scans every 10 s; without the stopped node's release it would wait 20 s more.
    const config = join(dir, "troupe.json");
    await writeFile(config, JSON.stringify({ cluster: { leaseMs: 20_000 } }));
    const [first, second] = await Promise.all([serveNode("node-s1", ["--config", config]), serveNode("node-s2", ["--config", config])]);
    try {
      const created = await fetch(`${first.url}/sessions`, {
        method: "POST",
        body: JSON.stringify({
          initiator: "cli://lead",
          participants: [{ agent_id: "cli://dev", role: "dev" }],
          steps: [{ name: "design", required_agents: ["cli://dev"] }],
        }),
      });
      expect(created.status).toBe(201);
      const { session_id: sessionId } = (await created.json()) as { session_id: string };
      first.child.kill("SIGTERM");
      expect(await exitCodeOf(first.child)).toBe(0);
      const stoppedAt = Date.now();
      let answer = 0;
      while (answer !== 200 && Date.now() - stoppedAt < 16_000) {
        answer = (await fetch(`${second.url}/sessions/${sessionId}`)).status;
        if (answer !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(answer).toBe(200);
      const listed = (await (await fetch(`${second.url}/sessions`)).json()) as { sessions: Array<{ session_id: string; node: string }> };
      expect(listed.sessions).toMatchObject([{ session_id: sessionId, node: "node-s2" }]);
    } finally {
      first.child.kill("SIGTERM");
      second.child.kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    }
    expect(await exitCodeOf(second.child)).toBe(0);
  }, 60_000);

  it("exits 2 for --cluster without --store, a --cluster that is not a NATS URL, --node-id without --cluster, or a bad --node-id", async () => {
    const [withoutStore, notNats, lonelyId, badId] = await Promise.all([
      run(["serve", "--cluster", nats.url]),
      run(["serve", "--cluster", "http://127.0.0.1:4222", "--store", postgres.url()]),
      run(["serve", "--node-id", "n1", "--store", postgres.url()]),
      run(["serve", "--cluster", nats.url, "--store", postgres.url(), "--node-id", "a/b"]),
    ]);
    expect(badId).toMatchObject({ code: 2, stderr: expect.stringContaining("--node-id: letters, digits") });
    expect(withoutStore).toMatchObject({ code: 2, stderr: expect.stringContaining("--cluster needs --store postgres://") });
    expect(notNats).toMatchObject({ code: 2, stderr: expect.stringContaining("--cluster: give a nats://") });
    expect(lonelyId).toMatchObject({ code: 2, stderr: expect.stringContaining("--node-id names a node of a cluster") });
  });

  it("takes cluster.replicas from --config: exits 2 for a number JetStream has no quorum of, 1 when its NATS is not a cluster", async () => {
    const dir = await mkdtemp(join(tmpdir(), "troupe-replicas-"));
    try {
      const [two, three] = [join(dir, "two.json"), join(dir, "three.json")];
      await writeFile(two, JSON.stringify({ cluster: { replicas: 2 } }));
      await writeFile(three, JSON.stringify({ cluster: { replicas: 3 } }));
      const [badNumber, loneServer, noCluster] = await Promise.all([
        run(["serve", "--cluster", nats.url, "--store", postgres.url(), "--config", two]),
        run(["serve", "--port", "0", "--no-agents", "--cluster", nats.url, "--store", postgres.url(), "--node-id", "lone", "--config", three]),
        run(["serve", "--port", "0", "--no-agents", "--in-memory", "--config", three]),
      ]);
      expect(badNumber).toMatchObject({ code: 2, stderr: expect.stringContaining("cluster.replicas: 1, 3 or 5") });
      // A cluster section without --cluster would be ignored: it is refused instead.
      expect(noCluster).toMatchObject({ code: 2, stderr: expect.stringContaining("its cluster section needs --cluster nats://") });
      expect(loneServer).toMatchObject({
        code: 1,
        stderr: expect.stringContaining("cluster.replicas: 3 copies take a NATS cluster of at least 3 JetStream servers"),
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
