/**
 * The answers that name no workflow, kept by the cluster (docs/cluster.md, "Answers that name no workflow"), on a
 * real nats-server: each sender has its subject and its share of the stream, and a sender past its share, or an
 * answer past the whole stream's bytes, is refused (CAPACITY, 429) rather than pushing anyone's kept answer out.
 */
import { afterEach, describe, expect, it } from "vitest";
import { openPostgresStore } from "../../src/index.js";
import { ClusterAnswers, type AnswerStreamOptions } from "../../src/cluster/answer-stream.js";
import { connectNats, type ClusterConnection } from "../../src/cluster/nats-connection.js";
import { call, envelope, register, startBus, until } from "../bus/support.js";
import { useEngines } from "../support/engines.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";

let nats: NatsServer;
let postgres: PostgresServer;
let streams = 0;
const connections: ClusterConnection[] = [];
const listening: Array<() => void> = [];

useEngines((engines) => ({ nats, postgres } = engines));

afterEach(async () => {
  for (const stop of listening.splice(0)) stop();
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
});

/** A fresh stream and subject of its own for each test. */
function freshStream(): { stream: string; subject: string } {
  streams += 1;
  return { stream: `ANSWERS_${streams}`, subject: `t.answers${streams}` };
}

async function connection(name: string): Promise<ClusterConnection> {
  const opened = await connectNats({ url: nats.url, name });
  connections.push(opened);
  return opened;
}

/** A node's view of the answers' stream `names`. */
async function answersOf(names: { stream: string; subject: string }, options: Partial<AnswerStreamOptions> = {}, node = "node-a"): Promise<ClusterAnswers> {
  return ClusterAnswers.open(await connection(node), { ...names, keepMs: 60_000, ...options });
}

/** Whether `publish` is accepted, asked again every 100 ms for up to `timeoutMs` while it is refused. */
async function acceptedWithin(timeoutMs: number, publish: () => Promise<void>): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const accepted = await publish().then(
      () => true,
      () => false,
    );
    if (accepted || Date.now() > deadline) return accepted;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Everything the stream keeps, oldest first. */
async function kept(answers: ClusterAnswers): Promise<string[]> {
  const read: string[] = [];
  await answers.replay(0, (data) => read.push(data));
  return read;
}

describe("the answers' stream", () => {
  it("refuses a sender past its answers in the cluster (CAPACITY, naming it), and drops none kept, its own or another's", async () => {
    const names = freshStream();
    const answers = await answersOf(names, { perSender: { answers: 3, bytes: 1_000_000 } });
    await answers.publish("cli://victim", "victim-1", "the victim's answer");
    for (let n = 1; n <= 3; n += 1) await answers.publish("cli://flooder", `flood-${n}`, `flood ${n}`);
    const refused = answers.publish("cli://flooder", "flood-4", "flood 4");
    await expect(refused).rejects.toMatchObject({ type: "CAPACITY", details: { sender: "cli://flooder", limit: 3, retryable: true } });
    await expect(refused).rejects.toThrow(/keeps 3 answers of cli:\/\/flooder .* none kept is dropped/);
    // Another node publishes for the same sender into the same share: the cluster's, not the node's.
    const other = await answersOf(names, { perSender: { answers: 3, bytes: 1_000_000 } }, "node-b");
    await expect(other.publish("cli://flooder", "flood-5", "flood 5")).rejects.toMatchObject({ type: "CAPACITY" });
    // Every other sender keeps its room; a second publish of a kept answer is still taken (and kept once).
    await answers.publish("cli://other", "other-1", "another answer");
    await answers.publish("cli://victim", "victim-1", "the victim's answer");
    expect(await kept(answers)).toEqual(["the victim's answer", "flood 1", "flood 2", "flood 3", "another answer"]);
  });

  it("refuses a sender whose answers published through this node hold its bytes, with when to try again, until they age out", async () => {
    const names = freshStream();
    const share = { perSender: { answers: 1_000, bytes: 3_000 }, keepMs: 1_000 };
    const answers = await answersOf(names, share);
    await answers.publish("cli://victim", "victim-1", "the victim's answer");
    const big = "x".repeat(1_000);
    for (let n = 1; n <= 3; n += 1) await answers.publish("cli://flooder", `flood-${n}`, big);
    const refused = answers.publish("cli://flooder", "flood-4", big);
    await expect(refused).rejects.toMatchObject({ type: "CAPACITY", details: { limit: 3_000, retryAfterMs: expect.any(Number) as number } });
    await expect(refused).rejects.toThrow(/cli:\/\/flooder .* hold 3000 bytes, its share of 3000/);
    // A refused answer takes nothing of the share, nor does a duplicate: the victim still has its whole share.
    await answers.publish("cli://victim", "victim-1", "the victim's answer");
    for (let n = 2; n <= 3; n += 1) await answers.publish("cli://victim", `victim-${n}`, big);
    expect((await kept(answers)).filter((data) => data === big)).toHaveLength(5);
    // Once the stream no longer keeps them (a keep time, 1 s here), the flooder has its share again.
    expect(await acceptedWithin(10_000, () => answers.publish("cli://flooder", "flood-again", big))).toBe(true);
  });

  it("refuses any answer once the stream holds its bytes, and drops none it keeps", async () => {
    const names = freshStream();
    const answers = await answersOf(names, { maxBytes: 4_096 });
    const big = "y".repeat(1_000);
    await answers.publish("cli://victim", "victim-1", "the victim's answer");
    const outcomes: string[] = [];
    for (let n = 1; n <= 6; n += 1) {
      outcomes.push(
        await answers.publish(`cli://sender-${n}`, `answer-${n}`, big).then(
          () => "kept",
          (error: unknown) => (error as { type: string }).type,
        ),
      );
    }
    expect(outcomes).toEqual(["kept", "kept", "kept", "CAPACITY", "CAPACITY", "CAPACITY"]);
    await expect(answers.publish("cli://sender-7", "answer-7", big)).rejects.toThrow(/fill their stream ANSWERS_\d+ \(4096 bytes.*none kept is dropped/);
    expect(await kept(answers)).toEqual(["the victim's answer", big, big, big]);
  });

  it("tells every node each sender's answers, whatever characters its id holds", async () => {
    const names = freshStream();
    const [a, b] = [await answersOf(names), await answersOf(names, {}, "node-b")];
    const heard: string[] = [];
    listening.push(b.listen((data) => heard.push(data)));
    await b.replay(0, () => undefined);
    for (const sender of ["cli://one", "cli://two.dots and spaces*>", "ü://ünïcode"]) await a.publish(sender, `${sender}-1`, `from ${sender}`);
    await until(() => heard.length === 3);
    expect(heard).toEqual(["from cli://one", "from cli://two.dots and spaces*>", "from ü://ünïcode"]);
  });

  it("brings a stream an earlier troupe made (one subject, oldest dropped) to a subject per sender and its shares, and replays what it kept", async () => {
    const names = freshStream();
    const earlier = await connection("earlier");
    await earlier.manager.streams.add({
      name: names.stream,
      subjects: [names.subject],
      retention: "limits",
      storage: "file",
      discard: "old",
      max_age: 60_000 * 1_000_000,
      max_bytes: 64 * 1024 * 1024,
    } as never);
    await earlier.jetstream.publish(names.subject, "kept by an earlier troupe", { msgID: "earlier-1" });
    const answers = await answersOf(names, { perSender: { answers: 7, bytes: 1_000_000 } });
    const { config } = await earlier.manager.streams.info(names.stream);
    expect(config).toMatchObject({
      subjects: [`${names.subject}.*`],
      discard: "new",
      discard_new_per_subject: true,
      max_msgs_per_subject: 7,
      max_bytes: 64 * 1024 * 1024,
    });
    await answers.publish("cli://victim", "victim-1", "the victim's answer");
    expect(await kept(answers)).toEqual(["kept by an earlier troupe", "the victim's answer"]);
  });

  it("answers 429 to an agent flooding answers that name no workflow through the bus, and keeps another agent's answer", async () => {
    const names = freshStream();
    const database = await postgres.createDatabase(`answers_${process.pid}`);
    const bus = await startBus({
      store: () => openPostgresStore({ url: database, exclusive: false }),
      cluster: { url: nats.url, nodeId: "node-a", stream: names.stream, subjectPrefix: names.subject, leaseBucket: `answer_leases_${process.pid}` },
    });
    await register(bus, "test://victim", "test://flooder", "test://lead");
    const answer = (from: string, inReplyTo: string, payload: unknown) =>
      envelope(from, "test://lead", { message_type: "task_response", payload, metadata: { in_reply_to: inReplyTo } });
    const victims = answer("test://victim", "request-1", { text: "the victim's answer" });
    expect((await call(bus, "POST", "/messages/send", victims)).status).toBe(202);
    // Answers of 600 KB each, up to more than the whole stream (64 MiB) holds: refused once the flooder holds its share.
    const statuses: number[] = [];
    let refusal: unknown;
    for (let n = 0; n < 120 && refusal === undefined; n += 1) {
      const sent = await call(bus, "POST", "/messages/send", answer("test://flooder", `request-${n}`, { text: "z".repeat(600_000) }));
      statuses.push(sent.status);
      if (sent.status !== 202) refusal = sent.body;
    }
    expect(statuses.at(-1)).toBe(429);
    expect(statuses.filter((status) => status === 202).length).toBeLessThan(20);
    expect(refusal).toMatchObject({ error: { type: "CAPACITY", message: expect.stringMatching(/test:\/\/flooder .* its share/) as string } });
    const keptIds: string[] = [];
    await bus.cluster!.answers.replay(0, (data) => keptIds.push((JSON.parse(data) as { message_id: string }).message_id));
    expect(keptIds[0]).toBe(victims.message_id);
    // The victim still answers.
    expect((await call(bus, "POST", "/messages/send", answer("test://victim", "request-2", { text: "again" }))).status).toBe(202);
  }, 60_000);
});
