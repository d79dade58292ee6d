/**
 * The cluster's event fan-out (src/events/cluster-events.ts) on a real NATS server: a node's `cluster.*` events
 * reach the nodes that watch, also those made before the node heard any watch (its joining, NATS coming back).
 * Watches go out on a simulated clock, so that a test says when one is heard.
 */
import { afterEach, describe, expect, it } from "vitest";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { announceNatsState, clusterAnnouncer } from "../../src/cluster/node-events.js";
import { ClusterEvents } from "../../src/events/cluster-events.js";
import { EventHub, type RuntimeEvent } from "../../src/events/event-hub.js";
import { until } from "../bus/support.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import { recordingClock, type RecordingClock } from "../support/recording-clock.js";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface TestNode {
  hub: EventHub;
  events: ClusterEvents;
  connection: ClusterConnection;
}

async function startServer(): Promise<NatsServer> {
  const server = await startNats({ jetstream: true });
  cleanups.push(() => server.stop());
  return server;
}

async function joinNode(server: NatsServer, clock: RecordingClock, nodeId: string): Promise<TestNode> {
  const connection = await connectNats({ url: server.url });
  const hub = new EventHub(clock);
  const events = new ClusterEvents(hub, clock);
  events.join(connection, nodeId);
  cleanups.push(async () => {
    events.leave();
    await connection.close();
  });
  await connection.nats.flush();
  return { hub, events, connection };
}

/** Moves the clock a watch period at a time (the watching node says so again) until `condition` holds. */
async function untilWatched(clock: RecordingClock, condition: () => boolean): Promise<void> {
  for (let watch = 0; watch < 50 && !condition(); watch += 1) {
    clock.increment(2_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await until(condition, 1_000);
}

const fromNode = (seen: RuntimeEvent[], nodeId: string): [string, string | undefined][] =>
  seen.filter((event) => event.node === nodeId).map((event) => [event.type, event.node]);

describe("ClusterEvents", () => {
  it("brings a node's cluster.node_joined, made before it heard any watch, to the node watching", async () => {
    const server = await startServer();
    const clock = recordingClock();
    const watcher = await joinNode(server, clock, "node-a");
    const seen: RuntimeEvent[] = [];
    watcher.events.on("*", (event) => seen.push(event));
    await watcher.connection.nats.flush();
    // node-b joins after node-a said it watches: it has heard no watch when it says it joined.
    const joining = await joinNode(server, clock, "node-b");
    clusterAnnouncer(joining.hub, "node-b")("cluster.node_joined", { server: joining.connection.server() });
    await untilWatched(clock, () => fromNode(seen, "node-b").length > 0);
    expect(fromNode(seen, "node-b")).toEqual([["cluster.node_joined", "node-b"]]);
  }, 30_000);

  it("brings another node's cluster.nats_reconnected to the node watching, however long NATS was down", async () => {
    const server = await startServer();
    const clock = recordingClock();
    const watcher = await joinNode(server, clock, "node-a");
    const seen: RuntimeEvent[] = [];
    watcher.events.on("*", (event) => seen.push(event));
    const other = await joinNode(server, clock, "node-b");
    cleanups.push(announceNatsState(other.connection, clusterAnnouncer(other.hub, "node-b"), clock));
    await server.halt();
    await until(() => watcher.connection.state() === "disconnected" && other.connection.state() === "disconnected", 10_000);
    // Down for longer than node-b goes on publishing after the last watch it heard.
    clock.increment(10_000);
    await server.start();
    await until(() => watcher.connection.state() === "connected" && other.connection.state() === "connected", 15_000);
    await untilWatched(clock, () => seen.some((event) => event.type === "cluster.nats_reconnected" && event.node === "node-b"));
    // Its cluster.nats_disconnected was kept for three watch periods only: the return says how long it was down.
    expect(fromNode(seen, "node-b")).toEqual([["cluster.nats_reconnected", "node-b"]]);
    expect(seen.find((event) => event.node === "node-b")).toMatchObject({ downMs: 10_000 });
  }, 60_000);
});
