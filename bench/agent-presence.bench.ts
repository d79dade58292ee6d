/**
 * What `GET /agents` costs on a cluster node (docs/cluster.md, "Presence: where each agent is"), on throwaway
 * engines (a nats-server with JetStream and a PostgreSQL, started by the tests' harness on 127.0.0.1): two nodes A
 * and B, `AGENTS` agents registered and connected to A over raw WebSockets, then `GET /agents?limit=1000` asked of
 * B (every agent connected elsewhere: its presence comes from the cluster) and of A (every agent connected here),
 * one request after another: the median and the 95th percentile per page.
 *
 * Everything runs in this one process. Run: `node --import tsx bench/agent-presence.bench.ts [--agents N] [--calls N]`.
 * Not part of `npm run bench`: it needs nats-server and PostgreSQL installed.
 */
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { CommunicationBus, openPostgresStore } from "../src/index.js";
import { latency } from "./measure.js";
import { startNats } from "../test/support/nats-server.js";
import { startPostgres } from "../test/support/postgres-server.js";

const { values: flags } = parseArgs({ options: { agents: { type: "string", default: "1000" }, calls: { type: "string", default: "100" } } });
const AGENTS = Number(flags.agents);
const CALLS = Number(flags.calls);
const KEY = "bench-key";

const nats = await startNats();
const postgres = await startPostgres();
const database = await postgres.createDatabase("agent_presence");

async function node(nodeId: string): Promise<CommunicationBus> {
  const bus = new CommunicationBus({
    store: () => openPostgresStore({ url: database, exclusive: false }),
    host: "127.0.0.1",
    port: 0,
    apiKey: KEY,
    env: {},
    closeGraceMs: 50,
    maxConnections: AGENTS + 10,
    maxConnectionsPerClient: AGENTS + 10,
    cluster: { url: nats.url, nodeId },
  });
  await bus.start();
  return bus;
}

async function get(bus: CommunicationBus, path: string): Promise<{ agents: Array<{ online: boolean }>; presence?: string }> {
  const response = await fetch(`${bus.url}${path}`, { headers: { "x-agent-api-key": KEY } });
  if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as { agents: Array<{ online: boolean }>; presence?: string };
}

const a = await node("node-a");
const b = await node("node-b");
const sockets: WebSocket[] = [];
try {
  const ids = Array.from({ length: AGENTS }, (_, index) => `bench://agent-${index}`);
  for (const agentId of ids) {
    const response = await fetch(`${a.url}/agents/register`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-agent-api-key": KEY },
      body: JSON.stringify({ agent_descriptor: { agent_id: agentId, framework: "bench", capabilities: [], metadata: {} } }),
    });
    if (response.status !== 201) throw new Error(`register ${agentId}: ${response.status}`);
  }
  for (const agentId of ids) {
    const socket = new WebSocket(`${a.url.replace("http", "ws")}/agents/connect?agent_id=${encodeURIComponent(agentId)}`, {
      headers: { "x-agent-api-key": KEY },
    });
    sockets.push(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
  }
  const online = async (bus: CommunicationBus): Promise<number> => (await get(bus, "/agents?limit=1000")).agents.filter((agent) => agent.online).length;
  // Every agent's entry written and seen by B before anything is timed.
  for (let waited = 0; (await online(b)) < Math.min(AGENTS, 1_000 - 2); waited += 1) {
    if (waited > 200) throw new Error("the agents never showed online on node B");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const lines: string[] = [];
  for (const [where, bus] of [
    ["on B (agents elsewhere)", b],
    ["on A (agents here)", a],
  ] as const) {
    await latency(10, () => get(bus, "/agents?limit=1000"));
    const page = await latency(CALLS, () => get(bus, "/agents?limit=1000"));
    lines.push(`${where.padEnd(24)} GET /agents?limit=1000: ${page.median.toFixed(2)} ms (p95 ${page.p95.toFixed(2)}), ${await online(bus)} online`);
  }
  process.stdout.write(`${AGENTS} agents connected to node A, ${CALLS} pages each\n${lines.join("\n")}\n`);
} finally {
  for (const socket of sockets) socket.terminate();
  await b.stop();
  await a.stop();
  await Promise.all([nats.stop(), postgres.stop()]);
}
