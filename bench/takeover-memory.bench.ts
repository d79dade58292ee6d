/**
 * The memory a takeover costs the survivor (docs/cluster.md, "Takeover"), on throwaway engines (a nats-server with
 * JetStream and a PostgreSQL, started by the tests' harness on 127.0.0.1). For each volume asked (`--sizes`, MB of
 * answers), in a fresh NATS and database:
 *
 * 1. node A, a cluster node in a child process, runs N auto workflows (`--result-kb` KB per answer, N = volume /
 *    answer): each first step's task goes to its runtime agent `troupe://writer`, which answers with that many
 *    bytes of random base64; the workflow then waits in its second step (no task: nothing more is sent). So A's
 *    store holds, naming A, N workflow records with one large result each, and N bridge-session records (the
 *    writer's session of each workflow) whose histories hold the same answer: what a real node writes;
 * 2. node B, the same program in another child process, runs idle; this process reads its RSS (`VmRSS` in
 *    `/proc/<pid>/status`) every `--sample-ms` ms, and B reports its own heap peaks (`process.memoryUsage()` every
 *    20 ms);
 * 3. A is killed with SIGKILL; B takes it over after the lease time (`--lease-ms`) and reports `cluster.takeover`;
 * 4. B's RSS is read for 3 s more, then B runs a full GC and reports what it retains: the restored workflow actors
 *    and bridge sessions themselves, which hold their state in memory by design.
 *
 * Printed per volume: the bytes of records taken over (their JSON, by collection), B's RSS before the kill, its
 * peak during the takeover, 3 s after it, and after a GC, B's heap at its peak and after the GC, and the time from
 * the kill to the takeover done. Unbounded, V8 lets garbage pile up in proportion to the live heap before it
 * collects, so `peak - after GC` there is mostly garbage: `--heap-headroom-mb H` bounds B's old space to its idle
 * heap, plus the records' size (what the restored actors keep), plus H; a takeover that needs more than H at once
 * dies of it (the table says so), one that needs less shows its own transient as `peak - after GC`.
 *
 * Run: `node --import tsx bench/takeover-memory.bench.ts [--sizes 60,250] [--result-kb 1000] [--lease-ms 1000]
 * [--sample-ms 20] [--workflows-only] [--heap-headroom-mb H] [--heap-snapshot DIR] [--b-node-options=OPTIONS]`:
 * `--workflows-only` closes the writer's sessions before the kill (the workflows alone are taken over),
 * `--heap-snapshot` writes B's heap after the GC of each volume, `--b-node-options` are node's options for B
 * (`--b-node-options="--cpu-prof --cpu-prof-dir=DIR"`: B exits cleanly, so the profile is written). Not part of
 * `npm run bench`: it needs nats-server and PostgreSQL installed. The same file is the nodes' program (`--node
 * <id>`, started by the bench).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { writeHeapSnapshot } from "node:v8";
import type { RuntimeEvent } from "../src/index.js";

const { values: flags } = parseArgs({
  options: {
    sizes: { type: "string", default: "60,250" },
    "result-kb": { type: "string", default: "1000" },
    "lease-ms": { type: "string", default: "1000" },
    "sample-ms": { type: "string", default: "20" },
    "heap-snapshot": { type: "string" },
    "b-node-options": { type: "string", default: "" },
    "workflows-only": { type: "boolean", default: false },
    "heap-headroom-mb": { type: "string" },
    node: { type: "string" },
  },
});
const RESULT_BYTES = Number(flags["result-kb"]) * 1000;
const LEASE_MS = Number(flags["lease-ms"]);
/** What an idle node's heap holds after a GC, in MB (measured: 21–23). */
const IDLE_HEAP_MB = 25;

/** What a node process is told over IPC, and what it answers. */
type NodeRequest = { create: number; workflowsOnly: boolean } | { memory: { gc: boolean } } | { heapSnapshot: string } | { exit: true };
interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}
type NodeReply =
  | { ready: true }
  | { created: number }
  | { takeover: { workflows: number; sessions: number }; at: number }
  | { memory: Memory; peak: Memory }
  | { heapSnapshot: string };

if (flags.node !== undefined) await runNode(flags.node);
else await runBench();

/** A cluster node: the writer agent, auto workflows created on request, its memory and takeovers told over IPC. */
async function runNode(nodeId: string): Promise<void> {
  const { CommunicationBus, createRuntime, openPostgresStore } = await import("../src/index.js");
  const send = (reply: NodeReply): void => void process.send?.(reply);
  const runtime = createRuntime({
    agents: [
      {
        id: "writer",
        capabilities: [],
        // Random base64 (PostgreSQL cannot compress it away): what a real answer of that size weighs.
        prompt: () =>
          Promise.resolve({
            text: randomBytes(Math.ceil((RESULT_BYTES * 3) / 4))
              .toString("base64")
              .slice(0, RESULT_BYTES),
          }),
      },
    ],
    maxSessions: 100_000,
    maxConcurrentRequests: 100_000,
    store: () => openPostgresStore({ url: process.env["BENCH_PG_URL"] ?? "", exclusive: false }),
  });
  const bus = new CommunicationBus({
    runtime,
    host: "127.0.0.1",
    port: 0,
    apiKey: "bench-key",
    env: {},
    closeGraceMs: 50,
    cluster: { url: process.env["BENCH_NATS_URL"] ?? "", nodeId, leaseMs: LEASE_MS },
  });
  const peak: Memory = { rss: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
  const memory = (): Memory => {
    const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage();
    return { rss, heapUsed, external, arrayBuffers };
  };
  setInterval(() => {
    const now = memory();
    for (const key of Object.keys(peak) as Array<keyof Memory>) peak[key] = Math.max(peak[key], now[key]);
  }, 20);
  runtime.on("*", (event: RuntimeEvent) => {
    if (event.type !== "cluster.takeover") return;
    const { workflows, sessions } = event as unknown as { workflows: number; sessions: number };
    send({ takeover: { workflows, sessions }, at: Date.now() });
  });
  await bus.start();
  process.on("message", (request: NodeRequest) => {
    void (async () => {
      if ("create" in request) {
        const manager = bus.sessionManager;
        const ids: string[] = [];
        // Twenty at a time: the writer's answers are large, and A's memory is not what is measured.
        for (let index = 0; index < request.create; index += 1) {
          ids.push(
            manager.createSession(
              "troupe://orchestrator",
              [{ agent_id: "troupe://writer", role: "writer" }],
              [
                { name: "write", required_agents: ["troupe://writer"], task: "write it" },
                { name: "wait", required_agents: ["troupe://writer"] },
              ],
              {},
              { dispatch: "auto" },
            ),
          );
          if (index % 20 === 19) await until(() => ids.every((id) => manager.getSession(id)?.workflow.current_step === "wait"));
        }
        await until(() => ids.every((id) => manager.getSession(id)?.workflow.current_step === "wait"));
        if (request.workflowsOnly) {
          // The writer's bridge sessions closed: what is taken over is the workflows alone.
          for (const { id } of await runtime.store.list("bridge_sessions")) if (!id.endsWith("/pending")) await runtime.closeSession(id);
        }
        await manager.whenDurable();
        await bus.persisted();
        send({ created: ids.length });
      } else if ("memory" in request) {
        if (request.memory.gc) {
          for (let pass = 0; pass < 3; pass += 1) (globalThis as { gc?: () => void }).gc?.();
        }
        send({ memory: memory(), peak: { ...peak } });
        for (const key of Object.keys(peak) as Array<keyof Memory>) peak[key] = 0;
      } else if ("exit" in request) {
        // A clean exit: what `--cpu-prof` in `--b-node-options` needs to write its profile.
        process.exit(0);
      } else {
        send({ heapSnapshot: writeHeapSnapshot(request.heapSnapshot) });
      }
    })();
  });
  send({ ready: true });
}

async function until(condition: () => boolean, timeoutMs = 600_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The bench: for each volume, nodes A and B on fresh engines; A killed, B's memory read through its takeover. */
async function runBench(): Promise<void> {
  const { startNats } = await import("../test/support/nats-server.js");
  const { startPostgres } = await import("../test/support/postgres-server.js");
  const self = fileURLToPath(import.meta.url);
  const projectRoot = fileURLToPath(new URL("..", import.meta.url));
  const sampleMs = Number(flags["sample-ms"]);
  const sizes = (flags.sizes ?? "").split(",").map(Number);
  const postgres = await startPostgres();
  const children: ChildProcess[] = [];
  const lines: string[] = [];
  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;

  /** Reads the next IPC reply of `child` that `pick` accepts. */
  const reply = <T>(child: ChildProcess, pick: (message: NodeReply) => T | undefined): Promise<T> =>
    new Promise((resolve, reject) => {
      const onMessage = (message: NodeReply): void => {
        const picked = pick(message);
        if (picked === undefined) return;
        child.off("message", onMessage);
        child.off("exit", onExit);
        resolve(picked);
      };
      const onExit = (code: number | null, signal: string | null): void => reject(new Error(`node exited (${signal ?? code}) before it answered`));
      child.on("message", onMessage);
      child.on("exit", onExit);
    });
  const spawnNode = async (nodeId: string, env: Record<string, string>, nodeOptions: string[] = []): Promise<ChildProcess> => {
    const child = spawn(
      process.execPath,
      ["--expose-gc", ...nodeOptions, "--import", "tsx", self, "--node", nodeId, "--result-kb", String(flags["result-kb"]), "--lease-ms", String(LEASE_MS)],
      { cwd: projectRoot, env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit", "ipc"] },
    );
    children.push(child);
    await reply(child, (message) => ("ready" in message ? true : undefined));
    return child;
  };
  const rssOf = (pid: number): number => {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return Number(match?.[1] ?? 0) * 1024;
  };

  try {
    for (const [round, sizeMb] of sizes.entries()) {
      const workflows = Math.max(1, Math.round((sizeMb * 1e6) / RESULT_BYTES));
      const nats = await startNats();
      const database = await postgres.createDatabase(`takeover_${round}`);
      try {
        const env = { BENCH_PG_URL: database, BENCH_NATS_URL: nats.url };
        const a = await spawnNode("node-a", env);
        a.send({ create: workflows, workflowsOnly: flags["workflows-only"] ?? false } satisfies NodeRequest);
        await reply(a, (message) => ("created" in message ? message.created : undefined));
        const stored = await postgres.query<{ collection: string; records: string; bytes: string }>(
          `SELECT collection, count(*) AS records, sum(octet_length(value)) AS bytes FROM troupe.records WHERE node = 'node-a' GROUP BY collection ORDER BY collection`,
          [],
          `takeover_${round}`,
        );
        const total = stored.reduce((sum, { bytes }) => sum + Number(bytes), 0);
        // With --heap-headroom-mb: B's old space bounded to what the restored actors keep (their records' size and
        // B's idle heap) and that headroom. A takeover that needs more than the headroom at once dies of it.
        const headroom =
          flags["heap-headroom-mb"] === undefined ? [] : [`--max-old-space-size=${Math.round(IDLE_HEAP_MB + total / 1e6 + Number(flags["heap-headroom-mb"]))}`];
        const b = await spawnNode("node-b", env, [...headroom, ...(flags["b-node-options"] ?? "").split(" ").filter((option) => option !== "")]);
        const pid = b.pid ?? 0;
        // B idle a moment: what it holds before the kill.
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        const memoryOf = async (gc: boolean): Promise<{ memory: Memory; peak: Memory }> => {
          b.send({ memory: { gc } } satisfies NodeRequest);
          return reply(b, (message) => ("peak" in message ? message : undefined));
        };
        const { memory: idle } = await memoryOf(true);
        const before = rssOf(pid);
        let peak = before;
        const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), sampleMs);
        const takenOver = reply(b, (message) => ("takeover" in message ? message : undefined));
        const killedAt = Date.now();

        a.kill("SIGKILL");
        const takeover = await takenOver.catch((error: unknown) => error as Error);
        if (takeover instanceof Error) {
          clearInterval(sampler);
          // B died in the takeover (with --heap-headroom-mb: out of memory, its stderr says so).
          lines.push(`| ${mb(total)} | B died: ${takeover.message} | ${Date.now() - killedAt} ms | ${mb(before)} | ${mb(peak)} | | | | | |`);
          continue;
        }

        const doneMs = takeover.at - killedAt;
        const atDone = rssOf(pid);
        // Whatever the takeover left for the GC to collect is still counted in `peak` while it settles.
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        clearInterval(sampler);
        const after = rssOf(pid);
        const { peak: heapPeak } = await memoryOf(false);
        const collected = await memoryOf(true);
        const afterGc = rssOf(pid);
        if (flags["heap-snapshot"] !== undefined) {
          b.send({ heapSnapshot: join(flags["heap-snapshot"], `takeover-${sizeMb}mb.heapsnapshot`) } satisfies NodeRequest);
          await reply(b, (message) => ("heapSnapshot" in message ? message : undefined));
        }
        const exited = once(b, "exit");
        b.send({ exit: true } satisfies NodeRequest);
        await exited;
        const records = stored.map(({ collection, records, bytes }) => `${collection} ${records}: ${mb(Number(bytes))}`).join(", ");
        process.stdout.write(
          `${sizeMb} MB of answers: records taken over ${mb(total)} (${records}); B took over ${takeover.takeover.workflows} workflows and ` +
            `${takeover.takeover.sessions} sessions ${doneMs} ms after the kill; B's RSS at takeover done ${mb(atDone)}; ` +
            `heap: before ${mb(idle.heapUsed)}, external peak ${mb(heapPeak.external)}, after GC ${mb(collected.memory.external)}\n`,
        );
        lines.push(
          `| ${mb(total)} | ${takeover.takeover.workflows} / ${takeover.takeover.sessions} | ${doneMs} ms | ${mb(before)} | ${mb(peak)} | ${mb(after)} | ` +
            `${mb(afterGc)} | ${mb(peak - afterGc)} | ${mb(heapPeak.heapUsed)} | ${mb(collected.memory.heapUsed)} |`,
        );
      } finally {
        for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        await nats.stop();
      }
    }
  } finally {
    for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await postgres.stop();
  }
  const options =
    (flags["heap-headroom-mb"] === undefined ? "" : `, B's old space bounded to ${IDLE_HEAP_MB} MB + the records' size + ${flags["heap-headroom-mb"]} MB`) +
    ((flags["b-node-options"] ?? "") === "" ? "" : `, B run with ${flags["b-node-options"]}`);
  process.stdout.write(
    `\nanswers of ${RESULT_BYTES / 1000} KB${flags["workflows-only"] === true ? " (workflows only: the writer's sessions closed)" : ""}, ` +
      `lease ${LEASE_MS} ms, B's RSS read every ${sampleMs} ms${options}\n` +
      "| records taken over | workflows / sessions | kill → takeover done | B's RSS before | peak | 3 s after | after GC | peak − after GC | heap used peak | heap used after GC |\n" +
      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n" +
      `${lines.join("\n")}\n`,
  );
}
