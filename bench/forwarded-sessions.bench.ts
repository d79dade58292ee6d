/**
 * What a bridge-session tool costs when the session runs on another cluster node (docs/cluster.md, "Bridge
 * sessions on any node"), on throwaway engines (a nats-server with JetStream and a PostgreSQL, started by the
 * tests' harness on 127.0.0.1): two nodes A and B, sessions created on A, each call made on A (the session's own
 * node) and on B (forwarded to A). The agent answers at once, so the figures are the tools' own cost:
 *
 * - `sessions_status`, one call after another: latency per call;
 * - `sessions_prompt`, one after another (a 200-character answer): latency per prompt;
 * - `sessions_prompt` streamed (`onDelta`; 100 deltas of 10 characters, one per turn of the event loop);
 * - `sessions_prompt`, `PARALLEL` sessions prompted at once, round after round: prompts per second.
 *
 * Everything runs in this one process, so take the figures as the cost of forwarding relative to the local call,
 * not as a server's capacity. Run: `node --import tsx bench/forwarded-sessions.bench.ts [--calls N]`. Not part of
 * `npm run bench`: it needs nats-server and PostgreSQL installed.
 */
import { parseArgs } from "node:util";
import { CommunicationBus, createRuntime, openPostgresStore, type Runtime } from "../src/index.js";
import { instantAgent as agent } from "./instant-agent.js";
import { latency } from "./measure.js";
import { startNats } from "../test/support/nats-server.js";
import { startPostgres } from "../test/support/postgres-server.js";

const { values: flags } = parseArgs({ options: { calls: { type: "string", default: "300" } } });
const CALLS = Number(flags.calls);
const PARALLEL = 20;

const nats = await startNats();
const postgres = await startPostgres();
const database = await postgres.createDatabase("forwarded_sessions");

async function node(nodeId: string): Promise<{ bus: CommunicationBus; runtime: Runtime }> {
  const runtime = createRuntime({
    agents: [agent],
    defaultAgentId: "instant",
    maxConcurrentRequests: 200,
    store: () => openPostgresStore({ url: database, exclusive: false }),
  });
  const bus = new CommunicationBus({ runtime, host: "127.0.0.1", port: 0, apiKey: "bench-key", env: {}, closeGraceMs: 50, cluster: { url: nats.url, nodeId } });
  await bus.start();
  return { bus, runtime };
}

const a = await node("node-a");
const b = await node("node-b");
const lines: string[] = [];
try {
  const { sessionId } = await a.runtime.bridge.sessionsCreate({});
  const sessions = await Promise.all(Array.from({ length: PARALLEL }, () => a.runtime.bridge.sessionsCreate({})));
  const askers = [
    ["on A (its node)", a.runtime],
    ["on B (forwarded)", b.runtime],
  ] as const;
  // A first pass warms both paths (module loading, JIT, connections).
  for (const [, runtime] of askers) await latency(20, () => runtime.bridge.sessionsPrompt({ sessionId, prompt: "warm" }));
  for (const [where, runtime] of askers) {
    const status = await latency(CALLS, () => runtime.bridge.sessionsStatus({ sessionId }));
    const prompt = await latency(CALLS, () => runtime.bridge.sessionsPrompt({ sessionId, prompt: "hi" }));
    let deltas = 0;
    const streamed = await latency(Math.max(10, Math.floor(CALLS / 10)), () =>
      runtime.bridge.sessionsPrompt({ sessionId, prompt: "stream" }, { onDelta: () => void (deltas += 1) }),
    );
    const started = performance.now();
    const rounds = Math.max(5, Math.floor(CALLS / PARALLEL));
    for (let round = 0; round < rounds; round += 1) {
      await Promise.all(sessions.map((session) => runtime.bridge.sessionsPrompt({ sessionId: session.sessionId, prompt: "hi" })));
    }
    const perSecond = (rounds * PARALLEL) / ((performance.now() - started) / 1000);
    const ms = ({ median, p95 }: { median: number; p95: number }): string => `${median.toFixed(3)} ms (p95 ${p95.toFixed(2)})`;
    lines.push(
      `${where.padEnd(17)} status ${ms(status)}; prompt ${ms(prompt)}; streamed prompt ${ms(streamed)}, ` +
        `${deltas} deltas heard; ${PARALLEL} in parallel ${Math.round(perSecond)} prompts/s`,
    );
  }
} finally {
  await b.bus.stop();
  await a.bus.stop();
  await Promise.all([a.runtime.stop(), b.runtime.stop()]);
  await Promise.all([nats.stop(), postgres.stop()]);
}
process.stdout.write(`${CALLS} calls each, an agent that answers at once\n${lines.join("\n")}\n`);
