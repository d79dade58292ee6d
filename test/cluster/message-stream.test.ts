/**
 * The cluster's message stream on a real nats-server: a message published by one node reaches the recipient's
 * subscriber on another, is stored once however often it is published, waits while nobody pulls it, survives
 * a crash of the server, comes again until it is acknowledged, and never after.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ClusterMessageStream, type MessageSubscription, type StreamedMessage } from "../../src/cluster/message-stream.js";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { startNats, type NatsServer } from "../support/nats-server.js";

const RECIPIENT = "claude-code://reviewer";
let server: NatsServer;
let streams = 0;
const connections: ClusterConnection[] = [];
const subscriptions: MessageSubscription[] = [];

beforeAll(async () => {
  server = await startNats();
});

afterAll(async () => {
  await server?.stop();
});

afterEach(async () => {
  await Promise.allSettled(subscriptions.splice(0).map((subscription) => subscription.stop()));
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
});

/** A node's view of a stream of its own (each test has its stream and subjects). */
async function node(name: string, stream: string, { url = server.url, ackWaitMs = 30_000 } = {}) {
  const connection = await connectNats({ url, name });
  connections.push(connection);
  return { connection, messages: await ClusterMessageStream.open(connection, { stream, subjectPrefix: `t.${stream}`, ackWaitMs }) };
}

function freshStream(): string {
  return `MESSAGES_${++streams}`;
}

/** Subscribes, and answers a function that resolves with the next `count` messages delivered. */
async function inbox(messages: ClusterMessageStream, recipient = RECIPIENT) {
  const received: StreamedMessage[] = [];
  let wake: (() => void) | undefined;
  subscriptions.push(
    await messages.subscribe(recipient, (message) => {
      received.push(message);
      wake?.();
    }),
  );
  return async (count: number): Promise<StreamedMessage[]> => {
    while (received.length < count) await new Promise<void>((resolve) => (wake = resolve));
    return received.splice(0, count);
  };
}

function message(key: string, data = key, priority: "critical" | "high" | "medium" | "low" = "medium") {
  return { recipient: RECIPIENT, key, priority, data };
}

describe("the cluster's message stream", () => {
  it("delivers a message published on one node to the recipient's subscriber on another, with its key and priority", async () => {
    const stream = freshStream();
    const [a, b] = await Promise.all([node("node-a", stream), node("node-b", stream)]);
    const next = await inbox(a.messages);
    await b.messages.publish(message("sender\u001fm-1", '{"hello":"world"}', "high"));
    const [delivered] = await next(1);
    expect(delivered).toMatchObject({ recipient: RECIPIENT, key: "sender\u001fm-1", priority: "high", data: '{"hello":"world"}', deliveryCount: 1 });
    await delivered!.ack();
  });

  it("stores a message published twice under one key once", async () => {
    const stream = freshStream();
    const { messages, connection } = await node("node-a", stream);
    const first = await messages.publish(message("k-1"));
    const again = await messages.publish(message("k-1", "a retry of the same message"));
    expect(again).toEqual({ sequence: first.sequence, duplicate: true });
    expect((await connection.manager.streams.info(stream)).state.messages).toBe(1);
  });

  it("keeps messages for a recipient nobody pulls, across a crash of the server, then delivers them in order", async () => {
    const own = await startNats();
    try {
      const stream = freshStream();
      const publisher = await node("node-b", stream, { url: own.url });
      for (let index = 0; index < 50; index++) await publisher.messages.publish(message(`k-${index}`));
      await own.halt("SIGKILL");
      await own.start();
      const receiver = await node("node-a", stream, { url: own.url });
      const next = await inbox(receiver.messages);
      const delivered = await next(50);
      expect(delivered.map((each) => each.key)).toEqual(Array.from({ length: 50 }, (_, index) => `k-${index}`));
      await Promise.all(delivered.map((each) => each.ack()));
    } finally {
      await own.stop();
    }
  });

  it("delivers a message given back again, and an acknowledged one never again: the stream forgets it", async () => {
    const stream = freshStream();
    const { messages, connection } = await node("node-a", stream);
    const next = await inbox(messages);
    await messages.publish(message("k-1"));
    const [first] = await next(1);
    first!.retryAfter(0);
    const [second] = await next(1);
    expect([second!.key, second!.deliveryCount]).toEqual(["k-1", 2]);
    await second!.ack();
    await messages.publish(message("k-2"));
    const [after] = await next(1);
    expect(after!.key).toBe("k-2");
    await after!.ack();
    expect((await connection.manager.streams.info(stream)).state.messages).toBe(0);
  });

  it("hands a message its node pulled and never acknowledged (the node died) to another node after the ack wait", async () => {
    const stream = freshStream();
    const [a, b] = await Promise.all([node("node-a", stream, { ackWaitMs: 1_000 }), node("node-b", stream, { ackWaitMs: 1_000 })]);
    const nextOnA = await inbox(a.messages);
    await b.messages.publish(message("k-1"));
    const [pulledByA] = await nextOnA(1);
    expect(pulledByA!.deliveryCount).toBe(1);
    // node-a dies with the message unacknowledged; the recipient reconnects to node-b.
    await subscriptions.shift()!.stop();
    await a.connection.close();
    const nextOnB = await inbox(b.messages);
    const [pulledByB] = await nextOnB(1);
    expect([pulledByB!.key, pulledByB!.deliveryCount]).toEqual(["k-1", 2]);
    await pulledByB!.ack();
  });

  it("hands what a stopped pull gave back to the next pull at once, each message once", async () => {
    const stream = freshStream();
    const [a, b] = await Promise.all([node("node-a", stream), node("node-b", stream)]);
    const nextOnA = await inbox(a.messages);
    for (let index = 1; index <= 4; index++) await b.messages.publish(message(`k-${index}`));
    const held = await nextOnA(4);
    // The recipient left node-a: its pull stops, then what it held goes back (no pull waits for it meanwhile).
    await subscriptions.shift()!.stop();
    for (const each of held) each.retryAfter(0);
    const nextOnB = await inbox(b.messages);
    const again = await nextOnB(4);
    expect(again.map((each) => [each.key, each.deliveryCount]).sort()).toEqual([
      ["k-1", 2],
      ["k-2", 2],
      ["k-3", 2],
      ["k-4", 2],
    ]);
    await Promise.all(again.map((each) => each.ack()));
  });

  it("takes the messages no node holds, given back ones included, and counts those it could not reach", async () => {
    const stream = freshStream();
    const [a, b] = await Promise.all([node("node-a", stream), node("node-b", stream)]);
    const nextOnA = await inbox(a.messages);
    for (let index = 1; index <= 3; index++) await b.messages.publish(message(`k-${index}`));
    const [first] = await nextOnA(3);
    await subscriptions.shift()!.stop();
    // node-a still holds two; the first is back in the stream, delivered before: not JetStream's num_pending.
    first!.retryAfter(0);
    const taken = await b.messages.take(RECIPIENT, 10);
    expect(taken.messages.map((each) => each.key)).toEqual(["k-1"]);
    expect(taken.unreached).toBe(2);
    await taken.messages[0]!.ack();
  });

  it("keeps recipients apart: each subscriber gets its own messages only", async () => {
    const stream = freshStream();
    const { messages } = await node("node-a", stream);
    const nextForReviewer = await inbox(messages, RECIPIENT);
    const nextForWriter = await inbox(messages, "opencode://writer");
    await messages.publish({ recipient: "opencode://writer", key: "w-1", priority: "low", data: "for the writer" });
    await messages.publish(message("r-1", "for the reviewer"));
    const [[forWriter], [forReviewer]] = await Promise.all([nextForWriter(1), nextForReviewer(1)]);
    expect([forWriter!.data, forReviewer!.data]).toEqual(["for the writer", "for the reviewer"]);
    await Promise.all([forWriter!.ack(), forReviewer!.ack()]);
  });
});
