/**
 * `troupe serve` as a child process, for tests of what a client can do to the real server: started on
 * 127.0.0.1 port 0 with a key and a configuration file (whose `bus` section sets small bounds), with a probe
 * that answers its heap after a full garbage collection. Processes, sockets and files go after each test.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, expect } from "vitest";
import WebSocket from "ws";
import { refusedUpgradeStatus } from "./refused-upgrade.js";
import { frameText } from "../../src/protocol/frames.js";

/** The key every spawned server requires. */
export const SERVE_KEY = "attack-test-key";
/**
 * How long `/health` may take after an attack before the server counts as hung. A liveness bound, not a speed
 * target (speed is measured in `npm run bench`, never asserted): issue 9's 100 ms failed on a loaded CI machine.
 */
const HEALTH_DEADLINE_MS = 10_000;

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const heapProbe = pathToFileURL(fileURLToPath(new URL("../fixtures/heap-probe.mjs", import.meta.url))).href;

const children: ChildProcess[] = [];
const directories: string[] = [];
const sockets: WebSocket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.terminate();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

/** How a server is started: the `bus` section of its configuration file, and `--agent-auth`. */
export interface ServeProcessOptions {
  bus?: Record<string, unknown>;
  agentAuth?: "token" | "shared";
}

/** What the server holds after full garbage collections, in bytes. */
export interface HeapUse {
  heapUsed: number;
  external: number;
  rss: number;
}

/** An HTTP answer: the status and the parsed JSON body (left untyped: its shape is what tests assert). */
export interface Answer {
  status: number;
  body: any;
}

/** A running `troupe serve`. */
export interface ServeProcess {
  url: string;
  child: ChildProcess;
  /** Everything it printed, stdout and stderr. */
  output(): string;
  /** Whether the process has not exited. */
  alive(): boolean;
  /** Its heap (and external memory) after full garbage collections. */
  heap(): Promise<HeapUse>;
  /** Calls a route with the key; `headers` add to (or override) it. A string body is sent as is. */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Answer>;
}

/** Starts `troupe serve --port 0 --api-key … --config <file>`; resolves once it says where it listens. */
export async function startServeProcess({ bus, agentAuth }: ServeProcessOptions = {}): Promise<ServeProcess> {
  const directory = mkdtempSync(join(tmpdir(), "troupe-serve-"));
  directories.push(directory);
  const config = join(directory, "troupe.json");
  writeFileSync(config, JSON.stringify(bus === undefined ? {} : { bus }));
  // A developer's own keys must not make the server reach a real provider from a test.
  const {
    AGENT_BUS_API_KEY: _key,
    OPENAI_API_KEY: _openai,
    OPENAI_BASE_URL: _base,
    ANTHROPIC_API_KEY: _anthropic,
    GEMINI_API_KEY: _gemini,
    ...env
  } = process.env;
  const args = [
    "serve",
    "--port",
    "0",
    "--host",
    "127.0.0.1",
    "--api-key",
    SERVE_KEY,
    "--config",
    config,
    "--data",
    join(directory, "data"),
    ...(agentAuth === undefined ? [] : ["--agent-auth", agentAuth]),
  ];
  const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", "--import", heapProbe, "src/cli/main.ts", ...args], {
    cwd: projectRoot,
    env,
    stdio: ["ignore", "pipe", "pipe", "ipc"],
  });
  children.push(child);
  let output = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const listening = /troupe listening on (http:\/\/\S+)/;
  await waitFor(() => listening.test(output) || child.exitCode !== null, 15_000);
  const found = listening.exec(output);
  if (found === null) throw new Error(`troupe serve did not start: ${output}`);
  const url = found[1]!;
  // The first answer of a fresh process compiles its code: the health check after an attack measures a warm one.
  await (await fetch(`${url}/health`)).arrayBuffer();
  return {
    url,
    child,
    output: () => output,
    alive: () => child.exitCode === null && child.signalCode === null,
    heap: () =>
      new Promise<HeapUse>((resolve, reject) => {
        child.once("message", (message) => resolve(message as HeapUse));
        if (!child.send("heap")) reject(new Error("the heap probe's channel is closed"));
      }),
    call: async (method, path, body, headers = {}) => {
      const response = await fetch(`${url}${path}`, {
        method,
        headers: { "content-type": "application/json", "x-agent-api-key": SERVE_KEY, ...headers },
        ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
      });
      const text = await response.text();
      return { status: response.status, body: text === "" ? undefined : JSON.parse(text) };
    },
  };
}

/** What every attack must leave: the process alive, `/health` answering 200 (not hung), and no crash in its output. */
export async function expectStillServing(served: ServeProcess): Promise<void> {
  const health = await fetch(`${served.url}/health`, { signal: AbortSignal.timeout(HEALTH_DEADLINE_MS) });
  expect(health.status).toBe(200);
  expect(served.alive()).toBe(true);
  expect(served.output()).not.toMatch(/ECONNRESET|uncaught|out of memory|Maximum call stack/i);
}

/** An agent's raw WebSocket: what it received, and how it closed. */
export interface SocketAgent {
  socket: WebSocket;
  frames: any[];
  closed: Promise<{ code: number; reason: string }>;
  ack(messageId: string): void;
  send(frame: unknown): void;
}

/** How a socket connects: its token (`x-agent-token`), whether it asks for control frames, whether it acks every message. */
export interface SocketOptions {
  token?: string;
  control?: boolean;
  autoAck?: boolean;
}

/** Opens an agent's socket with the key; resolves once the handshake is done, rejects when it is refused. */
export async function connectSocket(
  served: ServeProcess,
  agentId: string,
  { token, control = false, autoAck = false }: SocketOptions = {},
): Promise<SocketAgent> {
  const query = `agent_id=${encodeURIComponent(agentId)}${control ? "&control=1" : ""}`;
  const headers = { "x-agent-api-key": SERVE_KEY, ...(token === undefined ? {} : { "x-agent-token": token }) };
  const socket = new WebSocket(`${served.url.replace("http", "ws")}/agents/connect?${query}`, { headers });
  sockets.push(socket);
  const frames: any[] = [];
  const ack = (messageId: string): void => socket.send(JSON.stringify({ type: "ack", message_id: messageId }));
  socket.on("message", (data) => {
    const frame = JSON.parse(frameText(data));
    frames.push(frame);
    if (autoAck && typeof frame.message_id === "string" && frame.type === undefined) ack(frame.message_id);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return { socket, frames, closed, ack, send: (frame) => socket.send(typeof frame === "string" ? frame : JSON.stringify(frame)) };
}

/** The status an upgrade for `agentId` is refused with (it must be refused). */
export function upgradeStatus(served: ServeProcess, agentId: string, headers: Record<string, string>): Promise<number> {
  return refusedUpgradeStatus(`${served.url.replace("http", "ws")}/agents/connect?agent_id=${encodeURIComponent(agentId)}`, headers, sockets);
}

let sequence = 0;

/** A valid envelope from `from` to `to`; `overrides` replace top-level fields. */
export function envelope(from: string, to: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  sequence += 1;
  return {
    message_id: `attack-${process.pid}-${sequence}`,
    timestamp: "2026-11-30T11:00:00Z",
    sender: { agent_id: from, framework: from.split("://")[0] },
    recipient: { agent_id: to, framework: to.split("://")[0] },
    message_type: "task_request",
    priority: "medium",
    payload: { n: sequence },
    ...overrides,
  };
}

/** Registers an agent; resolves with its `agent_token`. */
export async function registerAgent(served: ServeProcess, agentId: string): Promise<string> {
  const answer = await served.call("POST", "/agents/register", { agent_descriptor: { agent_id: agentId } });
  if (answer.status !== 201) throw new Error(`register ${agentId}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body.agent_token as string;
}

/**
 * Accepted work that an attack must not lose: a registered agent with messages waiting for it while it is
 * offline. `expectKept` checks afterwards that it is still registered and gets every one of them.
 */
export async function acceptWitness(served: ServeProcess, agentId = "cc://witness"): Promise<{ expectKept(): Promise<void> }> {
  const token = await registerAgent(served, agentId);
  const messageIds: string[] = [];
  for (let index = 0; index < 3; index += 1) {
    // From an agent that is not registered: no token is needed to send as it.
    const message = envelope("cc://before-the-attack", agentId, { message_type: "status_update" });
    const answer = await served.call("POST", "/messages/send", message);
    expect(answer.status).toBe(202);
    messageIds.push(message["message_id"] as string);
  }
  return {
    async expectKept() {
      const listed = await served.call("GET", "/agents?limit=1000");
      expect(listed.body.agents.map((agent: { agent_id: string }) => agent.agent_id)).toContain(agentId);
      const witness = await connectSocket(served, agentId, { token, autoAck: true });
      await waitFor(() => messageIds.every((messageId) => witness.frames.some((frame) => frame.message_id === messageId)));
      for (const messageId of messageIds) {
        await waitForAsync(async () => (await served.call("GET", `/messages/${messageId}`)).body.status === "acknowledged");
      }
      witness.socket.close();
    },
  };
}

/** Waits (on real time, briefly) until `condition` holds; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** `waitFor` for a condition that has to ask the server. */
export async function waitForAsync(condition: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
