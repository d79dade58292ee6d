/**
 * The event stream over WebSocket (SPEC §5): `ws://…/events` on a real bus whose runtime has agents, with
 * every kind of event (a bridge session's prompt, an auto workflow answered by a runtime agent through the
 * bus), the filters, replay after a reconnect, replay past the buffer, the overflow of a consumer that never
 * reads, the key rules and the bus stopping.
 */
import { describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { createMockAgent, type BusOptions, type CommunicationBus, type Runtime, type RuntimeEvent } from "../../src/index.js";
import { call, CLOCK_START, flush, TEST_KEY, until } from "../bus/support.js";
import { startRuntimeBus } from "../e2e/support.js";
import { createEchoWorkflow, openEventSocket, readServerSentEvents, refusedUpgrade, type EventSocket, type Frame } from "./support.js";

const ECHO = "troupe://echo";

/** A bus over a runtime with two mock agents, `echo` (which also answers workflow tasks) and `other`. */
async function startEventBus(busOptions: BusOptions = {}): Promise<{ bus: CommunicationBus; runtime: Runtime }> {
  return startRuntimeBus({ agents: [createMockAgent({ id: "echo" }), createMockAgent({ id: "other", script: [{ text: "other words" }] })] }, busOptions);
}

/** Runs an auto workflow whose one step `troupe://echo` answers, to its end; returns its id. */
async function runWorkflow(bus: CommunicationBus): Promise<string> {
  const created = await call(bus, "POST", "/sessions", {
    initiator: "troupe://orchestrator",
    participants: [{ agent_id: ECHO, role: "worker" }],
    steps: [{ name: "greet", required_agents: [ECHO], task: "say hello" }],
    dispatch: "auto",
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const workflowId = created.body.session_id as string;
  await until(() => bus.sessionManager.getSession(workflowId)?.status === "completed");
  return workflowId;
}

/** A bridge session of `agentId` prompted once and closed; returns its id. */
async function promptOnce(runtime: Runtime, agentId: string, prompt = "hi there"): Promise<string> {
  const { sessionId } = await runtime.bridge.sessionsCreate({ agentId });
  await runtime.bridge.sessionsPrompt({ sessionId, prompt });
  await runtime.bridge.sessionsClose({ sessionId });
  return sessionId;
}

function seqsOf(frames: Frame[]): number[] {
  return frames.filter((frame) => typeof frame.seq === "number").map((frame) => frame.seq as number);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, index) => from + index);
}

/** Waits until the last event of the hub has reached the subscriber; returns its seq. */
async function caughtUp(runtime: Runtime, subscriber: { until(condition: (frames: Frame[]) => boolean): Promise<void> }): Promise<number> {
  await flush();
  const last = runtime.hub.lastSeq;
  await subscriber.until((frames) => frames.some((frame) => frame.seq === last));
  return last;
}

/** A subscriber that watches one prompt of `echo`, then disconnects; returns it and the last seq it received. */
async function watchOnePrompt(bus: CommunicationBus, runtime: Runtime): Promise<{ first: EventSocket; lastSeen: number }> {
  const first = await openEventSocket(bus);
  await promptOnce(runtime, "echo", "one");
  await caughtUp(runtime, first);
  first.socket.close();
  await first.closed;
  return { first, lastSeen: seqsOf(first.frames).at(-1) ?? 0 };
}

/** Whether seqs follow each other by one, without a gap or a repeat. */
function consecutive(seqs: number[]): boolean {
  return seqs.every((seq, index) => index === 0 || seq === (seqs[index - 1] ?? 0) + 1);
}

describe("ws://…/events", () => {
  it("sends every event of the hub in seq order, each as the in-process listener sees it", async () => {
    const { bus, runtime } = await startEventBus();
    const inProcess: RuntimeEvent[] = [];
    const subscriber = await openEventSocket(bus);
    bus.on("*", (event) => inProcess.push(event));
    await promptOnce(runtime, "other");
    await runWorkflow(bus);
    const last = await caughtUp(runtime, subscriber);

    const seqs = seqsOf(subscriber.frames);
    expect(consecutive(seqs)).toBe(true);
    expect(seqs.at(-1)).toBeGreaterThanOrEqual(last);
    const types = new Set(subscriber.frames.map((frame) => frame.type as string));
    for (const type of [
      "actor.spawned",
      "actor.transition",
      "actor.stopped",
      "prompt.started",
      "prompt.delta",
      "prompt.completed",
      "message.accepted",
      "message.delivered",
      "message.acknowledged",
      "agent.busy",
      "agent.ready",
      "workflow.created",
      "workflow.task_delegated",
      "workflow.task_completed",
      "workflow.completed",
    ]) {
      expect(types, type).toContain(type);
    }
    const bySeq = new Map(subscriber.frames.map((frame) => [frame.seq, frame]));
    for (const event of inProcess.filter(({ seq }) => seq <= last)) expect(bySeq.get(event.seq)).toEqual(JSON.parse(JSON.stringify(event)));
    for (const frame of subscriber.frames) expect(Object.keys(frame).slice(0, 4)).toEqual(["seq", "ts", "type", "actorId"]);
  });

  it("sends only the types asked for, by name or by group", async () => {
    const { bus, runtime } = await startEventBus();
    const named = await openEventSocket(bus, "?types=prompt.delta,workflow.completed");
    const grouped = await openEventSocket(bus, "?types=prompt.*");
    await promptOnce(runtime, "other");
    await runWorkflow(bus);
    await named.until((frames) => frames.some((frame) => frame.type === "workflow.completed"));
    await flush();

    expect(new Set(named.frames.map((frame) => frame.type))).toEqual(new Set(["prompt.delta", "workflow.completed"]));
    expect(new Set(grouped.frames.map((frame) => frame.type))).toEqual(new Set(["prompt.started", "prompt.delta", "prompt.completed"]));
    // Two prompts: the bridge session's and the workflow task's.
    expect(grouped.frames.filter((frame) => frame.type === "prompt.completed")).toHaveLength(2);
  });

  it("filters by session: a bridge session's actor and prompt events, or a workflow's own events", async () => {
    const { bus, runtime } = await startEventBus({ eventBuffer: "always" });
    const sessionId = await promptOnce(runtime, "other");
    const workflowId = await runWorkflow(bus);

    const ofSession = await openEventSocket(bus, `?session=${sessionId}&since=0`);
    await ofSession.until((frames) => frames.some((frame) => frame.type === "actor.stopped" && frame.actorId === sessionId));
    expect(ofSession.frames.every((frame) => frame.actorId === sessionId || frame.actorId === `${sessionId}/prompt` || frame.sessionId === sessionId)).toBe(
      true,
    );
    expect(ofSession.frames.map((frame) => frame.type)).toEqual(
      expect.arrayContaining(["actor.spawned", "actor.transition", "prompt.started", "prompt.delta", "prompt.completed", "actor.stopped"]),
    );
    expect(ofSession.frames.filter((frame) => frame.type === "prompt.delta").map((frame) => frame.delta)).toEqual(["other ", "words"]);

    const ofWorkflow = await openEventSocket(bus, `?session=${workflowId}&since=0`);
    await ofWorkflow.until((frames) => frames.some((frame) => frame.type === "workflow.completed"));
    expect(ofWorkflow.frames.every((frame) => frame.actorId === workflowId || frame.sessionId === workflowId)).toBe(true);
    expect(ofWorkflow.frames.some((frame) => frame.type === "actor.spawned" && frame.actorId === workflowId)).toBe(true);
    expect(ofWorkflow.frames.some((frame) => frame.type.startsWith("message."))).toBe(false);
  });

  it("filters by workflow: its events, the messages sent in it, and the prompts that answer its tasks", async () => {
    const { bus, runtime } = await startEventBus({ eventBuffer: "always" });
    const otherSession = await promptOnce(runtime, "other");
    const workflowId = await runWorkflow(bus);
    await promptOnce(runtime, "echo");

    const subscriber = await openEventSocket(bus, `?workflow=${workflowId}&since=0`);
    await subscriber.until((frames) => frames.some((frame) => frame.type === "workflow.completed"));
    const { frames } = subscriber;
    expect(frames.every((frame) => frame.actorId === workflowId || frame.sessionId === workflowId || frame.workflowId === workflowId)).toBe(true);
    const request = frames.find((frame) => frame.type === "message.accepted" && frame.target === ECHO);
    expect(request).toMatchObject({ from: "troupe://orchestrator", workflowId });
    expect(frames.some((frame) => frame.type === "message.acknowledged" && frame.from === ECHO)).toBe(true);
    const prompts = frames.filter((frame) => frame.type.startsWith("prompt."));
    expect(prompts.map((frame) => frame.type)).toEqual(expect.arrayContaining(["prompt.started", "prompt.delta", "prompt.completed"]));
    expect(prompts.every((frame) => frame.agentId === "echo" && frame.workflowId === workflowId)).toBe(true);
    // The bridge sessions of no workflow are not its own.
    expect(frames.some((frame) => frame.sessionId === otherSession)).toBe(false);
    expect(prompts.map((frame) => frame.sessionId)).toEqual(prompts.map(() => prompts[0]?.sessionId));
  });

  it("filters by agent, named by its runtime id or its bus id alike", async () => {
    const { bus, runtime } = await startEventBus({ eventBuffer: "always" });
    const otherSession = await promptOnce(runtime, "other");
    await runWorkflow(bus);

    const byId = await openEventSocket(bus, "?agent=echo&since=0");
    const byBusId = await openEventSocket(bus, `?agent=${encodeURIComponent(ECHO)}&since=0`);
    for (const subscriber of [byId, byBusId]) await subscriber.until((frames) => frames.some((frame) => frame.type === "workflow.task_completed"));
    await flush();
    expect(byBusId.frames).toEqual(byId.frames);
    const { frames } = byId;
    const concernsEcho = (frame: Frame): boolean =>
      frame.actorId === "agent:echo" ||
      frame.agentId === "echo" ||
      frame.target === ECHO ||
      frame.from === ECHO ||
      frame.task?.to === ECHO ||
      frame.task?.answered_by === ECHO ||
      frame.participant?.agent_id === ECHO;
    expect(frames.every(concernsEcho)).toBe(true);
    expect(frames.map((frame) => frame.type)).toEqual(
      expect.arrayContaining([
        "agent.busy",
        "agent.ready",
        "actor.transition",
        "prompt.delta",
        "message.accepted",
        "workflow.task_delegated",
        "workflow.task_completed",
      ]),
    );
    expect(frames.some((frame) => frame.sessionId === otherSession || frame.agentId === "other")).toBe(false);
  });

  it("combines filters with AND, and the values of one filter with OR", async () => {
    const { bus, runtime } = await startEventBus({ eventBuffer: "always" });
    await promptOnce(runtime, "other");
    await promptOnce(runtime, "echo");

    const subscriber = await openEventSocket(bus, "?agent=echo,other&types=prompt.completed&since=0");
    await subscriber.until((frames) => frames.length === 2);
    await flush();
    expect(subscriber.frames.map((frame) => [frame.type, frame.agentId])).toEqual([
      ["prompt.completed", "other"],
      ["prompt.completed", "echo"],
    ]);
  });

  it("replays from ?since= after a reconnect: nothing missed, nothing twice", async () => {
    const { bus, runtime } = await startEventBus();
    const { first, lastSeen } = await watchOnePrompt(bus, runtime);

    // While nobody is connected, the buffer keeps recording (eventBuffer "watched": its idle window).
    await promptOnce(runtime, "echo", "two");
    await runWorkflow(bus);
    const second = await openEventSocket(bus, `?since=${lastSeen}`);
    await promptOnce(runtime, "other", "three");
    const last = await caughtUp(runtime, second);

    expect(second.frames.some((frame) => frame.type === "missed")).toBe(false);
    const seqs = [...seqsOf(first.frames), ...seqsOf(second.frames)];
    expect(consecutive(seqs)).toBe(true);
    expect(seqs.at(-1)).toBeGreaterThanOrEqual(last);
    expect(second.frames[0]?.seq).toBe(lastSeen + 1);
  });

  it("tells a client whose ?since= is older than the buffer what it missed, then replays the oldest held", async () => {
    const { bus, runtime } = await startEventBus({ eventBufferSize: 5 });
    const { lastSeen } = await watchOnePrompt(bus, runtime);
    await promptOnce(runtime, "echo", "two");
    await flush();
    const newest = runtime.hub.lastSeq;

    const second = await openEventSocket(bus, `?since=${lastSeen}`);
    await second.until((frames) => frames.some((frame) => frame.seq === newest));
    expect(second.frames[0]).toEqual({
      type: "missed",
      since: lastSeen,
      oldestSeq: newest - 4,
      message: `Events ${lastSeen + 1} to ${newest - 5} are no longer held (eventBufferSize): replaying from ${newest - 4}`,
    });
    expect(seqsOf(second.frames).slice(0, 5)).toEqual(range(newest - 4, newest));
  });

  it("tells a client with a seq this bus never gave (it restarted) that it missed events, and replays all it holds", async () => {
    const { bus, runtime } = await startEventBus({ eventBuffer: "always" });
    await promptOnce(runtime, "echo");
    await flush();
    const newest = runtime.hub.lastSeq;
    const subscriber = await openEventSocket(bus, "?since=99999");
    await subscriber.until((frames) => frames.some((frame) => frame.seq === newest));
    const oldest = subscriber.frames[1]?.seq as number;
    expect(subscriber.frames[0]).toMatchObject({ type: "missed", since: 99999, oldestSeq: oldest });
    expect(oldest).toBeLessThan(newest);
    expect(consecutive(seqsOf(subscriber.frames))).toBe(true);
  });

  it("builds nothing for the stream while nobody watches, and stops recording eventBufferIdleMs after the last subscriber left", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const { bus, runtime } = await startEventBus({ clock, eventBufferIdleMs: 60_000 });
    expect(runtime.hub.wants("actor.transition")).toBe(false);

    const subscriber = await openEventSocket(bus);
    expect(runtime.hub.wants("actor.transition")).toBe(true);
    subscriber.socket.close();
    await subscriber.closed;
    await until(() => bus.events.stats().subscribers === 0);
    await promptOnce(runtime, "echo");
    expect(bus.events.stats().bufferedEvents).toBeGreaterThan(0);

    clock.increment(60_000);
    expect(runtime.hub.wants("actor.transition")).toBe(false);
    expect(bus.events.stats()).toMatchObject({ bufferedEvents: 0, bufferedBytes: 0 });
  });

  it("keeps every event from the start with eventBuffer: always, and none with eventBufferSize: 0", async () => {
    const always = await startEventBus({ eventBuffer: "always" });
    expect(always.runtime.hub.wants("actor.transition")).toBe(true);
    const off = await startEventBus({ eventBufferSize: 0 });
    const subscriber = await openEventSocket(off.bus);
    await promptOnce(off.runtime, "echo");
    await caughtUp(off.runtime, subscriber);
    expect(off.bus.events.stats().bufferedEvents).toBe(0);
    subscriber.socket.close();
    await subscriber.closed;
    await until(() => off.bus.events.stats().subscribers === 0);
    expect(off.runtime.hub.wants("actor.transition")).toBe(false);

    const back = await openEventSocket(off.bus, `?since=${seqsOf(subscriber.frames).at(-3)}`);
    await back.until((frames) => frames.length === 1);
    expect(back.frames[0]).toMatchObject({ type: "missed", oldestSeq: off.runtime.hub.lastSeq + 1 });
  });

  it("closes a consumer that never reads with an overflow frame and 1013, holding no more than maxSocketBufferBytes for it", async () => {
    const maxSocketBufferBytes = 64 * 1024;
    const { bus } = await startEventBus({ eventBufferSize: 16, maxSocketBufferBytes });
    const slow = await openEventSocket(bus, "?types=workflow.context_updated");
    const reader = await openEventSocket(bus, "?types=workflow.created");
    slow.socket.pause();
    const workflowId = createEchoWorkflow(bus);
    const bulk = "x".repeat(60_000);
    let updates = 0;
    while (bus.events.stats().overflows === 0 && updates < 5_000) {
      bus.sessionManager.updateSharedContext(workflowId, { bulk, update: updates });
      updates += 1;
      // Lets the sockets write what they can, as a real stream of events would.
      await flush();
    }
    expect(bus.events.stats()).toMatchObject({ overflows: 1, subscribers: 1 });
    expect(bus.events.stats().peakSubscriberBufferedBytes).toBeLessThanOrEqual(maxSocketBufferBytes + 61_000);

    slow.socket.resume();
    expect(await slow.closed).toEqual({ code: 1013, reason: "Too slow: read your socket" });
    const overflow = slow.frames.at(-1);
    const lastSeq = seqsOf(slow.frames).at(-1);
    expect(overflow).toEqual({ type: "overflow", lastSeq: expect.any(Number), message: expect.stringContaining("Too slow") });
    expect(overflow?.lastSeq).toBeGreaterThanOrEqual(lastSeq ?? 0);
    expect(slow.frames.length - 1).toBeLessThan(updates);
    // The others are not held back by it.
    expect(reader.frames).toHaveLength(1);
    expect(reader.socket.readyState).toBe(reader.socket.OPEN);
  });

  it("sends large events as text frames a WebSocket client reads (16- and 64-bit lengths; agent.* events use 7 bits)", async () => {
    const { bus } = await startEventBus({ maxSharedContextBytes: 400_000 });
    const subscriber = await openEventSocket(bus, "?types=workflow.context_updated");
    const workflowId = createEchoWorkflow(bus);
    const sizes = [0, 200, 70_000, 150_000];
    for (const size of sizes) bus.sessionManager.updateSharedContext(workflowId, { text: "é".repeat(size) });
    await subscriber.until((frames) => frames.length === sizes.length);
    expect(subscriber.frames.map((frame) => (frame.shared_context.text as string).length)).toEqual(sizes);
  });

  it("answers an upgrade without the key 401, a bad query 400, and past maxEventSubscribers 503", async () => {
    const { bus } = await startEventBus({ maxEventSubscribers: 1 });
    expect(await refusedUpgrade(bus, "", {})).toMatchObject({ status: 401, body: { error: { type: "AUTH" } } });
    expect(await refusedUpgrade(bus, "", { "x-agent-api-key": "wrong" })).toMatchObject({
      status: 401,
      body: { error: { type: "AUTH", message: "Invalid API key" } },
    });
    expect(await refusedUpgrade(bus, "?types=prompt.deltas")).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field: "types" } } } });
    expect(await refusedUpgrade(bus, "?since=-1")).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field: "since" } } } });
    expect(await refusedUpgrade(bus, "?sessions=x")).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field: "sessions" } } } });
    expect(await refusedUpgrade(bus, "?agent=")).toMatchObject({ status: 400, body: { error: { type: "CONFIG", details: { field: "agent" } } } });

    // Browsers offer the key as a subprotocol, with `troupe`, the one the bus answers with.
    const browser = await openEventSocket(bus, "", { protocols: ["troupe", `key.${TEST_KEY}`] });
    expect(browser.socket.protocol).toBe("troupe");
    expect(await refusedUpgrade(bus)).toMatchObject({ status: 503, body: { error: { type: "CAPACITY", details: { limit: 1 } } } });
    browser.socket.close();
    await browser.closed;
    await until(() => bus.events.stats().subscribers === 0);
    await openEventSocket(bus);
  });

  it("answers a client past its own quota of streams 429 with retry-after, and takes it back when one closes", async () => {
    const { bus } = await startEventBus({ maxEventSubscribersPerClient: 2 });
    const first = await openEventSocket(bus);
    await readServerSentEvents(bus);
    await until(() => bus.events.stats().subscribers === 2);
    expect(await refusedUpgrade(bus)).toEqual({
      status: 429,
      retryAfter: "1",
      body: { error: expect.objectContaining({ type: "CAPACITY", details: expect.objectContaining({ limit: 2, retryAfterMs: 1_000 }) }) },
    });
    const refused = await fetch(`${bus.url}/events`, { headers: { "x-agent-api-key": TEST_KEY } });
    expect([refused.status, refused.headers.get("retry-after")]).toEqual([429, "1"]);
    first.socket.close();
    await first.closed;
    await until(() => bus.events.stats().subscribers === 1);
    await openEventSocket(bus);
  });

  it("pings each subscriber every heartbeatInterval and terminates one that misses two pongs", async () => {
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);
    const { bus } = await startEventBus({ clock, heartbeatInterval: 1_000 });
    const subscriber = await openEventSocket(bus);
    let pings = 0;
    subscriber.socket.on("ping", () => (pings += 1));
    clock.increment(1_000);
    await until(() => pings === 1);
    // A client that answers no ping.
    const silent = await openEventSocket(bus, "", { autoPong: false });
    for (let beat = 0; beat < 3; beat += 1) {
      clock.increment(1_000);
      await flush();
    }
    expect((await silent.closed).code).toBe(1006);
    expect(subscriber.socket.readyState).toBe(subscriber.socket.OPEN);
  });

  it("survives a subscriber that resets its connection mid-stream", async () => {
    const { bus, runtime } = await startEventBus();
    const subscriber = await openEventSocket(bus);
    await promptOnce(runtime, "echo");
    subscriber.socket.terminate();
    await promptOnce(runtime, "echo");
    await until(() => bus.events.stats().subscribers === 0);
    const after = await openEventSocket(bus, "?types=prompt.completed");
    await promptOnce(runtime, "echo");
    await after.until((frames) => frames.length === 1);
  });

  it("closes every stream with 1001 when the bus stops, and refuses new ones meanwhile", async () => {
    const { bus } = await startEventBus();
    const subscriber = await openEventSocket(bus);
    await bus.stop();
    expect(await subscriber.closed).toEqual({ code: 1001, reason: "Bus stopping" });
    expect(bus.events.stats().subscribers).toBe(0);
  });
});
