/**
 * Issue 15's cluster test: three `troupe serve --cluster` processes on one NATS JetStream and one PostgreSQL (real
 * servers started for this file), with short lease and ack-wait times (the configuration file's `cluster`
 * section). Agents are raw WebSockets in this process that acknowledge every message and answer every task; each
 * is connected to one node and moves to another live node when its node dies. Thousands of messages (mixed
 * priorities) and a few hundred auto workflows are in flight while one node, picked at random, is killed with
 * SIGKILL at random moments and restarted, several times. Then:
 *
 * - every accepted message was delivered at least once, and none whose ack was durable (in the shared store) at
 *   a kill, or at the end, was delivered again after that; no message's record is left in the store at the end;
 * - every workflow completed, each with its two steps, and no workflow had events of two nodes at once: the
 *   times of a workflow's `workflow.*` events on one node never overlap those on another (a node restarted under
 *   its id being another one; each node's `/events` shows the whole cluster's);
 * - every node still running stops cleanly (SIGTERM, exit 0).
 *
 * `TROUPE_REPORT_CLUSTER=1` prints the figures (docs/cluster.md shows them).
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { frameText } from "../../src/protocol/frames.js";
import { startEngines } from "../support/engines.js";
import type { NatsServer } from "../support/nats-server.js";
import type { PostgresServer } from "../support/postgres-server.js";

const KEY = "cluster-processes-key";
const LEASE_MS = 1_000;
const ACK_WAIT_MS = 2_000;
const MESSAGES = 3_000;
const WORKFLOWS = 200;
const KILLS = 3;
const AGENTS = 6;
const NODE_IDS = ["node-1", "node-2", "node-3"];
const PRIORITIES = ["low", "medium", "high", "critical"];
const projectRoot = fileURLToPath(new URL("../..", import.meta.url));

let nats: NatsServer;
let postgres: PostgresServer;
let directory: string;
const children: ChildProcessWithoutNullStreams[] = [];
const sockets: WebSocket[] = [];
/** Set once the test is over (or failed): agents stop answering and reconnecting. */
let stopping = false;

beforeAll(async () => {
  ({ nats, postgres } = await startEngines());
  directory = mkdtempSync(join(tmpdir(), "troupe-cluster-"));
  writeFileSync(join(directory, "troupe.json"), JSON.stringify({ cluster: { leaseMs: LEASE_MS, ackWaitMs: ACK_WAIT_MS } }));
}, 30_000);

afterAll(async () => {
  stopping = true;
  for (const socket of sockets.splice(0)) socket.terminate();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true });
  await Promise.all([nats?.stop(), postgres?.stop()]);
});

/** A running node: its process and where it listens. */
interface ServedNode {
  nodeId: string;
  child: ChildProcessWithoutNullStreams;
  url: string;
  output: () => string;
  alive: boolean;
}

/** `troupe serve --cluster` on a free port; resolves once it listens. */
async function serveNode(nodeId: string): Promise<ServedNode> {
  const { AGENT_BUS_API_KEY: _key, OPENAI_API_KEY: _openai, ANTHROPIC_API_KEY: _anthropic, GEMINI_API_KEY: _gemini, ...env } = process.env;
  const args = ["serve", "--port", "0", "--host", "127.0.0.1", "--no-agents", "--api-key", KEY, "--config", join(directory, "troupe.json")];
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/main.ts", ...args, "--store", postgres.url(), "--cluster", nats.url, "--node-id", nodeId],
    { cwd: projectRoot, env },
  );
  children.push(child);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  // TROUPE_CLUSTER_LOGS=<dir> keeps each node's output there, for a failure's post-mortem.
  const logs = process.env["TROUPE_CLUSTER_LOGS"];
  if (logs !== undefined) child.on("exit", () => writeFileSync(join(logs, `${nodeId}-${child.pid}.log`), output));
  const listening = /troupe listening on (http:\/\/\S+)/;
  const deadline = Date.now() + 30_000;
  while (!listening.test(output)) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${nodeId} did not start: ${output}`);
    await delay(20);
  }
  const node: ServedNode = { nodeId, child, url: listening.exec(output)![1]!, output: () => output, alive: true };
  child.once("exit", () => (node.alive = false));
  return node;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await delay(50);
  }
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

/** Calls a node's route with the key; a node that died mid-call is `undefined`. */
async function call(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any } | undefined> {
  try {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: { "content-type": "application/json", "x-agent-api-key": KEY },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await response.text();
    return { status: response.status, body: text === "" ? undefined : JSON.parse(text) };
  } catch {
    return undefined;
  }
}

describe("three troupe serve --cluster processes, one SIGKILLed and restarted at random moments", () => {
  it("deliver every accepted message, none again after its durable ack, and complete every workflow on one node at a time", async () => {
    const startedAt = performance.now();
    const nodes = await Promise.all(NODE_IDS.map(serveNode));
    const live = (): ServedNode[] => nodes.filter((node) => node.alive);
    const anyLive = (): ServedNode => pick(live());

    // --- agents: raw WebSockets that ack every message, answer every task, and move when their node dies.
    const agentIds = Array.from({ length: AGENTS }, (_, index) => `test://agent-${index}`);
    for (const agentId of agentIds) expect((await call(nodes[0]!.url, "POST", "/agents/register", { agent_id: agentId }))?.status).toBe(201);
    /** Per message id: the times (performance.now) it reached an agent. */
    const deliveries = new Map<string, number[]>();
    let answersSent = 0;
    /** Per task request: what happened to it at the agents (for a failure's message). */
    const taskTrail = new Map<string, string[]>();
    const trail = (messageId: string, what: string): void => void taskTrail.set(messageId, [...(taskTrail.get(messageId) ?? []), `${Date.now()} ${what}`]);
    const answer = async (from: string, frame: any): Promise<void> => {
      const reply = {
        message_id: `answer-${frame.message_id as string}`,
        timestamp: new Date().toISOString(),
        sender: { agent_id: from, framework: "test", session_id: frame.sender.session_id },
        recipient: { agent_id: frame.sender.agent_id, framework: "troupe" },
        message_type: "task_response",
        metadata: { task_id: frame.metadata.task_id, in_reply_to: frame.message_id },
        payload: { status: "completed", text: `done ${frame.payload.step as string}` },
      };
      // A task takes the agent a while (0.5 to 2.5 s), so that kills find workflows in flight.
      await delay(500 + Math.random() * 2_000);
      // Through any live node; a refusal while the workflow's node is taken over (TRANSPORT) is asked again.
      for (let tries = 0; tries < 200 && !stopping; tries += 1) {
        const through = anyLive();
        const answered = await call(through.url, "POST", "/messages/send", reply);
        trail(
          frame.message_id,
          `answer via ${through.nodeId}: ${answered?.status ?? "no answer"} ${answered === undefined || answered.status < 300 ? "" : JSON.stringify(answered.body)}`,
        );
        // 409: the task was answered already (its request came again after a takeover). Anything else is asked again.
        if (answered !== undefined && (answered.status < 300 || answered.status === 409)) {
          answersSent += 1;
          return;
        }
        await delay(100);
      }
    };
    const connectAgent = (agentId: string, index: number): void => {
      const candidates = live();
      if (candidates.length === 0 || stopping) return;
      const node = candidates[index % candidates.length]!;
      const socket = new WebSocket(`${node.url.replace("http", "ws")}/agents/connect?agent_id=${encodeURIComponent(agentId)}`, {
        headers: { "x-agent-api-key": KEY },
      });
      sockets.push(socket);
      socket.on("message", (data) => {
        const frame = JSON.parse(frameText(data));
        if (typeof frame.message_id !== "string" || frame.type !== undefined) return;
        socket.send(JSON.stringify({ type: "ack", message_id: frame.message_id }));
        if (frame.message_type === "task_request") {
          trail(frame.message_id, `${agentId} got it via ${node.nodeId}`);
          void answer(agentId, frame);
        } else deliveries.set(frame.message_id, [...(deliveries.get(frame.message_id) ?? []), performance.now()]);
      });
      socket.on("error", () => undefined);
      // Its node died (or refused it while starting): another live node, a moment later.
      socket.on("close", () => void delay(200).then(() => connectAgent(agentId, index + 1)));
    };
    agentIds.forEach((agentId, index) => connectAgent(agentId, index));

    // --- event sockets on every node: `workflow.*` of the whole cluster, with the node each happened on.
    const workflowEvents: { node: string; ts: number; sessionId: string; type: string }[] = [];
    const watchEvents = (node: ServedNode): void => {
      const socket = new WebSocket(`${node.url.replace("http", "ws")}/events?types=workflow.*`, { headers: { "x-agent-api-key": KEY } });
      sockets.push(socket);
      socket.on("message", (data) => {
        const frame = JSON.parse(frameText(data));
        if (typeof frame.sessionId === "string" && typeof frame.node === "string")
          workflowEvents.push({ node: frame.node, ts: frame.ts, sessionId: frame.sessionId, type: frame.type });
      });
      socket.on("error", () => undefined);
    };
    nodes.forEach(watchEvents);

    // --- the load: messages and workflows posted to random live nodes, each until a node accepts it.
    const accepted = new Set<string>();
    const sessionIds: string[] = [];
    const sendMessage = async (n: number): Promise<void> => {
      const messageId = `m-${n}`;
      const message = {
        message_id: messageId,
        timestamp: new Date().toISOString(),
        sender: { agent_id: `test://sender-${n % 10}`, framework: "test" },
        recipient: { agent_id: agentIds[n % AGENTS], framework: "test" },
        message_type: "status_update",
        priority: PRIORITIES[n % PRIORITIES.length],
        payload: { n },
      };
      for (;;) {
        const sent = await call(anyLive().url, "POST", "/messages/send", message);
        if (sent !== undefined && sent.status === 202) {
          accepted.add(messageId);
          return;
        }
        if (sent !== undefined && sent.status !== 503) throw new Error(`${messageId}: ${sent.status} ${JSON.stringify(sent.body)}`);
        await delay(100);
      }
    };
    const createWorkflow = async (n: number): Promise<void> => {
      const worker = agentIds[n % AGENTS]!;
      const body = {
        initiator: "troupe://orchestrator",
        participants: [{ agent_id: worker, role: "dev" }],
        steps: [
          { name: "design", required_agents: [worker], task: "design it" },
          { name: "review", required_agents: [worker], task: "review it" },
        ],
        dispatch: "auto",
      };
      for (;;) {
        const created = await call(anyLive().url, "POST", "/sessions", body);
        if (created !== undefined && created.status === 201) {
          sessionIds.push(created.body.session_id as string);
          return;
        }
        if (created !== undefined && created.status !== 503) throw new Error(`workflow ${n}: ${created.status} ${JSON.stringify(created.body)}`);
        await delay(100);
      }
    };
    // The load goes in KILLS + 1 phases: the next one is let go as a node is killed, so that every kill finds
    // messages and workflows in flight, and the load goes on while the node is down.
    let kills = 0;
    const inParallel = async (count: number, width: number, work: (n: number) => Promise<void>): Promise<void> => {
      const perPhase = count / (KILLS + 1);
      let next = 0;
      await Promise.all(
        Array.from({ length: width }, async () => {
          while (next < count) {
            if (next >= (kills + 1) * perPhase) await delay(20);
            else await work(next++);
          }
        }),
      );
    };
    const load = Promise.all([inParallel(MESSAGES, 20, sendMessage), inParallel(WORKFLOWS, 4, createWorkflow)]);

    // --- the kills: a random node, at a random moment, restarted once its workflows are taken over.
    const database = "postgres";
    const durableAcks = async (): Promise<Set<string>> => {
      const rows = await postgres.query<{ id: string }>(
        "SELECT id FROM troupe.records WHERE collection = 'message_status' AND (value::jsonb)->>'status' = 'acknowledged'",
        [],
        database,
      );
      // The test's messages only (not the workflows' tasks and answers).
      return new Set(rows.map((row) => row.id.slice(row.id.indexOf("\u001f") + 1)).filter((messageId) => messageId.startsWith("m-")));
    };
    const workflowsNaming = async (nodeId: string, activeOnly = false): Promise<number> => {
      const active = activeOnly ? " AND (value::jsonb)->'snapshot'->>'value' NOT IN ('completed', 'terminated')" : "";
      return (
        await postgres.query<{ id: string }>(
          `SELECT id FROM troupe.records WHERE collection = 'workflows' AND (value::jsonb)->>'node' = $1${active}`,
          [nodeId],
          database,
        )
      ).length;
    };
    /** Durable acks at a moment: none of these may reach an agent after it. */
    const checkpoints: { at: number; acked: Set<string> }[] = [];
    const failoversMs: number[] = [];
    const killedOwning: number[] = [];
    const inFlightAtKill: number[] = [];
    /** Which node was killed when (epoch ms, the clock of the events' \`ts\`): a restarted node is another incarnation. */
    const killedNodes: { nodeId: string; at: number }[] = [];
    for (let kill = 0; kill < KILLS; kill += 1) {
      // A random moment: once 20 to 80 % of this phase's messages were accepted.
      const threshold = Math.floor((kill + 0.2 + 0.6 * Math.random()) * (MESSAGES / (KILLS + 1)));
      await until(() => accepted.size >= threshold, 60_000, `${threshold} messages accepted`);
      // A random node among those running workflows (any, if none does): each kill moves workflows.
      const owners = await Promise.all(nodes.map(async (node) => ((await workflowsNaming(node.nodeId, true)) > 0 ? [node] : [])));
      const victim = pick(owners.flat().length > 0 ? owners.flat() : nodes);
      // Durable when the query answers: a delivery after that is one too many (one before it may be the first).
      const acked = await durableAcks();
      checkpoints.push({ at: performance.now(), acked });
      killedOwning.push(await workflowsNaming(victim.nodeId, true));
      const owned = await workflowsNaming(victim.nodeId);
      inFlightAtKill.push([...accepted].filter((messageId) => !deliveries.has(messageId)).length);
      const exited = once(victim.child, "exit");
      const killedAt = performance.now();
      killedNodes.push({ nodeId: victim.nodeId, at: Date.now() });
      if (process.env["TROUPE_CLUSTER_LOGS"] !== undefined) process.stdout.write(`kill ${victim.nodeId} (pid ${victim.child.pid}) at ${Date.now()}\n`);
      victim.child.kill("SIGKILL");
      kills += 1;
      await exited;
      // Its workflows run on a survivor once no record names it.
      await until(async () => (await workflowsNaming(victim.nodeId)) === 0, 10 * LEASE_MS, `the workflows of ${victim.nodeId} taken over`);
      if (owned > 0) failoversMs.push(Math.round(performance.now() - killedAt));
      const restarted = await serveNode(victim.nodeId);
      nodes[nodes.indexOf(victim)] = restarted;
      watchEvents(restarted);
    }
    await load;
    const loadDoneAt = performance.now();

    // --- everything arrives, every workflow completes.
    await until(() => [...accepted].every((messageId) => deliveries.has(messageId)), 60_000, "every accepted message delivered");
    const completed = async (): Promise<number> =>
      (
        await postgres.query<{ id: string }>(
          "SELECT id FROM troupe.records WHERE collection = 'workflows' AND (value::jsonb)->'snapshot'->>'value' = 'completed'",
          [],
          database,
        )
      ).length;
    await until(async () => (await completed()) === WORKFLOWS, 60_000, "every workflow completed").catch(async (error: unknown) => {
      const rows = await postgres.query<{ id: string; value: string }>(
        "SELECT id, value FROM troupe.records WHERE collection = 'workflows' AND (value::jsonb)->'snapshot'->>'value' <> 'completed'",
        [],
        database,
      );
      const stuck = rows.map((row) => ({ id: row.id, ...JSON.parse(row.value) }));
      const events = stuck.map((record) => [...taskTrail].filter(([messageId]) => messageId.startsWith(record.id)));
      throw new Error(
        `${String(error)}\n${JSON.stringify(stuck.slice(0, 3), null, 1)}\n${JSON.stringify(events.slice(0, 3))}\n${nodes.map((node) => node.output()).join("\n")}`,
      );
    });
    const settledAt = performance.now();
    // The last durable acks: after one more ack wait (and a margin), none came again.
    const lastAcked = await durableAcks();
    checkpoints.push({ at: performance.now(), acked: lastAcked });
    await delay(ACK_WAIT_MS + 1_000);

    // --- the figures.
    expect(accepted.size).toBe(MESSAGES);
    expect(sessionIds).toHaveLength(WORKFLOWS);
    const deliveredTwice = [...deliveries.values()].filter((times) => times.length > 1).length;
    const againAfterAck = checkpoints.flatMap(({ at, acked }) => [...acked].filter((messageId) => (deliveries.get(messageId) ?? []).some((time) => time > at)));
    const described = againAfterAck.map(
      (messageId) => `${messageId}: ${JSON.stringify(deliveries.get(messageId)?.map(Math.round))} vs ${checkpoints.map(({ at }) => Math.round(at)).join(",")}`,
    );
    expect(described).toEqual([]);
    expect(checkpoints.at(-1)!.acked.size).toBe(MESSAGES);
    // No message's record outlives its end: the accepting node commits it before it publishes the message.
    const recordsLeft = await postgres.query<{ id: string }>("SELECT id FROM troupe.records WHERE collection = 'messages'", [], database);
    expect(recordsLeft.map(({ id }) => id)).toEqual([]);
    // Each workflow: completed with both steps, and its events on one node at a time.
    const records = await postgres.query<{ id: string; value: string }>("SELECT id, value FROM troupe.records WHERE collection = 'workflows'", [], database);
    const byId = new Map(records.map((row) => [row.id, JSON.parse(row.value)]));
    for (const sessionId of sessionIds) {
      const snapshot = byId.get(sessionId)?.snapshot;
      expect(snapshot?.value, sessionId).toBe("completed");
      expect(snapshot?.context?.completedSteps, sessionId).toEqual(["design", "review"]);
      // Each step advanced once: one answer per step in the completion.
      expect(
        snapshot?.context?.completion?.artifacts?.map((artifact: { step: string }) => artifact.step),
        sessionId,
      ).toEqual(["design", "review"]);
    }
    // For each workflow, the span of its events on each node incarnation: spans of two must not overlap.
    const spans = new Map<string, Map<string, { first: number; last: number }>>();
    for (const event of workflowEvents) {
      const perNode = spans.get(event.sessionId) ?? new Map<string, { first: number; last: number }>();
      spans.set(event.sessionId, perNode);
      // The node's incarnation: a node restarted under its id may take the workflow over from another later on.
      const incarnation = `${event.node}#${killedNodes.filter((kill) => kill.nodeId === event.node && kill.at < event.ts).length}`;
      const span = perNode.get(incarnation) ?? { first: event.ts, last: event.ts };
      perNode.set(incarnation, { first: Math.min(span.first, event.ts), last: Math.max(span.last, event.ts) });
    }
    const overlapping = [...spans].filter(([, perNode]) => {
      const sorted = [...perNode.values()].sort((a, b) => a.first - b.first);
      return sorted.some((span, index) => index > 0 && span.first <= sorted[index - 1]!.last);
    });
    expect(overlapping.map(([sessionId]) => sessionId)).toEqual([]);
    const movedWorkflows = [...spans.values()].filter((perNode) => perNode.size > 1).length;
    expect(sessionIds.every((sessionId) => spans.has(sessionId))).toBe(true);

    // --- the nodes still running stop cleanly.
    stopping = true;
    for (const socket of sockets) socket.terminate();
    const codes = await Promise.all(
      nodes.map(async (node) => {
        const exited = once(node.child, "exit");
        node.child.kill("SIGTERM");
        const [code] = (await exited) as [number | null];
        return code;
      }),
    );
    expect(codes, nodes.map((node) => node.output()).join("\n")).toEqual([0, 0, 0]);
    if (process.env["TROUPE_REPORT_CLUSTER"] !== undefined) {
      const seconds = (ms: number): string => (ms / 1000).toFixed(1);
      process.stdout.write(
        `cluster: ${MESSAGES} messages (${deliveredTwice} delivered twice, none after a durable ack), ${WORKFLOWS} workflows completed (${movedWorkflows} moved node; ${answersSent} answers), ` +
          `${KILLS} kills (at each kill: active workflows on the killed node ${killedOwning.join(", ")}, messages accepted and not yet delivered ${inFlightAtKill.join(", ")}; failover ${failoversMs.join(", ")} ms, lease ${LEASE_MS} ms, ack wait ${ACK_WAIT_MS} ms), ` +
          `load done at ${seconds(loadDoneAt - startedAt)} s, settled at ${seconds(settledAt - startedAt)} s, total ${seconds(performance.now() - startedAt)} s\n`,
      );
    }
  }, 150_000);
});
