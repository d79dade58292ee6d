/**
 * A seeded, repeatable fuzz of the bus (SPEC §3.8): 10,000 generated requests over every route, with and
 * without the key, generated WebSocket frames from a connected agent, and connection resets in between. No
 * request may answer 500, the server keeps answering, and its heap stays under a stated bound.
 */
import { connect } from "node:net";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { register, rawConnect, startBus, TEST_KEY, until } from "../bus/support.js";

const SEED = 20_261_130;
const REQUESTS = 10_000;
/** The heap the bus may grow by over the whole run. */
const HEAP_BOUND_BYTES = 256 * 1024 * 1024;

const agentIds = ["cc://a", "cc://b", "troupe://x", "cc://\u202Eevil", "not an id"];
const segment = fc.oneof(
  fc.constantFrom(...agentIds.map(encodeURIComponent), "send", "sess_1", "m1", "%E0%A4%A", ""),
  fc.string({ maxLength: 12 }).map(encodeURIComponent),
);
const path = fc.oneof(
  fc.constantFrom(
    "/health",
    "/metrics",
    "/agents",
    "/sessions",
    "/messages/send",
    "/agents/register",
    "/bridge/bridge_health",
    "/bridge/sessions_create",
    "/",
    "/ui",
  ),
  fc
    .tuple(
      fc.constantFrom("/messages/", "/agents/", "/sessions/", "/bridge/", "/sessions/sess_1/"),
      segment,
      fc.constantFrom("", "/summary", "/workflow", "/context", "/participants", "/complete", "/terminate"),
    )
    .map(([prefix, middle, suffix]) => `${prefix}${middle}${suffix}`),
  fc
    .tuple(fc.constantFrom("/agents", "/sessions"), fc.constantFrom("limit", "cursor", "format"), fc.string({ maxLength: 8 }))
    .map(([base, key, value]) => `${base}?${key}=${encodeURIComponent(value)}`),
);
const envelopeLike = fc.record(
  {
    message_id: fc.oneof(fc.string({ maxLength: 20 }), fc.integer()),
    timestamp: fc.constantFrom("2025-02-02T11:00:00Z", "yesterday"),
    sender: fc.record({ agent_id: fc.constantFrom(...agentIds), framework: fc.string({ maxLength: 5 }) }, { requiredKeys: [] }),
    recipient: fc.record({ agent_id: fc.constantFrom(...agentIds), framework: fc.string({ maxLength: 5 }) }, { requiredKeys: [] }),
    message_type: fc.constantFrom("task_request", "task_response", "status_update", "error", "heartbeat", "nope"),
    payload: fc.jsonValue({ maxDepth: 3 }),
    routing: fc.record(
      { timeout: fc.constantFrom("1s", "0s", "5m", "forever"), delivery_mode: fc.constantFrom("async", "sync", "later") },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: [] },
);
const body = fc.oneof(
  fc.constant(undefined),
  fc.string({ maxLength: 64 }),
  fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)),
  envelopeLike.map((value) => JSON.stringify(value)),
  fc.integer({ min: 60, max: 80 }).map((depth) => `${"[".repeat(depth)}${"]".repeat(depth)}`),
);
const request = fc.record({
  method: fc.constantFrom("GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"),
  path,
  body,
  keyed: fc.boolean(),
  reset: fc.integer({ min: 0, max: 49 }).map((roll) => roll === 0),
});

describe("a fuzzed bus", () => {
  it(`answers ${REQUESTS.toLocaleString("en-US")} generated requests, frames and resets without a 500 or a crash, in bounded memory`, async () => {
    const bus = await startBus();
    await register(bus, "cc://a", "cc://b");
    const agent = await rawConnect(bus, "cc://a", undefined, { control: true });
    const { port } = new URL(bus.url);
    const heapBefore = process.memoryUsage().heapUsed;
    const failures: string[] = [];
    await fc.assert(
      fc.asyncProperty(request, fc.jsonValue({ maxDepth: 3 }), async (generated, frame) => {
        if (generated.reset) {
          // A connection reset at once, after part of a request.
          const socket = connect(Number(port), "127.0.0.1");
          socket.on("error", () => {});
          socket.once("connect", () => {
            socket.write(`${generated.method} ${generated.path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a":`);
            socket.resetAndDestroy();
          });
        }
        if (agent.socket.readyState === agent.socket.OPEN) agent.socket.send(JSON.stringify(frame));
        const hasBody = generated.body !== undefined && generated.method !== "GET" && generated.method !== "HEAD";
        const response = await fetch(`${bus.url}${generated.path}`, {
          method: generated.method,
          headers: { "content-type": "application/json", ...(generated.keyed ? { "x-agent-api-key": TEST_KEY } : {}) },
          ...(hasBody ? { body: generated.body } : {}),
        });
        await response.arrayBuffer();
        if (response.status >= 500 && response.status !== 503 && response.status !== 504)
          failures.push(`${generated.method} ${generated.path} → ${response.status}`);
        return true;
      }),
      { seed: SEED, numRuns: REQUESTS },
    );
    expect(failures).toEqual([]);
    // Still answering, and the agent's socket survived every frame it sent.
    expect((await fetch(`${bus.url}/health`)).status).toBe(200);
    await until(() => agent.socket.readyState === agent.socket.OPEN);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(HEAP_BOUND_BYTES);
  }, 120_000);
});
