/**
 * A bus as a cluster node: `cluster` options open the node's connection, lease table and message stream on a
 * real NATS JetStream server at `start()`, and close them at `stop()`.
 */
import { describe, expect, it } from "vitest";
import { defaultNodeId, openClusterNode } from "../../src/cluster/node.js";
import { BridgeError } from "../../src/errors.js";
import { CommunicationBus, openPostgresStore } from "../../src/index.js";
import { useEngines } from "../support/engines.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";

let server: NatsServer;
let postgres: PostgresServer;

useEngines((engines) => ({ nats: server, postgres } = engines));

describe("a cluster node", () => {
  it("joins with its id, holds leases in the cluster's bucket and closes with the bus", async () => {
    const bus = new CommunicationBus({
      port: 0,
      host: "127.0.0.1",
      apiKey: "k",
      store: () => openPostgresStore({ url: postgres.url(), exclusive: false }),
      cluster: { url: server.url, nodeId: "node-a", leaseBucket: "node_test" },
    });
    await bus.start();
    try {
      const node = bus.cluster!;
      expect(node.nodeId).toBe("node-a");
      expect(node.state()).toBe("connected");
      const lease = await node.leases.acquire("workflow:one");
      expect(lease).toMatchObject({ resource: "workflow:one", holder: "node-a" });
      expect(await node.leases.holderOf("workflow:one")).toMatchObject({ holder: "node-a" });
    } finally {
      await bus.stop();
    }
    expect(bus.cluster!.state()).toBe("closed");
  });

  it("asks another node by its id and gets its answer or its error; a node that is gone is TRANSPORT", async () => {
    const [a, b] = await Promise.all([openClusterNode({ url: server.url, nodeId: "node.a" }), openClusterNode({ url: server.url, nodeId: "node.b" })]);
    try {
      const stop = await b.serve("echo", (body, from) => {
        if ((body as { fail?: boolean }).fail === true) throw new BridgeError("NOT_FOUND", "No such workflow", { sessionId: "w1" });
        return { body, from, at: b.nodeId };
      });
      expect(await a.request("node.b", "echo", { n: 1 })).toEqual({ body: { n: 1 }, from: "node.a", at: "node.b" });
      await expect(a.request("node.b", "echo", { fail: true })).rejects.toMatchObject({
        type: "NOT_FOUND",
        message: "No such workflow",
        details: { sessionId: "w1" },
      });
      // Only node.b answers node.b's requests: node.a's topic of the same name is another subject.
      await expect(a.request("node.a", "echo", {}, 300)).rejects.toMatchObject({ type: "TRANSPORT", details: { nodeId: "node.a" } });
      stop();
      await expect(a.request("node.b", "echo", {}, 300)).rejects.toMatchObject({ type: "TRANSPORT" });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("says which node failed a request: none of that id answers now, it did not answer in time, or this node is cut off from NATS", async () => {
    const own = await startNats();
    const [a, b] = [await openClusterNode({ url: own.url, nodeId: "node-a" }), await openClusterNode({ url: own.url, nodeId: "node-b" })];
    try {
      const unavailable = { unavailable: true, retryable: true };
      // No node-c listens: NATS says so at once, and the message says so, without NATS's subject.
      const nobody = await a.request("node-c", "workflow-route", {}, 60_000).catch((error: unknown) => error as BridgeError);
      expect(nobody).toMatchObject({
        type: "TRANSPORT",
        message: "No node node-c answers workflow-route now: it stopped or is cut off from NATS (ask again once another node took its work over)",
        details: { nodeId: "node-c", ...unavailable },
      });
      const stop = await b.serve("slow", () => new Promise(() => {}));
      await expect(a.request("node-b", "slow", {}, 200)).rejects.toMatchObject({
        type: "TRANSPORT",
        message: "Node node-b did not answer slow within 200 ms",
        details: { nodeId: "node-b", timeoutMs: 200, ...unavailable },
      });
      stop();
      await own.halt();
      while (a.state() !== "disconnected") await new Promise((resolve) => setTimeout(resolve, 20));
      // Cut off itself, the asking node says so at once rather than blame node-b after the timeout.
      await expect(a.request("node-b", "workflow-route", {}, 60_000)).rejects.toMatchObject({
        type: "TRANSPORT",
        message: "This node (node-a) is cut off from NATS: it cannot ask node node-b for workflow-route until NATS is back",
        details: { nodeId: "node-b", askingNode: "node-a", ...unavailable },
      });
    } finally {
      await Promise.all([a.close(), b.close()]);
      await own.stop();
    }
  }, 30_000);

  it("answers an answer larger than NATS carries whole, in pieces, and sends no request larger than it (CONFIG, 413)", async () => {
    const [a, b] = await Promise.all([openClusterNode({ url: server.url, nodeId: "node-a" }), openClusterNode({ url: server.url, nodeId: "node-b" })]);
    try {
      const limitBytes = a.maxPayloadBytes();
      // nats-server's default max_payload, as the server told the client.
      expect(limitBytes).toBe(1024 * 1024);
      const heard: unknown[] = [];
      // Three times what one message carries, with characters of every UTF-8 length, quotes and control characters.
      const large = { text: `"é\u0001\u{1F600}\\`.repeat(Math.ceil((3 * limitBytes) / 12)), list: Array.from({ length: 1_000 }, (_, index) => index) };
      await b.serve("large", (body) => {
        heard.push(body);
        return large;
      });
      expect(await a.request("node-b", "large", {})).toEqual(large);
      expect(heard).toEqual([{}]);
      // An error too large for one message comes back whole too.
      await b.serve("large-error", () => {
        throw new BridgeError("CONFIG", "x".repeat(2 * limitBytes), { field: "y" });
      });
      await expect(a.request("node-b", "large-error", {})).rejects.toMatchObject({
        type: "CONFIG",
        message: "x".repeat(2 * limitBytes),
        details: { field: "y" },
      });
      await expect(a.request("node-b", "large", "y".repeat(limitBytes))).rejects.toMatchObject({ type: "CONFIG", details: { nodeId: "node-b", limitBytes } });
      expect(heard).toEqual([{}]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("names itself after the host with a random tail when given no id", () => {
    const [first, second] = [defaultNodeId(), defaultNodeId()];
    expect(first).toMatch(/^[A-Za-z0-9._-]+-[0-9a-f]{6}$/);
    expect(first).not.toBe(second);
  });

  it("refuses a bad node id (CONFIG, naming the field) before connecting", async () => {
    await expect(openClusterNode({ url: server.url, nodeId: "a b/c" })).rejects.toMatchObject({ type: "CONFIG", details: { field: "cluster.nodeId" } });
    await expect(openClusterNode({ url: server.url, nodeId: "x".repeat(65) })).rejects.toMatchObject({ type: "CONFIG" });
  });

  it("does not start a bus whose NATS cannot be reached (TRANSPORT), and leaves nothing running", async () => {
    const bus = new CommunicationBus({ port: 0, host: "127.0.0.1", apiKey: "k", cluster: { url: "nats://127.0.0.1:1", connectTimeoutMs: 500 } });
    await expect(bus.start()).rejects.toMatchObject({ type: "TRANSPORT" });
    expect(bus.cluster).toBeUndefined();
    await bus.stop();
  });
});
