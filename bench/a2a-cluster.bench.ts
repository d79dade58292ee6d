/**
 * What A2A costs on a cluster (docs/cluster.md, "A2A across nodes"), on throwaway engines (a nats-server with
 * JetStream and a PostgreSQL, started by the tests' harness on 127.0.0.1), called with the SDK's own client: two
 * nodes A and B, tasks and contexts served by A, each request sent to A (their own node) and to B (forwarded to A);
 * and one troupe on PostgreSQL without a cluster, for what the records cost. The agent answers at once (200
 * characters), so the figures are A2A's own cost:
 *
 * - `GetTask` of a completed task, one after another: latency per request;
 * - `SendMessage` continuing one context, one after another: latency per message;
 * - `SendStreamingMessage` continuing it, the agent streaming 100 deltas of 10 characters, one per turn of the event loop;
 * - `SendMessage` opening a new context each time: what the records of a new task and context cost (each is made
 *   durable before its id is told: one PostgreSQL commit each, after the bridge session's own).
 *
 * Everything runs in this one process, so take the figures as the cost of forwarding relative to the local request,
 * not as a server's capacity. Run: `node --import tsx bench/a2a-cluster.bench.ts [--calls N]`. Not part of
 * `npm run bench`: it needs nats-server and PostgreSQL installed.
 */
import { parseArgs } from "node:util";
import type { StreamResponse, Task } from "@a2a-js/sdk";
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory, type Client } from "@a2a-js/sdk/client";
import { CommunicationBus, createRuntime, openPostgresStore, type Runtime } from "../src/index.js";
import { instantAgent as agent } from "./instant-agent.js";
import { latency } from "./measure.js";
import { message } from "../test/a2a/client.js";
import { startNats } from "../test/support/nats-server.js";
import { startPostgres } from "../test/support/postgres-server.js";

const { values: flags } = parseArgs({ options: { calls: { type: "string", default: "300" } } });
const CALLS = Number(flags.calls);
const KEY = "bench-key";

/** The SDK's client for the agent at `url`, with the bus key. */
function clientFor(url: string): Promise<Client> {
  const fetchImpl: typeof fetch = (input, init) => {
    const headers = new Headers(init?.headers);
    headers.set("x-agent-api-key", KEY);
    return fetch(input, { ...init, headers });
  };
  const factory = new ClientFactory({ transports: [new JsonRpcTransportFactory({ fetchImpl })], cardResolver: new DefaultAgentCardResolver({ fetchImpl }) });
  return factory.createFromUrl(url);
}

/** Reads a whole stream. */
async function collect(stream: AsyncGenerator<StreamResponse>): Promise<number> {
  let events = 0;
  for await (const _event of stream) events += 1;
  return events;
}

const nats = await startNats();
const postgres = await startPostgres();
const database = await postgres.createDatabase("a2a_cluster");
const single = await postgres.createDatabase("a2a_single");

async function node(nodeId: string | undefined): Promise<{ bus: CommunicationBus; runtime: Runtime }> {
  const runtime = createRuntime({
    agents: [agent],
    maxConcurrentRequests: 200,
    // Room for a new context per call without closing older ones (a quarter of maxSessions are contexts).
    maxSessions: 8 * CALLS,
    store: () => openPostgresStore({ url: nodeId === undefined ? single : database, exclusive: nodeId === undefined }),
  });
  const bus = new CommunicationBus({
    runtime,
    host: "127.0.0.1",
    port: 0,
    apiKey: KEY,
    env: {},
    closeGraceMs: 50,
    ...(nodeId === undefined ? {} : { cluster: { url: nats.url, nodeId } }),
  });
  // A bus starts the runtime it is given only as a cluster node (once it holds its lease).
  if (nodeId === undefined) await runtime.start();
  await bus.start();
  return { bus, runtime };
}

const ms = ({ median, p95 }: { median: number; p95: number }): string => `${median.toFixed(2)} ms (p95 ${p95.toFixed(1)})`;

const a = await node("node-a");
const b = await node("node-b");
const alone = await node(undefined);
const lines: string[] = [];
try {
  const clients = {
    a: await clientFor(`${a.bus.url}/a2a/instant/`),
    b: await clientFor(`${b.bus.url}/a2a/instant/`),
    alone: await clientFor(`${alone.bus.url}/a2a/instant/`),
  };
  const onA = (await clients.a.sendMessage(message("keep"))) as Task;
  const alonesOwn = (await clients.alone.sendMessage(message("keep"))) as Task;
  const askers: Array<[string, Client, Task]> = [
    ["one troupe, no cluster", clients.alone, alonesOwn],
    ["cluster, on A (its node)", clients.a, onA],
    ["cluster, on B (forwarded)", clients.b, onA],
  ];
  // A first pass warms every path (module loading, JIT, connections).
  for (const [, client, { contextId }] of askers) for (let n = 0; n < 20; n += 1) await client.sendMessage(message("warm", { contextId }));
  for (const [where, client, { id, contextId }] of askers) {
    const get = await latency(CALLS, () => client.getTask({ tenant: "", id, historyLength: undefined }));
    const send = await latency(CALLS, () => client.sendMessage(message("hi", { contextId })));
    const streamed = await latency(Math.max(10, Math.floor(CALLS / 10)), () => collect(client.sendMessageStream(message("stream", { contextId }))));
    lines.push(`${where.padEnd(26)} GetTask ${ms(get)}; SendMessage in its context ${ms(send)}; streamed (100 deltas) ${ms(streamed)}`);
  }
  for (const [where, client] of [
    ["one troupe, no cluster", clients.alone],
    ["cluster node", clients.a],
  ] as const) {
    lines.push(`${where.padEnd(26)} SendMessage opening a new context ${ms(await latency(CALLS, () => client.sendMessage(message("hi"))))}`);
  }
} finally {
  await b.bus.stop();
  await a.bus.stop();
  await alone.bus.stop();
  await Promise.all([a.runtime.stop(), b.runtime.stop(), alone.runtime.stop()]);
  await Promise.all([nats.stop(), postgres.stop()]);
}
process.stdout.write(`${CALLS} calls each, an agent that answers at once (PostgreSQL with fsync off)\n${lines.join("\n")}\n`);
