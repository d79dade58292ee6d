/**
 * Buses for tests: started on 127.0.0.1 port 0, optionally on a simulated clock, with agents and raw sockets
 * that are all closed after each test.
 */
import { afterEach } from "vitest";
import WebSocket from "ws";
import { refusedUpgradeStatus } from "../support/refused-upgrade.js";
import { SimulatedClock, type AnyActorRef } from "xstate";
import {
  CommunicationBus,
  connectAgent,
  type AgentClient,
  type BusOptions,
  type ConnectAgentOptions,
  type MessageEnvelope,
  type Runtime,
} from "../../src/index.js";
import { frameText } from "../../src/protocol/frames.js";

/** The key every test bus requires. */
export const TEST_KEY = "test-key";
/** Where simulated clocks start: a plausible epoch time. */
export const CLOCK_START = 1_700_000_000_000;

const buses: CommunicationBus[] = [];
const clients: AgentClient[] = [];
const sockets: WebSocket[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const socket of sockets.splice(0)) socket.terminate();
  await Promise.all(buses.splice(0).map((bus) => bus.stop()));
});

/** A started bus, stopped after the test. `closeGraceMs` is short so that stopping never waits long. */
export async function startBus(options: BusOptions = {}): Promise<CommunicationBus> {
  const bus = await startSuiteBus(options);
  buses.push(bus);
  return bus;
}

/** A started bus that outlives each test: the suite stops it (e.g. from the teardown `beforeAll` returns). */
export async function startSuiteBus(options: BusOptions = {}): Promise<CommunicationBus> {
  const bus = new CommunicationBus({ host: "127.0.0.1", port: 0, apiKey: TEST_KEY, closeGraceMs: 50, env: {}, ...options });
  await bus.start();
  return bus;
}

/** A started bus on a simulated clock, for retries, timeouts and heartbeats. */
export async function startSimulatedBus(options: BusOptions = {}): Promise<{ bus: CommunicationBus; clock: SimulatedClock }> {
  const clock = new SimulatedClock();
  clock.set(CLOCK_START);
  const bus = await startBus({ clock, ...options });
  return { bus, clock };
}

/** An HTTP answer: the status and the parsed JSON body (left untyped: its shape is what tests assert). */
export interface Answer {
  status: number;
  body: any;
}

/** Calls a route of the bus with the test key (unless `headers` overrides it). A string body is sent as is. */
export async function call(
  bus: Pick<CommunicationBus, "url">,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const response = await fetch(`${bus.url}${path}`, {
    method,
    headers: { "content-type": "application/json", "x-agent-api-key": TEST_KEY, ...headers },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text) };
}

let sequence = 0;

/** A valid envelope from `from` to `to`; `overrides` replace top-level fields. */
export function envelope(from: string, to: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  sequence += 1;
  return {
    message_id: `msg-${sequence}`,
    timestamp: "2025-02-02T11:00:00Z",
    sender: { agent_id: from, framework: from.split("://")[0] },
    recipient: { agent_id: to, framework: to.split("://")[0] },
    message_type: "task_request",
    priority: "medium",
    payload: { n: sequence },
    ...overrides,
  };
}

/** Registers agents over HTTP. */
export async function register(bus: CommunicationBus, ...agentIds: string[]): Promise<void> {
  for (const agentId of agentIds) {
    const answer = await call(bus, "POST", "/agents/register", {
      agent_descriptor: { agent_id: agentId, framework: agentId.split("://")[0], capabilities: [], metadata: {} },
    });
    if (answer.status !== 201) throw new Error(`register ${agentId}: ${JSON.stringify(answer.body)}`);
  }
}

/** An agent connected with `connectAgent` that records what it receives; closed after the test. */
export interface TestAgent {
  client: AgentClient;
  received: MessageEnvelope[];
}

/** Connects an agent (registered or a participant) and waits until its socket is open. */
export async function connect(bus: CommunicationBus, agentId: string, options: Partial<ConnectAgentOptions> = {}): Promise<TestAgent> {
  const received: MessageEnvelope[] = [];
  const client = connectAgent({
    url: bus.url,
    agentId,
    apiKey: TEST_KEY,
    onMessage: (message) => {
      received.push(message);
    },
    ...options,
  });
  clients.push(client);
  await client.ready();
  await until(() => bus.listAgents().some((agent) => agent.agent_id === agentId && agent.online));
  return { client, received };
}

/** A raw WebSocket to the bus that neither acks nor answers pings by itself: the tests decide. */
export interface RawAgent {
  socket: WebSocket;
  frames: any[];
  ack(messageId: string): void;
  closed: Promise<{ code: number; reason: string }>;
}

/** How a raw socket connects: `control` asks for the bus's accepted / rejected frames; `path` is where it connects. */
export interface RawConnectOptions {
  control?: boolean;
  path?: "/agents/connect" | "/";
}

/** Opens a raw socket for `agentId`; resolves once the handshake is done. */
export async function rawConnect(
  bus: Pick<CommunicationBus, "url">,
  agentId: string,
  headers: Record<string, string> = { "x-agent-api-key": TEST_KEY },
  { control = false, path = "/agents/connect" }: RawConnectOptions = {},
): Promise<RawAgent> {
  const query = `agent_id=${encodeURIComponent(agentId)}${control ? "&control=1" : ""}`;
  const socket = new WebSocket(`${bus.url.replace("http", "ws")}${path}?${query}`, { headers, autoPong: false });
  sockets.push(socket);
  const frames: any[] = [];
  socket.on("message", (data) => frames.push(JSON.parse(frameText(data))));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return { socket, frames, ack: (messageId) => socket.send(JSON.stringify({ type: "ack", message_id: messageId })), closed };
}

/** The status code an upgrade is refused with. */
export function upgradeStatus(bus: CommunicationBus, query: string, headers: Record<string, string> = { "x-agent-api-key": TEST_KEY }): Promise<number> {
  return refusedUpgradeStatus(`${bus.url.replace("http", "ws")}/agents/connect${query}`, headers, sockets);
}

/** The delivery actor carrying a message (by its key, `messageKey(sender, message_id)`), found in the runtime's actor tree. */
export function deliveryActorOf(runtime: Runtime, key: string): AnyActorRef | undefined {
  for (const view of runtime.actors()) {
    const { id, machine } = view();
    if (machine !== "delivery") continue;
    const actor = runtime.pooledChild(id);
    if ((actor?.getSnapshot() as { context?: { key?: string } } | undefined)?.context?.key === key) return actor;
  }
  return undefined;
}

/** A message's status, or undefined while the bus does not know it (yet). */
export function statusOf(bus: CommunicationBus, messageId: string): string | undefined {
  try {
    return bus.messageStatus(messageId).status;
  } catch {
    return undefined;
  }
}

/** Waits (on real time, briefly) until `condition` holds; fails after `timeoutMs`. */
export async function until(condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms: ${condition.toString()}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Lets socket and promise callbacks run, without moving a simulated clock. */
export async function flush(): Promise<void> {
  for (let turn = 0; turn < 5; turn += 1) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** The agents of the seed tutorial (communication-bus-sessions.txt). */
export const SEED_AGENTS = {
  lead: "claude-code://orchestrator",
  backend: "opencode://backend",
  frontend: "codex://frontend",
  qa: "claude-code://qa",
} as const;

/** The seed tutorial's workflow: its three steps and the participants besides the initiator. */
export const SEED_STEPS = [
  { name: "design", required_agents: [SEED_AGENTS.lead] },
  { name: "implementation", required_agents: [SEED_AGENTS.backend, SEED_AGENTS.frontend] },
  { name: "review", required_agents: [SEED_AGENTS.qa] },
];
export const SEED_PARTICIPANTS = [
  { agent_id: SEED_AGENTS.backend, role: "implementer" },
  { agent_id: SEED_AGENTS.frontend, role: "implementer" },
  { agent_id: SEED_AGENTS.qa, role: "reviewer" },
];
