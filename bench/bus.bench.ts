/**
 * Messages per second through the communication bus, on loopback, with the load in a second process (the
 * bus in this one), as the `ws` and `node:http` baselines of PROVIDER-NOTES.md were measured:
 *
 * - `ws → bus → ws`: one agent sends envelopes over its socket with a window of in-flight sends; another
 *   agent receives and acknowledges each. A message counts when the recipient has acknowledged it.
 * - `HTTP → bus → ws`: keep-alive clients POST `/messages/send` (202), an agent receives and acknowledges.
 *
 * Every message is a delivery actor; payloads are ~1 KB. Each path runs on a bus with the memory store and on
 * one with the SQLite store (`persistenceEnabled`, in a temporary directory), in the same run: the cost of
 * durability (every message written before its 202, every ack before it counts). Run alone:
 * `node --import tsx bench/bus.bench.ts`.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { Agent as HttpAgent, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { CommunicationBus, connectAgent, type AgentClient, type BusOptions } from "../src/index.js";
import { fullOrQuick } from "./measure.js";

const API_KEY = "bench-key";
const SENDER = "bench://sender";
const RECIPIENT = "bench://recipient";
/** Messages per run, after a warm-up run of a tenth of that. */
const MESSAGES = fullOrQuick(20_000, 500);
/** Sends in flight at once from the sending agent (the `ws` baseline's window). */
const WINDOW = 100;
/** Concurrent keep-alive HTTP clients (the `node:http` baseline's). */
const HTTP_CLIENTS = 50;
const PAYLOAD = { text: "x".repeat(900) };

/** Where the bus keeps its messages. */
export type BusStoreKind = "memory" | "sqlite";

/** One measured run. */
export interface BusThroughput {
  path: "ws → bus → ws" | "HTTP → bus → ws";
  store: BusStoreKind;
  messages: number;
  seconds: number;
  messagesPerSecond: number;
  /** CPU time of the bus's process (user + system) per message: less sensitive than wall time to a busy machine. */
  cpuMicrosPerMessage: number;
  /** Accepted to acknowledged, from the bus's own metrics. */
  latencyMs: { p50: number; p99: number };
}

type Command = { run: "ws" | "http"; url: string; messages: number; offset: number } | { subscribers: number; url: string };

function envelopeOf(index: number): Record<string, unknown> {
  return {
    message_id: `bench-${index}`,
    timestamp: new Date().toISOString(),
    sender: { agent_id: SENDER, framework: "bench" },
    recipient: { agent_id: RECIPIENT, framework: "bench" },
    message_type: "task_request",
    priority: "medium",
    payload: PAYLOAD,
  };
}

// ---- the load generator (child process) ----

async function sendOverWebSocket(client: AgentClient, messages: number, offset: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < messages) {
      const index = offset + next;
      next += 1;
      await client.send({ message_id: `bench-${index}`, recipient: RECIPIENT, message_type: "task_request", priority: "medium", payload: PAYLOAD });
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
}

async function sendOverHttp(url: string, messages: number, offset: number): Promise<void> {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: HTTP_CLIENTS });
  const target = new URL("/messages/send", url);
  let next = 0;
  const post = (body: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request(target, { method: "POST", agent, headers: { "content-type": "application/json", "x-agent-api-key": API_KEY, "content-length": Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on("end", () => (res.statusCode === 202 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
      });
      req.on("error", reject);
      req.end(body);
    });
  const worker = async (): Promise<void> => {
    while (next < messages) {
      const index = offset + next;
      next += 1;
      await post(JSON.stringify(envelopeOf(index)));
    }
  };
  await Promise.all(Array.from({ length: HTTP_CLIENTS }, worker));
  agent.destroy();
}

/** Subscribers of every event of a bus: they count frames and parse none, as a forwarding proxy would. */
async function setSubscribers(sockets: WebSocket[], url: string, count: number): Promise<void> {
  while (sockets.length > count) {
    const socket = sockets.pop();
    socket?.close();
    if (socket !== undefined) await once(socket, "close");
  }
  while (sockets.length < count) {
    const socket = new WebSocket(`${url.replace("http", "ws")}/events`, { headers: { "x-agent-api-key": API_KEY } });
    socket.on("message", () => {});
    await once(socket, "open");
    sockets.push(socket);
  }
}

async function loadGenerator(): Promise<void> {
  /** The sending and the receiving agent of each bus, by its URL. */
  const agents = new Map<string, { sender: AgentClient; recipient: AgentClient }>();
  const subscribers = new Map<string, WebSocket[]>();
  process.on("message", (command: Command) => {
    void (async () => {
      if ("subscribers" in command) {
        const sockets = subscribers.get(command.url) ?? [];
        subscribers.set(command.url, sockets);
        await setSubscribers(sockets, command.url, command.subscribers);
        process.send?.({ sent: 0 });
        return;
      }
      let pair = agents.get(command.url);
      if (pair === undefined) {
        pair = {
          recipient: connectAgent({ url: command.url, agentId: RECIPIENT, apiKey: API_KEY, onMessage: () => {} }),
          sender: connectAgent({ url: command.url, agentId: SENDER, apiKey: API_KEY, onMessage: () => {} }),
        };
        agents.set(command.url, pair);
        await Promise.all([pair.recipient.ready(), pair.sender.ready()]);
      }
      if (command.run === "ws") await sendOverWebSocket(pair.sender, command.messages, command.offset);
      else await sendOverHttp(command.url, command.messages, command.offset);
      process.send?.({ sent: command.messages });
    })().catch((error: unknown) => {
      process.send?.({ error: String(error) });
    });
  });
  process.on("disconnect", () => {
    for (const sockets of subscribers.values()) for (const socket of sockets) socket.terminate();
    void Promise.all([...agents.values()].flatMap(({ sender, recipient }) => [sender.close(), recipient.close()])).then(() => process.exit(0));
  });
}

// ---- the bus (this process) ----

async function waitForAcknowledged(bus: CommunicationBus, total: number): Promise<void> {
  while (bus.metricsSnapshot().messages.acknowledged_total < total) await new Promise((resolve) => setTimeout(resolve, 1));
}

async function command(child: ChildProcess, message: Command): Promise<void> {
  child.send(message);
  const [answer] = (await once(child, "message")) as [{ sent?: number; error?: string }];
  if (answer.error !== undefined) throw new Error(answer.error);
}

async function startBenchBus(dataDir: string | undefined, options: BusOptions = {}): Promise<CommunicationBus> {
  const bus = new CommunicationBus({
    port: 0,
    host: "127.0.0.1",
    apiKey: API_KEY,
    maxRetainedMessages: 10_000,
    maxQueuedPerAgent: 100_000,
    // The per-client request rate is a policy, not a cost of the bus: it is off here (one client sends everything).
    requestsPerSecondPerClient: 0,
    env: {},
    ...(dataDir === undefined ? {} : { persistenceEnabled: true, dataDir }),
    ...options,
  });
  await bus.start();
  bus.registerAgent({ agent_id: SENDER });
  bus.registerAgent({ agent_id: RECIPIENT });
  await bus.persisted();
  return bus;
}

/** Runs both paths, each on the memory store then on SQLite, and returns their throughput. */
export async function runBusBench(): Promise<BusThroughput[]> {
  const dataDir = await mkdtemp(join(tmpdir(), "troupe-bench-bus-"));
  const buses: Record<BusStoreKind, CommunicationBus> = { memory: await startBenchBus(undefined), sqlite: await startBenchBus(dataDir) };
  const child = fork(fileURLToPath(import.meta.url), ["--load"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const results: BusThroughput[] = [];
  let offset = 0;
  try {
    for (const [run, path] of [
      ["ws", "ws → bus → ws"],
      ["http", "HTTP → bus → ws"],
    ] as const) {
      for (const store of ["memory", "sqlite"] as const) {
        const bus = buses[store];
        for (const [messages, measured] of [
          [MESSAGES / 10, false],
          [MESSAGES, true],
        ] as const) {
          const before = bus.metricsSnapshot().messages.acknowledged_total;
          const startedAt = performance.now();
          const cpuBefore = process.cpuUsage();
          await command(child, { run, url: bus.url, messages, offset });
          await waitForAcknowledged(bus, before + messages);
          const seconds = (performance.now() - startedAt) / 1000;
          const cpu = process.cpuUsage(cpuBefore);
          offset += messages;
          if (!measured) continue;
          const latency = bus.metricsSnapshot().latency_ms.accepted_to_acknowledged;
          results.push({
            path,
            store,
            messages,
            seconds,
            messagesPerSecond: messages / seconds,
            cpuMicrosPerMessage: (cpu.user + cpu.system) / messages,
            latencyMs: { p50: latency.p50, p99: latency.p99 },
          });
        }
      }
    }
  } finally {
    child.disconnect();
    await once(child, "exit");
    await Promise.all(Object.values(buses).map((bus) => bus.stop()));
    await rm(dataDir, { recursive: true, force: true });
  }
  return results;
}

/** SQLite throughput ÷ memory throughput, per path. */
export function durabilityRatios(results: BusThroughput[]): Array<{ path: BusThroughput["path"]; ratio: number }> {
  return [...new Set(results.map((run) => run.path))].flatMap((path) => {
    const memory = results.find((run) => run.path === path && run.store === "memory");
    const sqlite = results.find((run) => run.path === path && run.store === "sqlite");
    return memory === undefined || sqlite === undefined ? [] : [{ path, ratio: sqlite.messagesPerSecond / memory.messagesPerSecond }];
  });
}

/** What the event stream costs the `ws → bus → ws` path in one configuration. */
export interface EventStreamCost {
  setup: "nothing built for the stream" | "ring buffer recording" | `${number} subscribers`;
  subscribers: number;
  /** Median over the rounds. */
  messagesPerSecond: number;
  /** CPU time of the bus's process per message (user + system), median over the rounds: steadier than the rate on a busy machine. */
  cpuMicrosPerMessage: number;
  /** `messagesPerSecond` over the first setup's. */
  throughputRatio: number;
}

/** Event stream runs: messages per run, rounds (each setup once per round, in turn). */
const EVENT_RUN_MESSAGES = fullOrQuick(10_000, 300);
const EVENT_ROUNDS = fullOrQuick(3, 1);
const EVENT_SUBSCRIBERS = 10;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/**
 * The `ws → bus → ws` path on a bus whose stream builds nothing (`eventBuffer: "watched"`, nobody subscribes),
 * on one whose ring buffer records every event (`"always"`), and on that one with
 * `EVENT_SUBSCRIBERS` subscribers of every event; the setups take turns, round after round.
 */
export async function runEventStreamBench(): Promise<EventStreamCost[]> {
  const quiet = await startBenchBus(undefined, { eventBuffer: "watched" });
  const recording = await startBenchBus(undefined, { eventBuffer: "always" });
  const child = fork(fileURLToPath(import.meta.url), ["--load"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const setups = [
    { setup: "nothing built for the stream", bus: quiet, subscribers: 0 },
    { setup: "ring buffer recording", bus: recording, subscribers: 0 },
    { setup: `${EVENT_SUBSCRIBERS} subscribers`, bus: recording, subscribers: EVENT_SUBSCRIBERS },
  ] as const;
  const rates = setups.map((): number[] => []);
  const cpu = setups.map((): number[] => []);
  let offset = 0;
  try {
    for (let round = -1; round < EVENT_ROUNDS; round += 1) {
      for (const [index, { bus, subscribers }] of setups.entries()) {
        await command(child, { subscribers, url: bus.url });
        // Round -1 warms every setup up (the JIT, the sockets), and is not counted.
        const messages = round < 0 ? EVENT_RUN_MESSAGES / 10 : EVENT_RUN_MESSAGES;
        const before = bus.metricsSnapshot().messages.acknowledged_total;
        const cpuBefore = process.cpuUsage();
        const startedAt = performance.now();
        await command(child, { run: "ws", url: bus.url, messages, offset });
        await waitForAcknowledged(bus, before + messages);
        const seconds = (performance.now() - startedAt) / 1000;
        const used = process.cpuUsage(cpuBefore);
        offset += messages;
        if (round < 0) continue;
        rates[index]?.push(messages / seconds);
        cpu[index]?.push((used.user + used.system) / messages);
      }
    }
  } finally {
    child.disconnect();
    await once(child, "exit");
    await Promise.all([quiet.stop(), recording.stop()]);
  }
  const baseline = median(rates[0] ?? []);
  return setups.map(({ setup, subscribers }, index) => {
    const messagesPerSecond = median(rates[index] ?? []);
    return { setup, subscribers, messagesPerSecond, cpuMicrosPerMessage: median(cpu[index] ?? []), throughputRatio: messagesPerSecond / baseline };
  });
}

if (process.argv.includes("--load")) {
  await loadGenerator();
} else if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes("--events")) {
  for (const cost of await runEventStreamBench()) {
    process.stdout.write(
      `${cost.setup.padEnd(30)} ${Math.round(cost.messagesPerSecond).toLocaleString("en-US").padStart(7)} msgs/s ` +
        `(${cost.throughputRatio.toFixed(2)} ×), bus CPU ${cost.cpuMicrosPerMessage.toFixed(0)} µs/message\n`,
    );
  }
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const results = await runBusBench();
  for (const result of results) {
    process.stdout.write(
      `${result.path.padEnd(16)} ${result.store.padEnd(7)} ${Math.round(result.messagesPerSecond).toLocaleString("en-US").padStart(7)} msgs/s ` +
        `${result.cpuMicrosPerMessage.toFixed(0).padStart(4)} µs CPU/msg ` +
        `(${result.messages.toLocaleString("en-US")} in ${result.seconds.toFixed(2)} s; accepted → acknowledged p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms)\n`,
    );
  }
  for (const { path, ratio } of durabilityRatios(results)) process.stdout.write(`${path}: SQLite ÷ memory ${ratio.toFixed(2)}\n`);
}
