/**
 * The crash test of issue 10, with real processes: `troupe serve --data <tmp>` under a load from several
 * senders over HTTP and WebSocket, with workflow sessions and their task messages, killed with SIGKILL at
 * seeded random moments. After each restart every message that got a 202 (or an `accepted` frame) is
 * delivered, and none is delivered again once its ack was durable (read from the store between the kill and
 * the restart). Receivers are raw sockets that ack every frame, so that each delivery is counted.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { BridgeError, connectAgent, openSqliteStore, type AgentClient } from "../../src/index.js";
import { messageKey } from "../../src/protocol/envelope.js";
import { until } from "../bus/support.js";
import { frameText } from "../../src/protocol/frames.js";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const KEY = "crash-key";
const SEED = 20_261_130;
const KILLS = 6;
/** Messages sent while each server lives (spread over the senders). */
const MESSAGES_PER_LIFE = 700;
/** Sends in flight at once per sender. */
const CONCURRENCY = 6;
const HTTP_SENDERS = ["load://http-1", "load://http-2"];
const WS_SENDERS = ["load://ws-1", "load://ws-2"];
const RECEIVERS = ["load://sink-1", "load://sink-2", "load://sink-3"];
const PRIORITIES = ["low", "medium", "high", "critical"] as const;
/** Short delays, so that a message written before a kill is retried soon after the restart. */
const BUS_CONFIG = { bus: { ackTimeout: 1_000, retryDelay: 100 } };

/** mulberry32: a small seeded generator, so that the kill moments and the load are the same at every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

interface Server {
  child: ChildProcessWithoutNullStreams;
  output: () => string;
  exited: Promise<unknown>;
}

const servers: Server[] = [];
const closers: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  for (const { child, exited } of servers.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  }
});

async function serve(port: number, dir: string, config: string): Promise<Server> {
  const { AGENT_BUS_API_KEY: _key, OPENAI_API_KEY: _openai, ANTHROPIC_API_KEY: _anthropic, GEMINI_API_KEY: _gemini, ...env } = process.env;
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/main.ts", "serve", "--port", String(port), "--host", "127.0.0.1", "--api-key", KEY, "--data", dir, "--config", config],
    { cwd: projectRoot, env },
  );
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const server = { child, output: () => output, exited: once(child, "exit") };
  servers.push(server);
  await until(() => output.includes("troupe listening on") || child.exitCode !== null, 30_000);
  if (!output.includes("troupe listening on")) throw new Error(`troupe serve did not start: ${output}`);
  return server;
}

const headers = { "content-type": "application/json", "x-agent-api-key": KEY };

/** A receiver: a raw socket that acks every message and records each delivery with the life of its server. */
class Receiver {
  /** Deliveries by message key: the life of the server that delivered each. */
  readonly deliveries = new Map<string, number[]>();
  private socket: WebSocket | undefined;
  private stopped = false;

  constructor(
    private readonly url: string,
    private readonly agentId: string,
    private readonly life: () => number,
  ) {
    this.open();
  }

  private open(): void {
    if (this.stopped) return;
    const life = this.life();
    const socket = new WebSocket(`${this.url}/agents/connect?agent_id=${encodeURIComponent(this.agentId)}`, { headers });
    this.socket = socket;
    socket.on("message", (data) => {
      const frame = JSON.parse(frameText(data)) as { message_id: string; message_type?: string; sender?: { agent_id: string } };
      if (frame.message_type === undefined || frame.sender === undefined) return;
      const key = messageKey(frame.sender.agent_id, frame.message_id);
      this.deliveries.set(key, [...(this.deliveries.get(key) ?? []), life]);
      socket.send(JSON.stringify({ type: "ack", message_id: frame.message_id }));
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      if (!this.stopped) setTimeout(() => this.open(), 50);
    });
  }

  close(): void {
    this.stopped = true;
    this.socket?.terminate();
  }
}

describe("troupe serve killed with SIGKILL under load", () => {
  it("delivers every message it answered 202 or accepted after each restart, and none again once its ack was durable", { timeout: 180_000 }, async () => {
    const random = seeded(SEED);
    const dir = await mkdtemp(join(tmpdir(), "troupe-crash-"));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    const config = join(dir, "troupe.json");
    await writeFile(config, JSON.stringify(BUS_CONFIG));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    let life = 0;
    let server = await serve(port, join(dir, "data"), config);

    for (const agentId of [...HTTP_SENDERS, ...WS_SENDERS, ...RECEIVERS]) {
      const answer = await fetch(`${url}/agents/register`, { method: "POST", headers, body: JSON.stringify({ agent_id: agentId }) });
      expect(answer.status).toBe(201);
    }
    const receivers = RECEIVERS.map((agentId) => new Receiver(url.replace("http", "ws"), agentId, () => life));
    closers.push(() => receivers.forEach((receiver) => receiver.close()));
    const wsSenders = new Map<string, AgentClient>(
      WS_SENDERS.map((agentId) => [
        agentId,
        connectAgent({ url, agentId, apiKey: KEY, register: {}, onMessage: () => {}, reconnect: { initialDelayMs: 50, maxDelayMs: 200 } }),
      ]),
    );
    closers.push(() => Promise.all([...wsSenders.values()].map((client) => client.close())).then(() => undefined));

    /** Keys of the messages the bus answered 202 or `accepted`, with the life they were accepted in. */
    const accepted = new Map<string, number>();
    /** Keys whose ack was durable when the server was killed, with the life that kill ended. */
    const ackedBy = new Map<string, number>();
    let sent = 0;
    let workflowTasks = 0;
    /** The task messages each workflow session was sent and accepted: its record must hold every one. */
    const acceptedTasks = new Map<string, string[]>();
    /** Sends of the current life answered. */
    let answered = 0;
    /** Sends the bus refused (none should be), and sends the kill left without an answer. */
    const refused: string[] = [];
    let unanswered = 0;

    /** A workflow session of this life, with every agent in it: some messages are its tasks. */
    async function createWorkflow(): Promise<string> {
      const participants = [...HTTP_SENDERS.slice(1), ...WS_SENDERS, ...RECEIVERS].map((agent_id) => ({ agent_id, role: "worker" }));
      const answer = await fetch(`${url}/sessions`, {
        method: "POST",
        headers,
        body: JSON.stringify({ initiator: HTTP_SENDERS[0], participants, steps: [{ name: "work", required_agents: [RECEIVERS[0]] }] }),
      });
      expect(answer.status).toBe(201);
      const { session_id: sessionId } = (await answer.json()) as { session_id: string };
      acceptedTasks.set(sessionId, []);
      return sessionId;
    }

    /** Sends this life's share of the load; resolves when every send is answered or failed (the server died). */
    async function load(sessionId: string): Promise<void> {
      const senders = [...HTTP_SENDERS, ...WS_SENDERS];
      const plan = Array.from({ length: MESSAGES_PER_LIFE }, (_, index) => ({
        sender: senders[index % senders.length]!,
        messageId: `m-${life}-${index}`,
        recipient: RECEIVERS[Math.floor(random() * RECEIVERS.length)]!,
        priority: PRIORITIES[Math.floor(random() * PRIORITIES.length)]!,
        task: random() < 0.2,
      }));
      const sendOne = async ({ sender, messageId, recipient, priority, task }: (typeof plan)[number]): Promise<void> => {
        sent += 1;
        if (task) workflowTasks += 1;
        const body = {
          message_id: messageId,
          timestamp: new Date().toISOString(),
          sender: { agent_id: sender, framework: "load", ...(task ? { session_id: sessionId } : {}) },
          recipient: { agent_id: recipient, framework: "load" },
          message_type: task ? ("task_request" as const) : ("status_update" as const),
          priority,
          payload: { life, text: "x".repeat(200) },
          ...(task ? { metadata: { task_id: messageId } } : {}),
        };
        const client = wsSenders.get(sender);
        try {
          if (client === undefined) {
            const answer = await fetch(`${url}/messages/send`, { method: "POST", headers, body: JSON.stringify(body) });
            const text = await answer.text();
            if (answer.status === 202) {
              accepted.set(messageKey(sender, messageId), life);
              if (task) acceptedTasks.get(sessionId)?.push(messageId);
            } else refused.push(`${messageId}: HTTP ${answer.status} ${text}`);
          } else {
            const { sender: _sender, recipient: _recipient, ...rest } = body;
            await client.send({ ...rest, recipient, ...(task ? { session_id: sessionId } : {}) });
            accepted.set(messageKey(sender, messageId), life);
            if (task) acceptedTasks.get(sessionId)?.push(messageId);
          }
          answered += 1;
        } catch (error) {
          // The server died before it answered (TRANSPORT, or fetch failing): the sender does not know.
          if (error instanceof BridgeError && error.type !== "TRANSPORT") refused.push(`${messageId}: ${error.message}`);
          else unanswered += 1;
        }
      };
      const lanes = Array.from({ length: senders.length * CONCURRENCY }, (_, lane) => lane);
      await Promise.all(
        lanes.map(async (lane) => {
          for (let index = lane; index < plan.length; index += lanes.length) await sendOne(plan[index]!);
        }),
      );
    }

    /** Every message accepted before this life is delivered (the ones of this life may still be on their way). */
    const deliveredSoFar = (before: number): boolean =>
      [...accepted].every(([key, acceptedIn]) => acceptedIn >= before || receivers.some((receiver) => receiver.deliveries.has(key)));

    for (let kill = 0; kill < KILLS; kill += 1) {
      await Promise.all([...wsSenders.values()].map((client) => until(() => client.connected, 20_000)));
      const sessionId = await createWorkflow();
      answered = 0;
      const loading = load(sessionId);
      await until(() => deliveredSoFar(life), 30_000);
      // A random moment in the load: once 20 to 90 % of this life's sends are answered, plus up to 20 ms.
      const killAfter = Math.floor((0.2 + 0.7 * random()) * MESSAGES_PER_LIFE);
      await until(() => answered >= killAfter, 30_000);
      await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 20)));
      server.child.kill("SIGKILL");
      await server.exited;
      await loading;
      // What the store holds now is what survived: the acks in it were durable.
      const store = await openSqliteStore({ dir: join(dir, "data") });
      for (const { id, value } of await store.list("message_status")) {
        if ((value as { status: string }).status === "acknowledged" && !ackedBy.has(id)) ackedBy.set(id, life);
      }
      await store.close();
      life += 1;
      server = await serve(port, join(dir, "data"), config);
      // Every workflow came back, and its record holds every task the bus accepted for it (an accepted task is
      // durable with its workflow's change before its 202).
      for (const [sessionId, taskIds] of acceptedTasks) {
        const answer = await fetch(`${url}/sessions/${sessionId}`, { headers });
        expect(answer.status, sessionId).toBe(200);
        const { tasks } = (await answer.json()) as { tasks: Array<{ message_id: string }> };
        const recorded = new Set(tasks.map((task) => task.message_id));
        expect(
          taskIds.filter((taskId) => !recorded.has(taskId)),
          sessionId,
        ).toEqual([]);
      }
    }

    await until(() => deliveredSoFar(life + 1), 30_000);
    server.child.kill("SIGTERM");
    await server.exited;
    expect(server.child.exitCode).toBe(0);

    let deliveries = 0;
    let uniqueDelivered = 0;
    let duplicatesAfterAck = 0;
    let duplicatesBeforeAck = 0;
    for (const receiver of receivers) {
      for (const [key, lives] of receiver.deliveries) {
        deliveries += lives.length;
        uniqueDelivered += 1;
        const ackedIn = ackedBy.get(key);
        const afterAck = ackedIn === undefined ? 0 : lives.filter((deliveredIn) => deliveredIn > ackedIn).length;
        duplicatesAfterAck += afterAck;
        duplicatesBeforeAck += lives.length - 1 - afterAck;
      }
    }
    const figures = {
      kills: KILLS,
      sent,
      workflowTasks,
      workflows: acceptedTasks.size,
      acceptedTasks: [...acceptedTasks.values()].flat().length,
      accepted: accepted.size,
      unanswered,
      uniqueDelivered,
      deliveries,
      duplicatesAfterAck,
      duplicatesBeforeAck,
    };
    process.stdout.write(`crash test: ${JSON.stringify(figures)}\n`);
    expect(refused).toEqual([]);
    expect(accepted.size).toBeGreaterThan(KILLS * MESSAGES_PER_LIFE * 0.3);
    expect(ackedBy.size).toBeGreaterThan(0);
    expect(duplicatesAfterAck).toBe(0);
  });
});
