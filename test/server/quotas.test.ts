/**
 * Fair capacity (SPEC §3.8): one client cannot take every connection slot, every session or the whole event
 * loop. Each quota answers 429 CAPACITY with `details.limit` and a `retry-after` header, and gives the room
 * back when the client lets go of what it held (or when time passes, for the request rate).
 */
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { createMockAgent, createRuntime, type Runtime } from "../../src/index.js";
import { clientOf, OwnedSessions, RateLimiter } from "../../src/server/quotas.js";
import {
  SEED_PARTICIPANTS,
  SEED_STEPS,
  SEED_AGENTS,
  call,
  envelope,
  flush,
  rawConnect,
  register,
  startBus,
  startSimulatedBus,
  TEST_KEY,
  until,
} from "../bus/support.js";

const sockets: Socket[] = [];
const runtimes: Runtime[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
});

/** Fetches with the test key and answers the status, the retry-after header and the parsed body. */
async function request(url: string, path: string, init: RequestInit = {}): Promise<{ status: number; retryAfter: string | null; body: any }> {
  const response = await fetch(`${url}${path}`, {
    ...init,
    headers: { "content-type": "application/json", "x-agent-api-key": TEST_KEY, ...(init.headers as Record<string, string> | undefined) },
  });
  const text = await response.text();
  return { status: response.status, retryAfter: response.headers.get("retry-after"), body: text === "" ? undefined : JSON.parse(text) };
}

/** Opens a TCP connection that stays open (a request line with no end); resolves once connected. */
async function openConnection(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  socket.on("error", () => {});
  await new Promise((resolve) => socket.once("connect", resolve));
  socket.write("GET /agents HTTP/1.1\r\nHost: x\r\n");
  return socket;
}

/** What the server writes to a socket until it closes it. */
function answerOf(socket: Socket): Promise<string> {
  let text = "";
  socket.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
  return new Promise((resolve) => socket.once("close", () => resolve(text)));
}

describe("the pieces", () => {
  it("a token bucket lets a burst through, then one request per 1/rate, and says how long to wait", () => {
    const clock = new SimulatedClock();
    const limiter = new RateLimiter(10, 3, clock);
    expect([limiter.take("a"), limiter.take("a"), limiter.take("a")]).toEqual([0, 0, 0]);
    expect(limiter.take("a")).toBeCloseTo(100);
    expect(limiter.take("b")).toBe(0);
    clock.increment(50);
    expect(limiter.take("a")).toBeCloseTo(50);
    clock.increment(50);
    expect(limiter.take("a")).toBe(0);
    clock.increment(10_000);
    expect([0, 1, 2, 3].map(() => limiter.take("a"))).toEqual([0, 0, 0, expect.closeTo(100)]);
    expect(new RateLimiter(0, 0, clock).take("a")).toBe(0);
  });

  it("tracks a bounded number of clients", () => {
    const limiter = new RateLimiter(1, 1, new SimulatedClock(), 100);
    for (let client = 0; client < 1_000; client += 1) limiter.take(`10.0.${client >> 8}.${client & 255}`);
    expect(limiter.size).toBe(100);
  });

  it("counts only the sessions that still live, asking their actors", () => {
    const alive = new Set(["s1", "s2"]);
    const owned = new OwnedSessions("sessions", 2, (id) => alive.has(id));
    owned.add("a", "s1");
    owned.add("a", "s2");
    expect(() => owned.check("a")).toThrow(expect.objectContaining({ type: "CAPACITY", details: expect.objectContaining({ limit: 2, retryAfterMs: 1_000 }) }));
    expect(() => owned.check("b")).not.toThrow();
    alive.delete("s1");
    expect(() => owned.check("a")).not.toThrow();
  });

  it("names IPv4 clients the same however the socket reports them", () => {
    expect(clientOf("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(clientOf("::1")).toBe("::1");
  });
});

describe("request rate per client", () => {
  it("answers 429 with retry-after past the rate, keeps /health free, and lets the client in again as time passes", async () => {
    const { bus, clock } = await startSimulatedBus({ requestsPerSecondPerClient: 5, requestBurstPerClient: 5 });
    for (let index = 0; index < 5; index += 1) expect((await request(bus.url, "/agents")).status).toBe(200);
    const refused = await request(bus.url, "/agents");
    expect(refused.status).toBe(429);
    expect(refused.retryAfter).toBe("1");
    expect(refused.body.error).toMatchObject({ type: "CAPACITY", details: { limit: 5, retryAfterMs: 200 } });
    // Without the key it costs a token too: an unauthenticated flood is throttled before the key is checked.
    expect((await request(bus.url, "/agents", { headers: { "x-agent-api-key": "wrong" } })).status).toBe(429);
    expect((await request(bus.url, "/health")).status).toBe(200);
    clock.increment(200);
    expect((await request(bus.url, "/agents")).status).toBe(200);
    expect((await request(bus.url, "/agents")).status).toBe(429);
  });

  it("reads an agent's socket more slowly past its frame rate, and loses none of its frames", async () => {
    const { bus, clock } = await startSimulatedBus({ requestsPerSecondPerClient: 10, requestBurstPerClient: 3 });
    await register(bus, "codex://fast", "codex://sink");
    const fast = await rawConnect(bus, "codex://fast", { "x-agent-api-key": TEST_KEY }, { control: true });
    const sendOne = (index: number): void => fast.socket.send(JSON.stringify(envelope("codex://fast", "codex://sink", { message_id: `f${index}` })));
    // Three within the burst, and a fourth whose token is missing: it is handled, then the socket is not read.
    for (let index = 0; index < 4; index += 1) {
      sendOne(index);
      await until(() => fast.frames.length === index + 1);
    }
    sendOne(4);
    sendOne(5);
    await flush();
    expect(fast.frames).toHaveLength(4);
    // A tenth of a second gives the one token the fourth frame lacked: reading resumes.
    clock.increment(100);
    await until(() => fast.frames.length === 6);
    expect(fast.frames.map((frame) => `${frame.message_id} ${frame.status}`)).toEqual([0, 1, 2, 3, 4, 5].map((index) => `f${index} accepted`));
  });
});

describe("connections per client", () => {
  it("answers a connection past the quota 429 and closes it; a closed one gives its slot back", async () => {
    const bus = await startBus({ maxConnectionsPerClient: 3 });
    const held = await Promise.all([0, 1, 2].map(() => openConnection(bus.url)));
    const { hostname, port } = new URL(bus.url);
    const extra = connect(Number(port), hostname);
    sockets.push(extra);
    extra.on("error", () => {});
    const answer = await answerOf(extra);
    expect(answer).toMatch(/^HTTP\/1\.1 429 Too Many Requests\r\n/);
    expect(answer).toMatch(/Retry-After: 1\r\n/);
    expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)).error).toMatchObject({ type: "CAPACITY", details: { limit: 3 } });
    held[0]!.destroy();
    // The server hears of the close a moment later: until then the slot is still taken.
    let status = 0;
    for (let attempt = 0; attempt < 50 && status !== 200; attempt += 1) {
      await flush();
      status = (await request(bus.url, "/agents")).status;
    }
    expect(status).toBe(200);
  });
});

describe("sessions per client", () => {
  it("holds a client to its bridge sessions until it closes one", async () => {
    const runtime = createRuntime({ agents: [createMockAgent({ id: "echo" })], defaultAgentId: "echo" });
    runtimes.push(runtime);
    await runtime.start();
    const bus = await startBus({ runtime, maxBridgeSessionsPerClient: 2 });
    const create = (): Promise<{ status: number; retryAfter: string | null; body: any }> =>
      request(bus.url, "/bridge/sessions_create", { method: "POST", body: "{}" });
    const first = await create();
    expect(first.status).toBe(200);
    expect((await create()).status).toBe(200);
    const refused = await create();
    expect(refused).toMatchObject({ status: 429, retryAfter: "1", body: { error: { type: "CAPACITY", details: { limit: 2 } } } });
    expect((await request(bus.url, "/bridge/sessions_close", { method: "POST", body: JSON.stringify({ sessionId: first.body.sessionId }) })).status).toBe(200);
    expect((await create()).status).toBe(200);
  });

  it("holds a client to its workflow sessions until one is deleted", async () => {
    const bus = await startBus({ maxWorkflowSessionsPerClient: 2 });
    await register(bus, ...Object.values(SEED_AGENTS));
    const create = (): Promise<{ status: number; body: any }> =>
      call(bus, "POST", "/sessions", { initiator: SEED_AGENTS.lead, participants: SEED_PARTICIPANTS, steps: SEED_STEPS });
    const first = await create();
    expect(first.status).toBe(201);
    expect((await create()).status).toBe(201);
    const refused = await create();
    expect(refused).toMatchObject({ status: 429, body: { error: { type: "CAPACITY", details: { limit: 2 } } } });
    expect((await call(bus, "DELETE", `/sessions/${first.body.session_id}`)).status).toBe(200);
    expect((await create()).status).toBe(201);
  });
});
