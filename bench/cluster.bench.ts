/**
 * Messages per second between cluster nodes (docs/cluster.md, issue 15), on throwaway engines (a nats-server
 * with JetStream and a PostgreSQL, started by the tests' harness on 127.0.0.1): an agent sends `MESSAGES`
 * messages (~1 KB payload, a window of `WINDOW` sends waiting for their 202) with `bus.send` to a recipient
 * connected over a raw WebSocket that acknowledges each frame; a round ends when the recipient has them all.
 *
 * - `one node, no cluster`: one bus on the PostgreSQL store alone (the single node's way: no stream);
 * - `cluster, same node`: two cluster nodes, sender and recipient on node A (every message still goes through
 *   the stream: accepted, published, pulled back by A);
 * - `cluster, A → B`: the message is posted to node A, its recipient connected to node B.
 *
 * Each round also sends `--latency` messages one at a time (no other send waiting) and takes the median time from
 * `bus.send` to its 202: what one message's acceptance costs a sender when nothing else is batched with it.
 *
 * Everything runs in this one process (the buses, the load, the recipient), so take the figures as the cost of
 * each path relative to the others, not as a server's capacity. Setups take turns round after round; each figure
 * is the median over the rounds, with the range. Run: `node --import tsx bench/cluster.bench.ts [--messages N]
 * [--rounds N] [--latency N]`. Not part of `npm run bench`: it needs nats-server and PostgreSQL installed.
 */
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { CommunicationBus, openPostgresStore, type BusOptions } from "../src/index.js";
import { startNats } from "../test/support/nats-server.js";
import { startPostgres } from "../test/support/postgres-server.js";
import { frameText } from "../src/protocol/frames.js";

const { values: flags } = parseArgs({
  options: { messages: { type: "string", default: "3000" }, rounds: { type: "string", default: "3" }, latency: { type: "string", default: "200" } },
});
const MESSAGES = Number(flags.messages);
const ROUNDS = Number(flags.rounds);
const LATENCY_SENDS = Number(flags.latency);
const WINDOW = 100;
const API_KEY = "bench-key";
const PAYLOAD = { text: "x".repeat(900) };

type Setup = "one node, no cluster" | "cluster, same node" | "cluster, A → B";

const nats = await startNats();
const postgres = await startPostgres();
let databases = 0;

async function bus(database: string, extra: Partial<BusOptions>, exclusive: boolean): Promise<CommunicationBus> {
  const started = new CommunicationBus({
    host: "127.0.0.1",
    port: 0,
    apiKey: API_KEY,
    env: {},
    closeGraceMs: 50,
    store: () => openPostgresStore({ url: database, exclusive }),
    ...extra,
  });
  await started.start();
  return started;
}

/** The buses of a setup: where the sender posts, where the recipient connects. */
async function buses(setup: Setup): Promise<{ via: CommunicationBus; at: CommunicationBus; all: CommunicationBus[] }> {
  databases += 1;
  const database = await postgres.createDatabase(`bench_${databases}`);
  if (setup === "one node, no cluster") {
    const only = await bus(database, {}, true);
    return { via: only, at: only, all: [only] };
  }
  const cluster = (nodeId: string): Partial<BusOptions> => ({
    cluster: { url: nats.url, nodeId, stream: `BENCH_${databases}`, subjectPrefix: `bench${databases}.messages` },
  });
  const a = await bus(database, cluster(`a${databases}`), false);
  const b = await bus(database, cluster(`b${databases}`), false);
  return setup === "cluster, A → B" ? { via: a, at: b, all: [a, b] } : { via: a, at: a, all: [a, b] };
}

/** What a round measured: messages per second with `WINDOW` sends in flight, and the median ms of one send alone. */
interface RoundResult {
  rate: number;
  latencyMs: number;
}

async function round(setup: Setup, messages: number): Promise<RoundResult> {
  const { via, at, all } = await buses(setup);
  try {
    for (const agentId of ["bench://sender", "bench://recipient"]) via.registerAgent({ agent_id: agentId, framework: "bench" });
    await via.persisted();
    const socket = new WebSocket(`${at.url.replace("http", "ws")}/agents/connect?agent_id=${encodeURIComponent("bench://recipient")}`, {
      headers: { "x-agent-api-key": API_KEY },
    });
    socket.on("error", () => undefined);
    let received = 0;
    let done: () => void = () => undefined;
    const all = new Promise<void>((resolve) => (done = resolve));
    socket.on("message", (data) => {
      const { message_id } = JSON.parse(frameText(data)) as { message_id: string };
      socket.send(JSON.stringify({ type: "ack", message_id }));
      received += 1;
      if (received === messages + LATENCY_SENDS) done();
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    // The recipient's pull is in place before the clock starts.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const send = (messageId: string) =>
      via.send({
        message_id: messageId,
        timestamp: new Date().toISOString(),
        sender: { agent_id: "bench://sender", framework: "bench" },
        recipient: { agent_id: "bench://recipient", framework: "bench" },
        message_type: "status_update",
        payload: PAYLOAD,
      });
    const latencies: number[] = [];
    for (let n = 0; n < LATENCY_SENDS; n += 1) {
      const sentAt = performance.now();
      await send(`alone-${n}`);
      latencies.push(performance.now() - sentAt);
    }
    const started = performance.now();
    let next = 0;
    const sender = async (): Promise<void> => {
      while (next < messages) {
        next += 1;
        await send(`m-${next}`);
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, sender));
    await all;
    const seconds = (performance.now() - started) / 1000;
    socket.close();
    return { rate: messages / seconds, latencyMs: median(latencies) };
  } finally {
    for (const each of all) await each.stop();
  }
}

function median(values: number[]): number {
  return [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)] ?? 0;
}

const setups: Setup[] = ["one node, no cluster", "cluster, same node", "cluster, A → B"];
const results = new Map<Setup, RoundResult[]>(setups.map((setup) => [setup, []]));
try {
  for (const setup of setups) await round(setup, Math.max(100, Math.floor(MESSAGES / 10)));
  for (let n = 0; n < ROUNDS; n += 1) {
    for (const setup of setups) results.get(setup)?.push(await round(setup, MESSAGES));
  }
} finally {
  await Promise.all([nats.stop(), postgres.stop()]);
}
process.stdout.write(`${MESSAGES} messages per round, ${ROUNDS} rounds, window ${WINDOW}, ~1 KB payload; ${LATENCY_SENDS} sends alone per round\n`);
for (const setup of setups) {
  const rates = (results.get(setup) ?? []).map(({ rate }) => rate);
  const latencies = (results.get(setup) ?? []).map(({ latencyMs }) => latencyMs);
  process.stdout.write(
    `${setup.padEnd(22)} ${Math.round(median(rates))} messages/s (${Math.round(Math.min(...rates))}–${Math.round(Math.max(...rates))}); ` +
      `one send alone ${median(latencies).toFixed(2)} ms (${Math.min(...latencies).toFixed(2)}–${Math.max(...latencies).toFixed(2)})\n`,
  );
}
