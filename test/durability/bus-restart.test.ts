/**
 * The bus across restarts, on a SQLite store in a temporary directory: what a crash (the store frozen as a
 * killed process leaves it) or a graceful stop leaves, and what the next bus on the same directory makes of
 * it: registrations and tokens, queued and unacknowledged messages, each delay of a message resuming with what
 * was left of it, acks that count only once durable, and the XState restore pitfalls, each with its test.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { CommunicationBus, createRuntime, openSqliteStore, type BusOptions, type Runtime, type Store } from "../../src/index.js";
import { messageKey } from "../../src/protocol/envelope.js";
import { call, CLOCK_START, connect, deliveryActorOf, envelope, flush, rawConnect, statusOf, TEST_KEY, until } from "../bus/support.js";
import { ControlledStore } from "../support/controlled-store.js";

const A = "codex://alpha";
const B = "opencode://beta";
const C = "claude-code://gamma";
const ACK_TIMEOUT_MS = 1_000;
const RETRY_DELAY_MS = 1_000;

/** One life of a bus on a data directory. */
interface Life {
  bus: CommunicationBus;
  clock: SimulatedClock;
  store: ControlledStore;
  inner: Store;
  runtime: Runtime | undefined;
}

const lives: Life[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const life of lives.splice(0)) {
    await life.bus.stop();
    await life.runtime?.stop();
    await life.inner.close();
  }
  await Promise.all(dirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "troupe-restart-"));
  dirs.push(dir);
  return dir;
}

/**
 * Starts a bus on the SQLite store of `dir`, its clock at `at`. With `ownRuntime`, the test makes the runtime
 * (to look at its actors) and hands it to the bus.
 */
async function start(dir: string, at: number, options: BusOptions = {}, { ownRuntime = false } = {}): Promise<Life> {
  const inner = await openSqliteStore({ dir });
  const store = new ControlledStore(inner);
  const clock = new SimulatedClock();
  clock.set(at);
  const runtime = ownRuntime ? createRuntime({ store, clock }) : undefined;
  await runtime?.start();
  const bus = new CommunicationBus({
    host: "127.0.0.1",
    port: 0,
    apiKey: TEST_KEY,
    closeGraceMs: 50,
    env: {},
    clock,
    ackTimeout: ACK_TIMEOUT_MS,
    retryDelay: RETRY_DELAY_MS,
    ...(runtime === undefined ? { store } : { runtime }),
    ...options,
  });
  const life: Life = { bus, clock, store, inner, runtime };
  lives.push(life);
  await bus.start();
  return life;
}

/** The process dies now: the store keeps what was committed, and nothing of the bus's own stop. */
async function crash(life: Life): Promise<void> {
  await life.bus.persisted();
  life.store.crash();
  await life.bus.stop();
  await life.runtime?.stop();
  await life.inner.close();
}

/** A graceful stop, then the store is released for the next bus. */
async function stop(life: Life): Promise<void> {
  await life.bus.stop();
  await life.runtime?.stop();
  await life.inner.close();
}

async function registerAll(bus: CommunicationBus, ...agentIds: string[]): Promise<Record<string, string>> {
  const tokens: Record<string, string> = {};
  for (const agentId of agentIds) {
    const answer = await call(bus, "POST", "/agents/register", { agent_id: agentId, metadata: agentId === C ? { acks: false } : {} });
    expect(answer.status).toBe(201);
    tokens[agentId] = answer.body.agent_token;
  }
  return tokens;
}

async function post(bus: CommunicationBus, message: Record<string, unknown>): Promise<void> {
  const answer = await call(bus, "POST", "/messages/send", message);
  expect(answer.status, JSON.stringify(answer.body)).toBe(202);
}

describe("registrations across a restart", () => {
  it("finds every registration and agent token after a crash, each agent offline until it connects", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START, { agentAuth: "token" });
    const tokens = await registerAll(first.bus, A, B);
    await rawConnect(first.bus, A, { "x-agent-api-key": TEST_KEY, "x-agent-token": tokens[A]! });
    await until(() => first.bus.listAgents().some((agent) => agent.agent_id === A && agent.online));
    const before = first.bus.listAgents().filter((agent) => agent.source === "registered");
    await crash(first);

    const second = await start(dir, CLOCK_START + 5_000, { agentAuth: "token" });
    const after = second.bus.listAgents().filter((agent) => agent.source === "registered");
    expect(after.map(({ agent_id, registered_at, online, status }) => ({ agent_id, registered_at, online, status }))).toEqual(
      before.map(({ agent_id, registered_at }) => ({ agent_id, registered_at, online: false, status: "offline" })),
    );
    // The token it had still opens its socket; the key alone does not.
    expect((await call(second.bus, "POST", "/agents/register", { agent_id: A })).status).toBe(403);
    const alpha = await rawConnect(second.bus, A, { "x-agent-api-key": TEST_KEY, "x-agent-token": tokens[A]! });
    await until(() => second.bus.listAgents().some((agent) => agent.agent_id === A && agent.online && agent.status === "ready"));
    alpha.socket.close();
  });

  it("forgets a deregistered agent for good", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    expect((await call(first.bus, "DELETE", `/agents/${encodeURIComponent(B)}`)).status).toBe(200);
    await crash(first);

    const second = await start(dir, CLOCK_START);
    expect(
      second.bus
        .listAgents()
        .filter((agent) => agent.source === "registered")
        .map((agent) => agent.agent_id),
    ).toEqual([A]);
  });
});

describe("messages across a restart", () => {
  it("delivers the messages queued before a crash when their recipient connects, most urgent first and in order within a priority", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    const sent = [
      ["low-1", "low"],
      ["medium-1", "medium"],
      ["high-1", "high"],
      ["critical-1", "critical"],
      ["high-2", "high"],
      ["low-2", "low"],
    ] as const;
    for (const [messageId, priority] of sent) await post(first.bus, envelope(A, B, { message_id: messageId, priority }));
    await crash(first);

    const second = await start(dir, CLOCK_START + 1_000);
    expect(sent.map(([messageId]) => statusOf(second.bus, messageId))).toEqual(sent.map(() => "queued"));
    const beta = await rawConnect(second.bus, B);
    await until(() => beta.frames.length === sent.length);
    expect(beta.frames.map((frame) => frame.message_id)).toEqual(["critical-1", "high-1", "high-2", "medium-1", "low-1", "low-2"]);
    expect(beta.frames[0]).toMatchObject({ sender: { agent_id: A }, recipient: { agent_id: B }, priority: "critical" });
    for (const frame of beta.frames) beta.ack(frame.message_id);
    await until(() => sent.every(([messageId]) => statusOf(second.bus, messageId) === "acknowledged"));
    expect(second.bus.messageStatus("low-2")).toEqual({ message_id: "low-2", sender: A, status: "acknowledged", attempts: 1 });
  });

  it("answers a message sent again with its id after a restart as a duplicate", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    const message = envelope(A, B, { message_id: "once" });
    await post(first.bus, message);
    await crash(first);

    const second = await start(dir, CLOCK_START);
    expect((await call(second.bus, "POST", "/messages/send", message)).body).toEqual({ success: true, message_id: "once", status: "duplicate" });
  });

  it("never delivers a message again once its ack is durable", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    const beta = await rawConnect(first.bus, B);
    await post(first.bus, envelope(A, B, { message_id: "acked" }));
    await until(() => beta.frames.length === 1);
    beta.ack("acked");
    await until(() => statusOf(first.bus, "acked") === "acknowledged");
    await crash(first);

    const second = await start(dir, CLOCK_START + 100);
    const again = await rawConnect(second.bus, B);
    second.clock.increment(ACK_TIMEOUT_MS + 10 * RETRY_DELAY_MS);
    await flush();
    expect(again.frames).toEqual([]);
    expect(second.bus.messageStatus("acked")).toEqual({ message_id: "acked", sender: A, status: "acknowledged", attempts: 1 });
  });

  it("keeps the status records of finished messages, dead ones too, at most maxRetainedMessages of them", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START, { maxRetainedMessages: 2 });
    await registerAll(first.bus, A, B);
    const beta = await rawConnect(first.bus, B);
    for (const messageId of ["r1", "r2"]) await post(first.bus, envelope(A, B, { message_id: messageId }));
    await until(() => beta.frames.length === 2);
    beta.ack("r1");
    beta.ack("r2");
    await until(() => statusOf(first.bus, "r2") === "acknowledged");
    await post(first.bus, envelope(A, B, { message_id: "r3", routing: { timeout: "500ms", retry_policy: { max_retries: 0, backoff: "linear" } } }));
    first.clock.increment(500);
    await until(() => statusOf(first.bus, "r3") === "dead");
    await crash(first);

    const second = await start(dir, CLOCK_START + 1_000, { maxRetainedMessages: 2 });
    expect(statusOf(second.bus, "r1")).toBeUndefined();
    expect(second.bus.messageStatus("r2")).toEqual({ message_id: "r2", sender: A, status: "acknowledged", attempts: 1 });
    expect(second.bus.messageStatus("r3")).toMatchObject({ message_id: "r3", status: "dead", attempts: 1, last_error: expect.stringContaining("500 ms") });
    // A forgotten id is a new message again; a remembered one a duplicate.
    expect((await call(second.bus, "POST", "/messages/send", envelope(A, B, { message_id: "r2" }))).body.status).toBe("duplicate");
    expect((await call(second.bus, "POST", "/messages/send", envelope(A, B, { message_id: "r1" }))).body.status).toBe("accepted");
  });

  it("keeps, at a graceful stop, every message not yet acknowledged as it stood, without failing an attempt", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B, C);
    const beta = await rawConnect(first.bus, B);
    await post(first.bus, envelope(A, B, { message_id: "written" }));
    await until(() => beta.frames.length === 1);
    await post(first.bus, envelope(A, C, { message_id: "waiting" }));
    // A sync sender is gone with the bus that holds its request; its message is not.
    const sync = first.bus.send(envelope(A, C, { message_id: "sync", routing: { delivery_mode: "sync" } })).catch((error: unknown) => error);
    await until(() => statusOf(first.bus, "sync") === "queued");
    await stop(first);
    expect(await sync).toMatchObject({ type: "TRANSPORT", message: "The bus is stopping" });

    const second = await start(dir, CLOCK_START);
    expect(second.bus.messageStatus("written")).toEqual({ message_id: "written", sender: A, status: "delivered", attempts: 1 });
    const gamma = await rawConnect(second.bus, C);
    await until(() => gamma.frames.length === 2);
    expect(gamma.frames.map((frame) => frame.message_id).sort()).toEqual(["sync", "waiting"]);
  });

  it("counts an agent without acks as served once that is durable, and never writes it a message twice", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, C);
    const gamma = await rawConnect(first.bus, C);
    await post(first.bus, envelope(A, C, { message_id: "once" }));
    await until(() => gamma.frames.length === 1);
    expect(first.bus.messageStatus("once").status).toBe("acknowledged");
    await crash(first);

    const second = await start(dir, CLOCK_START);
    const again = await rawConnect(second.bus, C);
    second.clock.increment(10 * ACK_TIMEOUT_MS);
    await flush();
    expect(again.frames).toEqual([]);
  });
});

describe("write before answer", () => {
  it("answers a message's 202 only once the store has committed it", async () => {
    const life = await start(await dataDir(), CLOCK_START);
    await registerAll(life.bus, A, B);
    life.store.holdCommits();
    let answered = false;
    const answer = call(life.bus, "POST", "/messages/send", envelope(A, B, { message_id: "held" })).then((result) => {
      answered = true;
      return result;
    });
    await until(() => statusOf(life.bus, "held") === "queued");
    await flush();
    expect(answered).toBe(false);
    life.store.releaseCommits();
    expect((await answer).status).toBe(202);
  });

  it("counts an ack only once the store has committed it, and writes to an agent without acks only then", async () => {
    const life = await start(await dataDir(), CLOCK_START);
    await registerAll(life.bus, A, B, C);
    const beta = await rawConnect(life.bus, B);
    const gamma = await rawConnect(life.bus, C);
    await post(life.bus, envelope(A, B, { message_id: "to-beta" }));
    await until(() => beta.frames.length === 1);
    life.store.holdCommits();
    beta.ack("to-beta");
    await until(() => statusOf(life.bus, "to-beta") === "acknowledging");
    // An agent without acks gets the message once it counts as acknowledged.
    const sent = life.bus.send(envelope(A, C, { message_id: "to-gamma" }));
    await until(() => statusOf(life.bus, "to-gamma") === "acknowledging");
    await flush();
    expect(statusOf(life.bus, "to-beta")).toBe("acknowledging");
    expect(gamma.frames).toEqual([]);
    life.store.releaseCommits();
    await until(() => statusOf(life.bus, "to-beta") === "acknowledged" && statusOf(life.bus, "to-gamma") === "acknowledged");
    await until(() => gamma.frames.length === 1);
    await sent;
  });
});

describe("each delay of a message resumes with what was left of it", () => {
  it("the message timeout (routing.timeout): the rest of it, counted from its acceptance, downtime included", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    await post(first.bus, envelope(A, B, { message_id: "expiring", routing: { timeout: "10s" } }));
    first.clock.increment(4_000);
    await crash(first);

    // Down for 2 s: 4 s of its 10 s are left.
    const second = await start(dir, CLOCK_START + 6_000);
    const alpha = await connect(second.bus, A);
    second.clock.increment(3_999);
    await flush();
    expect(statusOf(second.bus, "expiring")).toBe("queued");
    second.clock.increment(1);
    await until(() => statusOf(second.bus, "expiring") === "dead");
    expect(second.bus.messageStatus("expiring").last_error).toBe("Not acknowledged within 10000 ms");
    await until(() => alpha.received.length === 1);
    expect(alpha.received[0]).toMatchObject({ message_type: "error", payload: { code: "DELIVERY_FAILED", in_reply_to: "expiring" } });
  });

  it("the retry backoff: the rest of it, then the retry, with the attempts made before the restart", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    const beta = await rawConnect(first.bus, B);
    await post(first.bus, envelope(A, B, { message_id: "backing-off" }));
    await until(() => beta.frames.length === 1);
    first.clock.increment(ACK_TIMEOUT_MS);
    await until(() => statusOf(first.bus, "backing-off") === "retrying");
    // The first retry waits RETRY_DELAY_MS, due at 2,000: crash at 1,300, restart at 1,500, 500 ms left.
    first.clock.increment(300);
    await crash(first);

    const second = await start(dir, CLOCK_START + 1_500);
    expect(second.bus.messageStatus("backing-off")).toMatchObject({ status: "retrying", attempts: 1, last_error: `No ack from ${B} within 1000 ms` });
    const again = await rawConnect(second.bus, B);
    second.clock.increment(499);
    await flush();
    expect(statusOf(second.bus, "backing-off")).toBe("retrying");
    second.clock.increment(1);
    await until(() => again.frames.length === 1);
    expect(second.bus.messageStatus("backing-off")).toMatchObject({ status: "delivered", attempts: 2 });
  });

  it("the ack timeout: the rest of it; an ack meanwhile counts, and a message without one is retried at its end", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    const beta = await rawConnect(first.bus, B);
    await post(first.bus, envelope(A, B, { message_id: "acked-late" }));
    await post(first.bus, envelope(A, B, { message_id: "never-acked" }));
    await until(() => beta.frames.length === 2);
    first.clock.increment(400);
    await crash(first);

    // Written at 0, due at 1,000: restarted at 500, 500 ms are left.
    const second = await start(dir, CLOCK_START + 500);
    expect(second.bus.messageStatus("never-acked")).toEqual({ message_id: "never-acked", sender: A, status: "delivered", attempts: 1 });
    const again = await rawConnect(second.bus, B);
    again.ack("acked-late");
    await until(() => statusOf(second.bus, "acked-late") === "acknowledged");
    second.clock.increment(499);
    await flush();
    expect(statusOf(second.bus, "never-acked")).toBe("delivered");
    expect(again.frames).toEqual([]);
    second.clock.increment(1);
    await until(() => statusOf(second.bus, "never-acked") === "retrying");
    second.clock.increment(RETRY_DELAY_MS);
    await until(() => again.frames.length === 1);
    expect(again.frames[0].message_id).toBe("never-acked");
    expect(statusOf(second.bus, "acked-late")).toBe("acknowledged");
  });

  it("a delay that ran out while the bus was down fires as soon as it starts", async () => {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START);
    await registerAll(first.bus, A, B);
    await post(first.bus, envelope(A, B, { message_id: "expired", routing: { timeout: "2s" } }));
    await crash(first);

    const second = await start(dir, CLOCK_START + 60_000);
    second.clock.increment(0);
    await until(() => statusOf(second.bus, "expired") === "dead");
  });
});

describe("XState restore pitfalls, for deliveries", () => {
  /** A message written to B and not acknowledged, then a crash: the next bus restores its delivery in `delivered`. */
  async function restoredDelivery(): Promise<Life> {
    const dir = await dataDir();
    const first = await start(dir, CLOCK_START, {}, { ownRuntime: true });
    await registerAll(first.bus, A, B);
    const beta = await rawConnect(first.bus, B);
    await post(first.bus, envelope(A, B, { message_id: "restored" }));
    await until(() => beta.frames.length === 1);
    await crash(first);
    return start(dir, CLOCK_START + 200, {}, { ownRuntime: true });
  }

  it("a restored delivery is a running child of the delivery pool: it takes the events sent to it", async () => {
    const { bus, runtime } = await restoredDelivery();
    expect(runtime!.pooledCount("delivery")).toBe(1);
    const child = deliveryActorOf(runtime!, messageKey(A, "restored"))!;
    expect(child.getSnapshot()).toMatchObject({ status: "active", value: "delivered" });
    const beta = await rawConnect(bus, B);
    beta.ack("restored");
    await until(() => statusOf(bus, "restored") === "acknowledged");
    // Its actor waits for the next message, without the restored one.
    expect(child.getSnapshot()).toMatchObject({ status: "active", value: "idle", context: { envelope: null } });
  });

  it("a restored delivery's `after` delays fire: the rest of its ack timeout, then its backoff", async () => {
    const { bus, clock } = await restoredDelivery();
    clock.increment(ACK_TIMEOUT_MS - 200 - 1);
    await flush();
    expect(statusOf(bus, "restored")).toBe("delivered");
    clock.increment(1);
    await until(() => statusOf(bus, "restored") === "retrying");
    clock.increment(RETRY_DELAY_MS);
    await until(() => statusOf(bus, "restored") === "queued");
  });

  it("a restored delivery is found by its system id: by the runtime, by GET /messages/:id and by an ack naming its message_id", async () => {
    const { bus, runtime } = await restoredDelivery();
    const child = deliveryActorOf(runtime!, messageKey(A, "restored"));
    expect(runtime!.pooledChild((child as { systemId?: string } | undefined)?.systemId ?? "")).toBe(child);
    expect(child?.getSnapshot().context).toMatchObject({ messageId: "restored", attempts: 1, targets: [B] });
    expect((await call(bus, "GET", "/messages/restored")).body).toEqual({ message_id: "restored", sender: A, status: "delivered", attempts: 1 });
    const beta = await rawConnect(bus, B);
    beta.ack("restored");
    await until(() => statusOf(bus, "restored") === "acknowledged");
  });
});
