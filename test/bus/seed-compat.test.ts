/**
 * Compatibility with the seed project's adapters (SPEC §3.9): their registration body, the WebSocket at `/`,
 * no control frames unless asked for, answers that acknowledge what they answer for agents that never ack,
 * and at-most-once delivery for agents registered with `metadata.acks: false`.
 */
import { describe, expect, it } from "vitest";
import { call, connect, envelope, flush, rawConnect, register, startBus, startSimulatedBus, statusOf, until, type RawAgent } from "./support.js";

const A = "codex://alpha";
const B = "opencode://beta";
const C = "claude-code://gamma";

/** A registration body as the seed project's adapters send it. */
function seedRegistration(agentId: string, metadata: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    agent_descriptor: {
      agent_id: agentId,
      framework: agentId.split("://")[0],
      capabilities: [{ name: "implementation", description: "Implements a feature", input_types: ["task_request"] }, "code_review"],
      endpoints: { websocket: `ws://localhost:8080/?agent_id=${agentId}`, http: "http://localhost:3001" },
      metadata: { version: "1.2.0", ...metadata },
    },
    health_check_url: "http://localhost:3001/health",
    status_endpoint: "http://localhost:3001/status",
    authentication: { type: "api_key", key: "dev-key" },
  };
}

/** Steps a simulated clock through every ack timeout and retry delay of the default options (30 s, 1 s doubling). */
async function pastEveryRetry(clock: { increment(ms: number): void }): Promise<void> {
  for (let step = 0; step < 12; step += 1) {
    clock.increment(30_000);
    await flush();
  }
}

/** The frames of a raw socket that carry this message. */
function copiesOf(agent: RawAgent, messageId: string): unknown[] {
  return agent.frames.filter((frame) => frame.message_id === messageId && "message_type" in frame);
}

describe("the seed project's registration body", () => {
  it("is accepted and kept: capabilities as names and as given, endpoints, health and status URLs, the authentication type", async () => {
    const bus = await startBus();
    const registered = await call(bus, "POST", "/agents/register", seedRegistration(B));
    const expected = {
      agent_id: B,
      framework: "opencode",
      capabilities: ["implementation", "code_review"],
      metadata: { version: "1.2.0" },
      capability_details: [{ name: "implementation", description: "Implements a feature", input_types: ["task_request"] }, { name: "code_review" }],
      endpoints: { websocket: `ws://localhost:8080/?agent_id=${B}`, http: "http://localhost:3001" },
      health_check_url: "http://localhost:3001/health",
      status_endpoint: "http://localhost:3001/status",
      // Its credentials are not handed to every agent that lists agents: troupe authenticates with its own key.
      authentication: { type: "api_key", key: "[REDACTED]" },
    };
    expect(registered).toEqual({ status: 201, body: { success: true, agent: expected, agent_token: expect.any(String) } });
    const listed = (await call(bus, "GET", "/agents")).body.agents;
    expect(listed).toEqual([{ ...expected, online: false, last_heartbeat: null, registered_at: expect.any(Number), source: "registered", status: "offline" }]);

    // The bare form takes the same fields; a list of strings stays as it was.
    const bare = await call(bus, "POST", "/agents/register", {
      agent_id: C,
      capabilities: ["review"],
      health_check_url: "http://localhost:3002/health",
      authentication: "api_key",
    });
    expect(bare.body.agent).toEqual({
      agent_id: C,
      framework: "claude-code",
      capabilities: ["review"],
      metadata: {},
      health_check_url: "http://localhost:3002/health",
      authentication: "api_key",
    });
  });

  it.each([
    ["a capability object without a name", { agent_descriptor: { agent_id: B, capabilities: [{ description: "x" }] } }, "agent_descriptor.capabilities.0"],
    ["acks that is not a boolean", { agent_descriptor: { agent_id: B, metadata: { acks: "no" } } }, "agent_descriptor.metadata.acks"],
    ["a numeric health_check_url", { agent_descriptor: { agent_id: B }, health_check_url: 8080 }, "health_check_url"],
    ["an unknown top-level field", { agent_descriptor: { agent_id: B }, helth_check_url: "http://x" }, "helth_check_url"],
    ["an id in the runtime's own framework (the bus's endpoint)", { agent_descriptor: { agent_id: "troupe://orchestrator" } }, "agent_id"],
    ["an id in the runtime's own framework (the bus itself)", { agent_descriptor: { agent_id: "troupe://bus" } }, "agent_id"],
  ])("refuses %s with CONFIG naming it", async (_name, body, field) => {
    const bus = await startBus();
    const refused = await call(bus, "POST", "/agents/register", body);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ type: "CONFIG", details: { field } });
  });
});

describe("the WebSocket of the seed project's adapters", () => {
  it("is also served at / with ?agent_id=", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const beta = await rawConnect(bus, B, undefined, { path: "/" });
    await until(() => bus.listAgents().some((agent) => agent.agent_id === B && agent.online));
    await bus.send(envelope(A, B, { message_id: "at-root" }));
    await until(() => beta.frames.length === 1);
    expect(beta.frames[0]).toMatchObject({ message_id: "at-root", sender: { agent_id: A } });
    beta.ack("at-root");
    await until(() => statusOf(bus, "at-root") === "acknowledged");
  });

  it("gets troupe's accepted and rejected frames only when it asks for them with ?control=1", async () => {
    const bus = await startBus();
    await register(bus, A, B);
    const beta = await connect(bus, B);
    const silent = await rawConnect(bus, A);
    silent.socket.send(JSON.stringify(envelope(A, B, { message_id: "quiet" })));
    silent.socket.send(JSON.stringify(envelope(B, A, { message_id: "spoofed" })));
    silent.socket.send("{not json");
    await until(() => beta.received.length === 1);
    await until(() => statusOf(bus, "quiet") === "acknowledged");
    await flush();
    expect(beta.received[0]!.message_id).toBe("quiet");
    expect(statusOf(bus, "spoofed")).toBeUndefined();
    expect(silent.frames).toEqual([]);

    const asking = await rawConnect(bus, A, undefined, { control: true });
    asking.socket.send(JSON.stringify(envelope(A, B, { message_id: "loud" })));
    await until(() => asking.frames.length === 1);
    asking.socket.send("{not json");
    await until(() => asking.frames.length === 2);
    expect(asking.frames).toEqual([
      { type: "accepted", message_id: "loud", status: "accepted" },
      expect.objectContaining({ type: "rejected", error: expect.objectContaining({ type: "CONFIG" }) }),
    ]);
  });
});

describe("an agent that never sends ack frames", () => {
  it("answers a task once and is not sent it again: its task_response naming the task id is the ack", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000 });
    await register(bus, A);
    await call(bus, "POST", "/agents/register", seedRegistration(B));
    const beta = await rawConnect(bus, B, undefined, { path: "/" });
    await bus.send(envelope(A, B, { message_id: "task-1", metadata: { task_id: "t-1" } }));
    await until(() => beta.frames.length === 1);
    beta.socket.send(JSON.stringify(envelope(B, A, { message_type: "task_response", payload: { done: true }, metadata: { task_id: "t-1" } })));
    await until(() => statusOf(bus, "task-1") === "acknowledged");
    await pastEveryRetry(clock);
    expect(copiesOf(beta, "task-1")).toHaveLength(1);
    expect(bus.messageStatus("task-1")).toEqual({ message_id: "task-1", sender: A, status: "acknowledged", attempts: 1 });
  });

  it("acknowledges by an error answer naming the request in in_reply_to, also after a first retry", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000, ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "slow" }));
    await until(() => beta.frames.length === 1);
    clock.increment(1_000);
    clock.increment(100);
    await until(() => beta.frames.length === 2);
    beta.socket.send(JSON.stringify(envelope(B, A, { message_type: "error", payload: { code: "REFUSED" }, metadata: { in_reply_to: "slow" } })));
    await until(() => statusOf(bus, "slow") === "acknowledged");
    await pastEveryRetry(clock);
    expect(copiesOf(beta, "slow")).toHaveLength(2);
  });

  it("is not acknowledged by another agent's answer: only the agent the message was written to counts", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000, ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A, B, C);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "for-beta", metadata: { task_id: "t-9" } }));
    await until(() => beta.frames.length === 1);
    await bus.send(envelope(C, A, { message_type: "task_response", payload: {}, metadata: { in_reply_to: "for-beta", task_id: "t-9" } }));
    expect(statusOf(bus, "for-beta")).toBe("delivered");
    clock.increment(1_000);
    clock.increment(100);
    await until(() => beta.frames.length === 2);
    expect(copiesOf(beta, "for-beta")).toHaveLength(2);
  });

  it("is acknowledged by in_reply_to alone when the answer has it: another request with the same task id is sent again", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000, ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A, B);
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "first", metadata: { task_id: "t-same" } }));
    await bus.send(envelope(A, B, { message_id: "second", metadata: { task_id: "t-same" } }));
    await until(() => beta.frames.length === 2);
    beta.socket.send(JSON.stringify(envelope(B, A, { message_type: "task_response", payload: {}, metadata: { in_reply_to: "first", task_id: "t-same" } })));
    await until(() => statusOf(bus, "first") === "acknowledged");

    expect(statusOf(bus, "second")).toBe("delivered");
    clock.increment(1_000);
    clock.increment(100);
    await until(() => copiesOf(beta, "second").length === 2);
  });
});

describe("an agent registered with metadata.acks: false", () => {
  it("gets each message at most once: written to its socket counts as acknowledged, even after a reconnect", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000 });
    await register(bus, A);
    await call(bus, "POST", "/agents/register", seedRegistration(B, { acks: false }));
    const first = await rawConnect(bus, B, undefined, { path: "/" });
    await until(() => bus.listAgents().some((agent) => agent.agent_id === B && agent.online));
    await bus.send(envelope(A, B, { message_id: "once" }));
    await until(() => first.frames.length === 1);
    expect(bus.messageStatus("once")).toEqual({ message_id: "once", sender: A, status: "acknowledged", attempts: 1 });

    // Queued while it is away, written once when it is back.
    first.socket.close();
    await until(() => bus.listAgents().some((agent) => agent.agent_id === B && !agent.online));
    await bus.send(envelope(A, B, { message_id: "later-1" }));
    await bus.send(envelope(A, B, { message_id: "later-2" }));
    expect(statusOf(bus, "later-1")).toBe("queued");
    const second = await rawConnect(bus, B, undefined, { path: "/" });
    await until(() => second.frames.length === 2);
    expect(second.frames.map((frame) => frame.message_id)).toEqual(["later-1", "later-2"]);
    expect([statusOf(bus, "later-1"), statusOf(bus, "later-2")]).toEqual(["acknowledged", "acknowledged"]);

    await pastEveryRetry(clock);
    expect(first.frames).toHaveLength(1);
    expect(second.frames).toHaveLength(2);
  });

  it("gets at-least-once delivery again once it registers without acks: false", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000, ackTimeout: 1_000, retryDelay: 100 });
    await register(bus, A);
    await call(bus, "POST", "/agents/register", seedRegistration(B, { acks: false }));
    await call(bus, "POST", "/agents/register", seedRegistration(B));
    const beta = await rawConnect(bus, B);
    await bus.send(envelope(A, B, { message_id: "retried" }));
    await until(() => beta.frames.length === 1);
    expect(statusOf(bus, "retried")).toBe("delivered");
    clock.increment(1_000);
    clock.increment(100);
    await until(() => beta.frames.length === 2);
  });
});
