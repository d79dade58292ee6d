/**
 * The event stream as server-sent events (`GET /events`): read by the `eventsource` package (a WHATWG
 * `EventSource` for Node) and by the wire-format parser of ./support.ts; the same filters, `since` and
 * `Last-Event-ID`, heartbeats, the overflow of a client that never reads, the key, and the bus stopping.
 */
import { request } from "node:http";
import { EventSource } from "eventsource";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { createMockAgent, type BusOptions, type CommunicationBus, type Runtime } from "../../src/index.js";
import { call, CLOCK_START, flush, TEST_KEY, until } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";
import { createEchoWorkflow, readServerSentEvents, SseParser, type Frame } from "./support.js";

const sources: EventSource[] = [];

afterEach(() => {
  for (const source of sources.splice(0)) source.close();
});

async function startEventBus(busOptions: BusOptions = {}): Promise<{ bus: CommunicationBus; runtime: Runtime }> {
  return startRuntimeBus({ agents: [createMockAgent({ id: "echo" })] }, busOptions);
}

async function promptOnce(runtime: Runtime, prompt = "hi there"): Promise<string> {
  const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: "echo" });
  await runtime.bridge.sessionsPrompt({ sessionId, prompt });
  await runtime.bridge.sessionsClose({ sessionId });
  return sessionId;
}

/** An `EventSource` on the bus, keyed through its `fetch`; `lastEventId` is sent as a reconnecting one would. */
function openEventSource(bus: CommunicationBus, query: string, lastEventId?: string): { source: EventSource; messages: MessageEvent[]; opened: Promise<void> } {
  const source = new EventSource(`${bus.url}/events${query}`, {
    fetch: (url, init) =>
      fetch(url, {
        ...init,
        headers: { ...init.headers, "x-agent-api-key": TEST_KEY, ...(lastEventId === undefined ? {} : { "last-event-id": lastEventId }) },
      }),
  });
  sources.push(source);
  const messages: MessageEvent[] = [];
  source.onmessage = (message) => messages.push(message);
  const opened = new Promise<void>((resolve, reject) => {
    source.onopen = () => resolve();
    source.onerror = (error) => reject(new Error(`EventSource error: ${error.message ?? "?"}`));
  });
  return { source, messages, opened };
}

describe("GET /events (server-sent events)", () => {
  it("streams every event to an EventSource, each with its seq as the event id", async () => {
    const { bus, runtime } = await startEventBus();
    const { messages, opened } = openEventSource(bus, "");
    await opened;
    const sessionId = await promptOnce(runtime);
    await until(() => messages.some((message) => JSON.parse(message.data).type === "actor.stopped" && JSON.parse(message.data).actorId === sessionId));

    const frames = messages.map((message) => JSON.parse(message.data) as Frame);
    expect(messages.map((message) => message.lastEventId)).toEqual(frames.map((frame) => String(frame.seq)));
    expect(frames.map((frame) => frame.seq)).toEqual(frames.map((_, index) => (frames[0]?.seq ?? 0) + index));
    expect(frames.filter((frame) => frame.type === "prompt.delta").map((frame) => frame.delta)).toEqual(["Echo: ", "hi ", "there"]);
  });

  it("replays after Last-Event-ID, which wins over the ?since= of the first connection, as an EventSource reconnects", async () => {
    const { bus, runtime } = await startEventBus();
    const first = openEventSource(bus, "?types=prompt.*&since=0");
    await first.opened;
    await promptOnce(runtime, "one");
    await until(() => first.messages.some((message) => JSON.parse(message.data).type === "prompt.completed"));
    first.source.close();
    const lastEventId = first.messages.at(-1)?.lastEventId ?? "";

    await promptOnce(runtime, "two");
    const again = openEventSource(bus, "?types=prompt.*&since=0", lastEventId);
    await again.opened;
    await until(() => again.messages.some((message) => JSON.parse(message.data).type === "prompt.completed"));

    const replayed = again.messages.map((message) => JSON.parse(message.data) as Frame);
    expect(replayed.every((frame) => frame.seq > Number(lastEventId))).toBe(true);
    expect(replayed.filter((frame) => frame.type === "prompt.delta").map((frame) => frame.delta)).toEqual(["Echo: ", "two"]);
    const firstDeltas = first.messages.map((message) => JSON.parse(message.data) as Frame).filter((frame) => frame.type === "prompt.delta");
    expect(firstDeltas.map((frame) => frame.delta)).toEqual(["Echo: ", "one"]);
  });

  it("speaks the wire format: headers, an opening comment, id and data lines, a missed frame without an id", async () => {
    const { bus, runtime } = await startEventBus({ eventBufferSize: 3 });
    const reader = await readServerSentEvents(bus, "?since=0");
    expect(reader.status).toBe(200);
    expect(reader.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(reader.headers.get("cache-control")).toBe("no-cache, no-transform");
    await until(() => reader.comments.length === 1);
    expect(reader.comments).toEqual(["troupe event stream"]);
    await promptOnce(runtime);
    await reader.until((events) => events.some((event) => event.data.type === "prompt.completed"));
    for (const event of reader.events) expect(event.id).toBe(String(event.data.seq));

    const late = await readServerSentEvents(bus, "?since=1");
    await late.until((events) => events.length >= 4);
    expect(late.events[0]).toEqual({ id: undefined, data: expect.objectContaining({ type: "missed", since: 1 }) });
    expect(late.events.slice(1, 4).map((event) => event.data.seq)).toEqual(late.events.slice(1, 4).map((_, index) => late.events[0]?.data.oldestSeq + index));
  });

  it("sends a keep-alive comment every heartbeatInterval", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const { bus } = await startEventBus({ clock, heartbeatInterval: 5_000 });
    const reader = await readServerSentEvents(bus, "?types=workflow.*");
    await until(() => reader.comments.length === 1);
    clock.increment(5_000);
    await until(() => reader.comments.length === 2);
    clock.increment(5_000);
    await until(() => reader.comments.length === 3);
    expect(reader.comments).toEqual(["troupe event stream", "keep-alive", "keep-alive"]);
  });

  it("ends the stream of a client that never reads with an overflow frame, holding no more than maxSocketBufferBytes for it", async () => {
    const maxSocketBufferBytes = 64 * 1024;
    const { bus } = await startEventBus({ eventBufferSize: 16, maxSocketBufferBytes });
    const received: string[] = [];
    const response = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      const req = request(`${bus.url}/events?types=workflow.context_updated`, { headers: { "x-agent-api-key": TEST_KEY } }, resolve);
      req.on("error", reject);
      req.end();
    });
    response.pause();
    const workflowId = createEchoWorkflow(bus);
    const bulk = "x".repeat(60_000);
    for (let update = 0; bus.events.stats().overflows === 0 && update < 5_000; update += 1) {
      bus.sessionManager.updateSharedContext(workflowId, { bulk, update });
      await flush();
    }
    expect(bus.events.stats()).toMatchObject({ overflows: 1, subscribers: 0 });
    expect(bus.events.stats().peakSubscriberBufferedBytes).toBeLessThanOrEqual(maxSocketBufferBytes + 61_000);

    const parser = new SseParser(
      (event) => received.push(event.data),
      () => {},
    );
    response.setEncoding("utf8");
    response.on("data", (text: string) => parser.push(text));
    response.resume();
    await new Promise((resolve) => response.once("end", resolve));
    expect(JSON.parse(received.at(-1) ?? "{}")).toMatchObject({ type: "overflow", message: expect.stringContaining("Too slow") });
  });

  it("applies the filters and refuses a bad query with 400 naming the parameter", async () => {
    const { bus, runtime } = await startEventBus();
    const reader = await readServerSentEvents(bus, "?types=prompt.completed,agent.*");
    await promptOnce(runtime);
    await reader.until((events) => events.some((event) => event.data.type === "prompt.completed"));
    await flush();
    expect(new Set(reader.events.map((event) => event.data.type))).toEqual(new Set(["agent.busy", "agent.ready", "prompt.completed"]));

    for (const [query, field] of [
      ["?types=bogus", "types"],
      ["?since=soon", "since"],
      ["?agents=echo", "agents"],
    ] as const) {
      const answer = await call(bus, "GET", `/events${query}`);
      expect(answer).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field } } } });
    }
    const badHeader = await call(bus, "GET", "/events", undefined, { "last-event-id": "x" });
    expect(badHeader).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field: "Last-Event-ID" } } } });
  });

  it("needs the key, answers HEAD without a body, and 503 past maxEventSubscribers", async () => {
    const { bus } = await startEventBus({ maxEventSubscribers: 1 });
    expect(await call(bus, "GET", "/events", undefined, { "x-agent-api-key": "" })).toMatchObject({ status: 401, body: { error: { type: "AUTH" } } });
    const head = await fetch(`${bus.url}/events`, { method: "HEAD", headers: { "x-agent-api-key": TEST_KEY } });
    expect(head.status).toBe(200);
    expect(head.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(await head.text()).toBe("");

    const reader = await readServerSentEvents(bus);
    await until(() => bus.events.stats().subscribers === 1);
    expect(await call(bus, "GET", "/events")).toMatchObject({ status: 503, body: { error: { type: "CAPACITY", details: { limit: 1 } } } });
    reader.close();
    await until(() => bus.events.stats().subscribers === 0);
  });

  it("ends every stream when the bus stops", async () => {
    const { bus } = await startEventBus();
    const reader = await readServerSentEvents(bus);
    await until(() => bus.events.stats().subscribers === 1);
    await bus.stop();
    await reader.ended;
    expect(bus.events.stats().subscribers).toBe(0);
  });
});
