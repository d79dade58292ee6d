/**
 * Messages per second through the communication bus, on loopback, with the load in a second process (the
 * servers in this one), beside the raw transports in the same conditions (issue 13: the bus ≥ 0.8 × each):
 *
 * - `ws → bus → ws`: one agent sends envelopes over its socket with a window of `WINDOW` sends waiting for
 *   the bus's answer (`?control=1`: `accepted`); another agent receives and acknowledges each. A message
 *   counts when the bus has taken its recipient's ack. Baseline, **raw `ws`**: a `ws` server that writes each
 *   frame of the sender to the recipient and answers the sender with a fixed `accepted` frame, and counts the
 *   recipient's ack frames; it parses nothing.
 * - `HTTP → bus → ws`: `HTTP_CLIENTS` keep-alive clients POST `/messages/send` (202); an agent receives and
 *   acknowledges. Baseline, **raw `node:http`**: a `node:http` server that writes each POST body to the
 *   recipient's `ws` socket and answers 202 with a fixed body.
 *
 * The clients are the same for the raw servers and the bus (thin `ws` and `node:http` clients that stringify
 * the envelope and parse what they receive), so the ratio is the servers' alone. Every message through the
 * bus is a delivery actor; payloads are ~1 KB. The bus runs with the memory store and with the SQLite store
 * (`persistenceEnabled`, in a temporary directory): the cost of durability (every message written before
 * its 202, every ack before it counts). The setups take turns, round after round, and each figure is the
 * median over the rounds (with the range): load from other processes falls on each alike.
 *
 * Run alone: `node --import tsx bench/bus.bench.ts` (`--events` for the event stream's cost; `--only
 * <path>:<setup>` with `--rounds N` to load one setup, e.g. under `node --cpu-prof`; `--window N` runs the
 * buses with `maxInFlightPerAgent: N` instead of the default 100).
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { Agent as HttpAgent, createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket, WebSocketServer } from "ws";
import { CommunicationBus, type BusOptions } from "../src/index.js";
import { fullOrQuick } from "./measure.js";
import { frameText } from "../src/protocol/frames.js";

const API_KEY = "bench-key";
const SENDER = "bench://sender";
const RECIPIENT = "bench://recipient";
/** Messages per measured round of one setup; the warm-up round sends a tenth. */
const ROUND_MESSAGES = fullOrQuick(10_000, 300);
/** Measured rounds: each setup once per round, in turn. */
const ROUNDS = fullOrQuick(3, 1);
/** Sends in flight at once from the sending agent. */
const WINDOW = 100;
/** Concurrent keep-alive HTTP clients. */
const HTTP_CLIENTS = 50;
const PAYLOAD = { text: "x".repeat(900) };
/** What the raw servers answer: the size of the bus's answers. */
const RAW_ACCEPTED = JSON.stringify({ type: "accepted", message_id: "bench-0000000", status: "accepted" });
const RAW_ACCEPTED_HTTP = JSON.stringify({ success: true, message_id: "bench-0000000", status: "accepted" });

/** The two paths. */
export type BusPath = "ws → bus → ws" | "HTTP → bus → ws";
/** Who serves a path: the raw transport alone, or the bus with one of its stores. */
export type BusSetup = "raw" | "memory" | "sqlite";

/** The targets: the bus ≥ 0.8 × the raw transport; SQLite ≥ 0.5 × memory (docs/durability.md). */
export const BUS_TARGETS = { busOverRaw: 0.8, sqliteOverMemory: 0.5, eventSubscribers: 0.8 } as const;

/** One setup of one path, over the rounds. */
export interface BusThroughput {
  path: BusPath;
  setup: BusSetup;
  /** What served it, for people: `raw ws`, `raw node:http`, `bus, memory store`, `bus, SQLite store`. */
  server: string;
  /** Messages per measured round. */
  messages: number;
  rounds: number;
  /** Median over the rounds, and the range. */
  messagesPerSecond: number;
  messagesPerSecondRange: [number, number];
  /** CPU time of the serving process (user + system) per message, median over the rounds. */
  cpuMicrosPerMessage: number;
  /** Sent (the load's clock) to received by the recipient (same process), medians over the rounds of each round's percentile. */
  latencyMs: { p50: number; p99: number };
  /** This setup's rate over the raw transport's of the same path (medians). */
  ratioToRaw: number;
}

type LoadTarget = { id: string; senderUrl: string; recipientUrl: string; httpUrl: string };
type Command = { connect: LoadTarget } | { run: "ws" | "http"; target: string; messages: number; offset: number } | { subscribers: number; url: string };
type Done = { done: true; latencyMs?: { p50: number; p99: number } };
type Answer = Done | { error: string };

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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))] ?? 0;
}

// ---- the load generator (child process) ----

/** The sockets of one server: the sending agent's, the receiving agent's, and what the recipient was sent. */
interface LoadPair {
  sender: WebSocket;
  recipient: WebSocket;
  httpUrl: string;
  /** Send time (ms, the load's clock) of each message not yet received. */
  sentAt: Map<string, number>;
  /** Sent to received, of the current run. */
  latencies: number[];
  /** Messages of the current run the recipient has yet to receive, and what to call when it has them all. */
  awaited: number;
  onAllReceived: (() => void) | undefined;
}

async function openSocket(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url, { headers: { "x-agent-api-key": API_KEY }, perMessageDeflate: false });
  await once(socket, "open");
  return socket;
}

async function connectPair(target: LoadTarget): Promise<LoadPair> {
  const recipient = await openSocket(target.recipientUrl);
  const sender = await openSocket(target.senderUrl);
  const pair: LoadPair = { sender, recipient, httpUrl: target.httpUrl, sentAt: new Map(), latencies: [], awaited: 0, onAllReceived: undefined };
  // The recipient parses each frame and acknowledges it by its id, as every agent does.
  recipient.on("message", (data) => {
    const envelope = JSON.parse(frameText(data)) as { message_id: string };
    recipient.send(JSON.stringify({ type: "ack", message_id: envelope.message_id }));
    const sentAt = pair.sentAt.get(envelope.message_id);
    if (sentAt === undefined) return;
    pair.sentAt.delete(envelope.message_id);
    pair.latencies.push(performance.now() - sentAt);
    pair.awaited -= 1;
    if (pair.awaited === 0) pair.onAllReceived?.();
  });
  return pair;
}

/** Sends over the sender's socket, `WINDOW` waiting for their answer at once. */
function sendOverWebSocket(pair: LoadPair, messages: number, offset: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let next = 0;
    let answered = 0;
    const pump = (): void => {
      while (next < messages && next - answered < WINDOW) {
        const index = offset + next;
        next += 1;
        pair.sentAt.set(`bench-${index}`, performance.now());
        pair.sender.send(JSON.stringify(envelopeOf(index)));
      }
    };
    const onAnswer = (data: Buffer): void => {
      const answer = JSON.parse(frameText(data)) as { type: string; error?: unknown };
      if (answer.type !== "accepted") {
        pair.sender.off("message", onAnswer);
        reject(new Error(`rejected: ${JSON.stringify(answer.error)}`));
        return;
      }
      answered += 1;
      if (answered === messages) {
        pair.sender.off("message", onAnswer);
        resolve();
        return;
      }
      pump();
    };
    pair.sender.on("message", onAnswer);
    pump();
  });
}

async function sendOverHttp(pair: LoadPair, messages: number, offset: number): Promise<void> {
  const agent = new HttpAgent({ keepAlive: true, maxSockets: HTTP_CLIENTS });
  const target = new URL("/messages/send", pair.httpUrl);
  let next = 0;
  const post = (body: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request(
        target,
        { method: "POST", agent, headers: { "content-type": "application/json", "x-agent-api-key": API_KEY, "content-length": Buffer.byteLength(body) } },
        (res) => {
          res.resume();
          res.on("end", () => (res.statusCode === 202 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on("error", reject);
      req.end(body);
    });
  const worker = async (): Promise<void> => {
    while (next < messages) {
      const index = offset + next;
      next += 1;
      pair.sentAt.set(`bench-${index}`, performance.now());
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
    const socket = await openSocket(`${url.replace("http", "ws")}/events`);
    socket.on("message", () => {});
    sockets.push(socket);
  }
}

async function runLoad(pair: LoadPair, run: "ws" | "http", messages: number, offset: number): Promise<{ p50: number; p99: number }> {
  pair.latencies = [];
  pair.awaited = messages;
  const allReceived = new Promise<void>((resolve) => {
    pair.onAllReceived = resolve;
  });
  if (run === "ws") await sendOverWebSocket(pair, messages, offset);
  else await sendOverHttp(pair, messages, offset);
  await allReceived;
  pair.onAllReceived = undefined;
  const sorted = pair.latencies.sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

function loadGenerator(): void {
  const pairs = new Map<string, LoadPair>();
  const subscribers = new Map<string, WebSocket[]>();
  process.on("message", (command: Command) => {
    void (async (): Promise<Answer> => {
      if ("connect" in command) {
        pairs.set(command.connect.id, await connectPair(command.connect));
        return { done: true };
      }
      if ("subscribers" in command) {
        const sockets = subscribers.get(command.url) ?? [];
        subscribers.set(command.url, sockets);
        await setSubscribers(sockets, command.url, command.subscribers);
        return { done: true };
      }
      const pair = pairs.get(command.target);
      if (pair === undefined) throw new Error(`not connected: ${command.target}`);
      return { done: true, latencyMs: await runLoad(pair, command.run, command.messages, command.offset) };
    })().then(
      (answer) => process.send?.(answer),
      (error: unknown) => process.send?.({ error: String(error) } satisfies Answer),
    );
  });
  process.on("disconnect", () => {
    for (const sockets of subscribers.values()) for (const socket of sockets) socket.terminate();
    for (const { sender, recipient } of pairs.values()) {
      sender.terminate();
      recipient.terminate();
    }
    process.exit(0);
  });
}

// ---- the servers (this process) ----

/** A server under load: where the load connects, and how many acks it has taken. */
interface Served {
  target: LoadTarget;
  acknowledged(): number;
  stop(): Promise<void>;
}

/** The raw baseline: a `ws` and `node:http` server that relays without parsing, as described above. */
async function startRawServer(id: string): Promise<Served> {
  let recipient: WebSocket | undefined;
  let acknowledged = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      recipient?.send(Buffer.concat(chunks), { binary: false });
      res.writeHead(202, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(RAW_ACCEPTED_HTTP) });
      res.end(RAW_ACCEPTED_HTTP);
    });
  });
  const sockets = new WebSocketServer({ server, perMessageDeflate: false });
  sockets.on("connection", (socket, req) => {
    if (req.url?.includes("role=recipient") === true) {
      recipient = socket;
      socket.on("message", () => {
        acknowledged += 1;
      });
      return;
    }
    socket.on("message", (data: Buffer) => {
      recipient?.send(data, { binary: false });
      socket.send(RAW_ACCEPTED);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    target: { id, senderUrl: `${url.replace("http", "ws")}/?role=sender`, recipientUrl: `${url.replace("http", "ws")}/?role=recipient`, httpUrl: url },
    acknowledged: () => acknowledged,
    stop: async () => {
      for (const socket of sockets.clients) socket.terminate();
      sockets.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function startBenchBus(id: string, dataDir: string | undefined, options: BusOptions = {}): Promise<Served & { bus: CommunicationBus }> {
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
  const ws = bus.url.replace("http", "ws");
  return {
    bus,
    target: {
      id,
      senderUrl: `${ws}/agents/connect?agent_id=${encodeURIComponent(SENDER)}&control=1`,
      recipientUrl: `${ws}/agents/connect?agent_id=${encodeURIComponent(RECIPIENT)}`,
      httpUrl: bus.url,
    },
    acknowledged: () => bus.metricsSnapshot().messages.acknowledged_total,
    stop: () => bus.stop(),
  };
}

async function command(child: ChildProcess, message: Command): Promise<Done> {
  child.send(message);
  const [answer] = (await once(child, "message")) as [Answer];
  if ("error" in answer) throw new Error(answer.error);
  return answer;
}

function startLoad(): ChildProcess {
  return fork(fileURLToPath(import.meta.url), ["--load"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
}

async function stopLoad(child: ChildProcess): Promise<void> {
  child.disconnect();
  if (child.exitCode === null) await once(child, "exit");
}

/** One round of one setup: messages sent until the server has taken every ack. */
async function measureRound(
  child: ChildProcess,
  served: Served,
  run: "ws" | "http",
  messages: number,
  offset: number,
): Promise<{ messagesPerSecond: number; cpuMicrosPerMessage: number; latencyMs: { p50: number; p99: number } }> {
  const before = served.acknowledged();
  const cpuBefore = process.cpuUsage();
  const startedAt = performance.now();
  const { latencyMs } = await command(child, { run, target: served.target.id, messages, offset });
  // The recipient has every message and has sent every ack: wait for the server to take them.
  while (served.acknowledged() < before + messages) await new Promise((resolve) => setTimeout(resolve, 1));
  const seconds = (performance.now() - startedAt) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return { messagesPerSecond: messages / seconds, cpuMicrosPerMessage: (cpu.user + cpu.system) / messages, latencyMs: latencyMs ?? { p50: 0, p99: 0 } };
}

const PATHS: Array<{ run: "ws" | "http"; path: BusPath; raw: string }> = [
  { run: "ws", path: "ws → bus → ws", raw: "raw ws" },
  { run: "http", path: "HTTP → bus → ws", raw: "raw node:http" },
];
const SERVER_NAMES: Record<Exclude<BusSetup, "raw">, string> = { memory: "bus, memory store", sqlite: "bus, SQLite store" };

/** Which path and setups to run, and how many rounds (the defaults: everything, `ROUNDS`). */
export interface BusBenchSelection {
  paths?: Array<"ws" | "http">;
  setups?: BusSetup[];
  rounds?: number;
  /** The buses' `maxInFlightPerAgent` (default: the bus's own, 100). */
  window?: number;
}

/**
 * Runs each path on the raw server, the bus with the memory store and the bus with SQLite, in turn, round
 * after round, and returns each setup's medians with its ratio to the raw server.
 */
export async function runBusBench(selection: BusBenchSelection = {}): Promise<BusThroughput[]> {
  const setups = selection.setups ?? ["raw", "memory", "sqlite"];
  const rounds = selection.rounds ?? ROUNDS;
  const dataDir = await mkdtemp(join(tmpdir(), "troupe-bench-bus-"));
  const servers: Array<[BusSetup, Served]> = [];
  const child = startLoad();
  const results: BusThroughput[] = [];
  let offset = 0;
  try {
    for (const setup of setups) {
      const options = selection.window === undefined ? {} : { maxInFlightPerAgent: selection.window };
      const served = setup === "raw" ? await startRawServer(setup) : await startBenchBus(setup, setup === "sqlite" ? dataDir : undefined, options);
      servers.push([setup, served]);
      await command(child, { connect: served.target });
    }
    for (const { run, path, raw } of PATHS.filter(({ run }) => selection.paths?.includes(run) ?? true)) {
      const measured = servers.map((): Array<Awaited<ReturnType<typeof measureRound>>> => []);
      // Round -1 warms every setup up (the JIT, the sockets, the store), and is not counted.
      for (let round = -1; round < rounds; round += 1) {
        for (const [index, [, served]] of servers.entries()) {
          const messages = round < 0 ? ROUND_MESSAGES / 10 : ROUND_MESSAGES;
          const result = await measureRound(child, served, run, messages, offset);
          offset += messages;
          if (round >= 0) measured[index]?.push(result);
        }
      }
      const rates = measured.map((runs) => median(runs.map((result) => result.messagesPerSecond)));
      const rawIndex = servers.findIndex(([setup]) => setup === "raw");
      for (const [index, [setup]] of servers.entries()) {
        const runs = measured[index] ?? [];
        const perSecond = runs.map((result) => result.messagesPerSecond);
        results.push({
          path,
          setup,
          server: setup === "raw" ? raw : SERVER_NAMES[setup],
          messages: ROUND_MESSAGES,
          rounds,
          messagesPerSecond: rates[index] ?? 0,
          messagesPerSecondRange: [Math.min(...perSecond), Math.max(...perSecond)],
          cpuMicrosPerMessage: median(runs.map((result) => result.cpuMicrosPerMessage)),
          latencyMs: { p50: median(runs.map((result) => result.latencyMs.p50)), p99: median(runs.map((result) => result.latencyMs.p99)) },
          ratioToRaw: rawIndex < 0 ? Number.NaN : (rates[index] ?? 0) / (rates[rawIndex] ?? 1),
        });
      }
    }
  } finally {
    await stopLoad(child);
    await Promise.all(servers.map(([, served]) => served.stop()));
    await rm(dataDir, { recursive: true, force: true });
  }
  return results;
}

/** SQLite throughput ÷ memory throughput, per path. */
export function durabilityRatios(results: BusThroughput[]): Array<{ path: BusPath; ratio: number }> {
  return [...new Set(results.map((run) => run.path))].flatMap((path) => {
    const memory = results.find((run) => run.path === path && run.setup === "memory");
    const sqlite = results.find((run) => run.path === path && run.setup === "sqlite");
    return memory === undefined || sqlite === undefined ? [] : [{ path, ratio: sqlite.messagesPerSecond / memory.messagesPerSecond }];
  });
}

/** What the event stream costs the `ws → bus → ws` path in one configuration. */
export interface EventStreamCost {
  setup: "nothing built for the stream" | "ring buffer recording" | `${number} subscribers`;
  subscribers: number;
  /** Median over the rounds, and the range. */
  messagesPerSecond: number;
  messagesPerSecondRange: [number, number];
  /** CPU time of the bus's process per message (user + system), median over the rounds: steadier than the rate on a busy machine. */
  cpuMicrosPerMessage: number;
  /** `messagesPerSecond` over the first setup's. */
  throughputRatio: number;
}

/** Event stream runs: rounds (each setup once per round, in turn). */
const EVENT_ROUNDS = fullOrQuick(3, 1);
const EVENT_SUBSCRIBERS = 10;

/**
 * The `ws → bus → ws` path on a bus whose stream builds nothing (`eventBuffer: "watched"`, nobody subscribes),
 * on one whose ring buffer records every event (`"always"`), and on that one with
 * `EVENT_SUBSCRIBERS` subscribers of every event; the setups take turns, round after round.
 */
export async function runEventStreamBench(): Promise<EventStreamCost[]> {
  const quiet = await startBenchBus("quiet", undefined, { eventBuffer: "watched" });
  const recording = await startBenchBus("recording", undefined, { eventBuffer: "always" });
  const child = startLoad();
  const setups = [
    { setup: "nothing built for the stream", served: quiet, subscribers: 0 },
    { setup: "ring buffer recording", served: recording, subscribers: 0 },
    { setup: `${EVENT_SUBSCRIBERS} subscribers`, served: recording, subscribers: EVENT_SUBSCRIBERS },
  ] as const;
  const rates = setups.map((): number[] => []);
  const cpu = setups.map((): number[] => []);
  let offset = 0;
  try {
    await command(child, { connect: quiet.target });
    await command(child, { connect: recording.target });
    for (let round = -1; round < EVENT_ROUNDS; round += 1) {
      for (const [index, { served, subscribers }] of setups.entries()) {
        await command(child, { subscribers, url: served.bus.url });
        // Round -1 warms every setup up (the JIT, the sockets), and is not counted.
        const messages = round < 0 ? ROUND_MESSAGES / 10 : ROUND_MESSAGES;
        const result = await measureRound(child, served, "ws", messages, offset);
        offset += messages;
        if (round < 0) continue;
        rates[index]?.push(result.messagesPerSecond);
        cpu[index]?.push(result.cpuMicrosPerMessage);
      }
    }
  } finally {
    await stopLoad(child);
    await Promise.all([quiet.stop(), recording.stop()]);
  }
  const baseline = median(rates[0] ?? []);
  return setups.map(({ setup, subscribers }, index) => {
    const messagesPerSecond = median(rates[index] ?? []);
    return {
      setup,
      subscribers,
      messagesPerSecond,
      messagesPerSecondRange: [Math.min(...(rates[index] ?? [])), Math.max(...(rates[index] ?? []))],
      cpuMicrosPerMessage: median(cpu[index] ?? []),
      throughputRatio: messagesPerSecond / baseline,
    };
  });
}

function formatRate(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at < 0 ? undefined : process.argv[at + 1];
}

if (process.argv.includes("--load")) {
  loadGenerator();
} else if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes("--events")) {
  for (const cost of await runEventStreamBench()) {
    process.stdout.write(
      `${cost.setup.padEnd(30)} ${formatRate(cost.messagesPerSecond).padStart(7)} msgs/s ` +
        `(${cost.throughputRatio.toFixed(2)} ×), bus CPU ${cost.cpuMicrosPerMessage.toFixed(0)} µs/message\n`,
    );
  }
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const only = argument("--only")?.split(":");
  const rounds = argument("--rounds");
  const window = argument("--window");
  const results = await runBusBench({
    ...(window === undefined ? {} : { window: Number(window) }),
    ...(only?.[0] === undefined ? {} : { paths: [only[0] as "ws" | "http"] }),
    ...(only?.[1] === undefined ? {} : { setups: [only[1] as BusSetup] }),
    ...(rounds === undefined ? {} : { rounds: Number(rounds) }),
  });
  for (const result of results) {
    process.stdout.write(
      `${result.path.padEnd(16)} ${result.server.padEnd(18)} ${formatRate(result.messagesPerSecond).padStart(7)} msgs/s ` +
        `(${formatRate(result.messagesPerSecondRange[0])}–${formatRate(result.messagesPerSecondRange[1])}; ${result.ratioToRaw.toFixed(2)} × raw) ` +
        `${result.cpuMicrosPerMessage.toFixed(0).padStart(4)} µs CPU/msg, sent → received p50 ${result.latencyMs.p50.toFixed(1)} ms, p99 ${result.latencyMs.p99.toFixed(1)} ms\n`,
    );
  }
  for (const { path, ratio } of durabilityRatios(results)) process.stdout.write(`${path}: SQLite ÷ memory ${ratio.toFixed(2)}\n`);
}
