/**
 * The seed's tutorial (shared/seeds/communication-bus-sessions.txt), end to end: its code as written (on a
 * free loopback port), its exact curl body sent with fetch, the backend receiving it on its WebSocket and
 * answering, the workflow advancing design → implementation → review, completion, and the summary. Then the
 * same task answered by a backend written as the seed project's adapters are (SPEC §3.9).
 */
import { afterEach, describe, expect, it } from "vitest";
import { CommunicationBus, connectAgent, type AgentClient, type MessageEnvelope, type SessionManagerEvent } from "../../src/index.js";
import { connect, flush, rawConnect, SEED_AGENTS, SEED_PARTICIPANTS, SEED_STEPS, startSimulatedBus, TEST_KEY, until } from "./support.js";
import { frameText } from "../../src/protocol/frames.js";

const clients: AgentClient[] = [];
let running: CommunicationBus | undefined;

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await running?.stop();
  running = undefined;
});

/** The body of the seed's curl command, with `$sessionId` substituted as the shell does it. */
function curlBody(sessionId: string): string {
  return `{
"message_id": "task_impl_backend",
"timestamp": "2025-02-02T11:00:00Z",
"sender": {
"agent_id": "claude-code://orchestrator",
"framework": "claude-code",
"session_id": "${sessionId}"
},
"recipient": { "agent_id": "opencode://backend", "framework": "opencode" },
"message_type": "task_request",
"priority": "high",
"payload": { "task_type": "implementation", "context": { "component": "notification-service" } },
"routing": {
"timeout": "300s",
"retry_policy": { "max_retries": 1, "backoff": "linear" },
"delivery_mode": "async"
}
}`;
}

interface Inbox {
  client: AgentClient;
  received: MessageEnvelope[];
}

function agent(bus: CommunicationBus, agentId: string, apiKey: string, answer?: (message: MessageEnvelope) => Record<string, unknown>): Inbox {
  const received: MessageEnvelope[] = [];
  const client = connectAgent({
    url: bus.url,
    agentId,
    apiKey,
    onMessage: async (message, context) => {
      received.push(message);
      if (answer !== undefined && message.message_type === "task_request") await context.reply(answer(message));
    },
  });
  clients.push(client);
  return { client, received };
}

describe("the seed tutorial: workflow sessions on the communication bus", () => {
  it("runs as written: create, send the curl body, receive, answer, advance, complete, summarize", async () => {
    // ---- the seed's code, on a free port of the loopback address ----
    const bus = new CommunicationBus({
      port: 0,
      host: "127.0.0.1",
      maxConnections: 100,
      heartbeatInterval: 30000,
      messageTimeout: 300000,
      persistenceEnabled: false,
      encryptionEnabled: false,
      apiKey: process.env.AGENT_BUS_API_KEY ?? "dev-key",
    });
    running = bus;
    await bus.start();
    const sessionManager = bus["sessionManager"];

    const events: SessionManagerEvent[] = [];
    for (const type of [
      "session_created",
      "participant_added",
      "workflow_updated",
      "context_updated",
      "task_delegated",
      "task_completed",
      "session_completed",
      "session_terminated",
    ] as const) {
      sessionManager.on(type, (event) => events.push(event));
    }

    const sessionId = sessionManager.createSession(
      "claude-code://orchestrator",
      [
        { agent_id: "opencode://backend", role: "implementer" },
        { agent_id: "codex://frontend", role: "implementer" },
        { agent_id: "claude-code://qa", role: "reviewer" },
      ],
      [
        { name: "design", required_agents: ["claude-code://orchestrator"] },
        { name: "implementation", required_agents: ["opencode://backend", "codex://frontend"] },
        { name: "review", required_agents: ["claude-code://qa"] },
      ],
      {
        project: "feature/notifications",
        requirements: ["real-time updates", "audit logs"],
      },
    );
    expect(sessionId).toMatch(/^sess_/);
    const created = sessionManager.getSession(sessionId)!;
    expect(created.participants.map((participant) => [participant.agent_id, participant.role, participant.status])).toEqual([
      ["claude-code://orchestrator", "initiator", "active"],
      ["opencode://backend", "implementer", "active"],
      ["codex://frontend", "implementer", "active"],
      ["claude-code://qa", "reviewer", "active"],
    ]);
    expect(created.workflow.current_step).toBe("design");

    sessionManager.addParticipant(sessionId, {
      agent_id: "opencode://security",
      framework: "opencode",
      role: "reviewer",
    });

    sessionManager.updateWorkflow(sessionId, {
      current_step: "implementation",
      completed_steps: ["design"],
      pending_steps: ["review"],
    });
    sessionManager.updateSharedContext(sessionId, {
      ...sessionManager.getSession(sessionId)?.shared_context,
      branch: "feature/notifications",
      latestCommit: "abc123",
    });

    // Events go out once their change is durable, after the call that made it: wait for them before listening.
    await sessionManager.whenSettled();
    const logged: string[] = [];
    sessionManager.on("session_created", (event) => logged.push(`Session created ${event.sessionId}`));
    sessionManager.on("task_delegated", (event) => logged.push(`Task delegated ${event.task.task_id}`));
    sessionManager.on("session_completed", (event) => logged.push(`Session done ${event.sessionId}`));

    // ---- the agents: participants count as registered, so they may connect ----
    const apiKey = process.env.AGENT_BUS_API_KEY ?? "dev-key";
    const backend = agent(bus, "opencode://backend", apiKey, () => ({
      status: "done",
      files: ["notification-service.ts"],
      usage: { input_tokens: 120, output_tokens: 45 },
    }));
    const frontend = agent(bus, "codex://frontend", apiKey, () => ({ status: "done", usage: { input_tokens: 80, output_tokens: 30 } }));
    const orchestrator = agent(bus, "claude-code://orchestrator", apiKey);
    await Promise.all([backend.client.ready(), frontend.client.ready(), orchestrator.client.ready()]);

    // ---- the seed's curl command, its body byte for byte ----
    const response = await fetch(`${bus.url}/messages/send`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "x-agent-api-key": apiKey },
      body: curlBody(sessionId),
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ success: true, message_id: "task_impl_backend", status: "accepted" });

    // The backend receives it over its WebSocket and answers; the orchestrator receives the answer.
    await until(() => orchestrator.received.length === 1);
    expect(backend.received).toHaveLength(1);
    expect(backend.received[0]).toMatchObject({
      message_id: "task_impl_backend",
      sender: { agent_id: "claude-code://orchestrator", session_id: sessionId },
      payload: { task_type: "implementation", context: { component: "notification-service" } },
      routing: { timeout: "300s", retry_policy: { max_retries: 1, backoff: "linear" }, delivery_mode: "async" },
    });
    expect(orchestrator.received[0]).toMatchObject({
      message_type: "task_response",
      sender: { agent_id: "opencode://backend", session_id: sessionId },
      metadata: { in_reply_to: "task_impl_backend" },
    });
    expect((await bus.send({ ...JSON.parse(curlBody(sessionId)) })).status).toBe("duplicate");
    expect(bus.messageStatus("task_impl_backend")).toEqual({
      message_id: "task_impl_backend",
      sender: "claude-code://orchestrator",
      status: "acknowledged",
      attempts: 1,
    });

    const delegated = events.filter((event) => event.type === "task_delegated");
    expect(delegated).toEqual([
      expect.objectContaining({ sessionId, task: expect.objectContaining({ task_id: "task_impl_backend", step: "implementation", to: "opencode://backend" }) }),
    ]);
    expect(events.filter((event) => event.type === "task_completed")).toEqual([
      expect.objectContaining({ sessionId, task: expect.objectContaining({ task_id: "task_impl_backend", status: "completed" }) }),
    ]);
    // One of the two required agents has answered: still implementation.
    expect(sessionManager.getSession(sessionId)?.workflow.current_step).toBe("implementation");

    // The frontend's task, sent the same way; its answer completes the step.
    const frontendTask = JSON.parse(curlBody(sessionId)) as Record<string, any>;
    frontendTask["message_id"] = "task_impl_frontend";
    frontendTask["recipient"] = { agent_id: "codex://frontend", framework: "codex" };
    const sent = await fetch(`${bus.url}/messages/send`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "x-agent-api-key": apiKey },
      body: JSON.stringify(frontendTask),
    });
    expect(sent.status).toBe(202);
    await until(() => sessionManager.getSession(sessionId)?.workflow.current_step === "review");
    expect(sessionManager.getSession(sessionId)?.workflow).toMatchObject({
      current_step: "review",
      completed_steps: ["design", "implementation"],
      pending_steps: [],
    });
    expect(events.filter((event) => event.type === "workflow_updated").map((event) => [event.previous_step, event.workflow.current_step, event.cause])).toEqual(
      [
        ["design", "implementation", "update"],
        ["implementation", "review", "advance"],
      ],
    );

    sessionManager.completeSession(sessionId, {
      summary: "All tasks completed successfully",
      artifacts: ["s3://artifacts/build.zip"],
    });
    // The seed shows termination next, for exceptional cases: on a completed session it changes nothing.
    sessionManager.terminateSession(sessionId, {
      reason: "timeout",
      details: "Frontend agent offline",
    });
    expect(sessionManager.getSession(sessionId)?.status).toBe("completed");
    await sessionManager.whenSettled();
    expect(logged).toEqual(["Task delegated task_impl_backend", "Task delegated task_impl_frontend", `Session done ${sessionId}`]);
    expect(events.map((event) => event.type)).toEqual([
      "session_created",
      "participant_added",
      "workflow_updated",
      "context_updated",
      "task_delegated",
      "task_completed",
      "task_delegated",
      "task_completed",
      "workflow_updated",
      "session_completed",
    ]);
    expect(sessionManager.getSession(sessionId)?.shared_context).toEqual({
      project: "feature/notifications",
      requirements: ["real-time updates", "audit logs"],
      branch: "feature/notifications",
      latestCommit: "abc123",
    });

    // A message to the completed session is refused with 409.
    const late = JSON.parse(curlBody(sessionId)) as Record<string, unknown>;
    late["message_id"] = "too_late";
    const refused = await fetch(`${bus.url}/messages/send`, { method: "POST", headers: { "x-agent-api-key": apiKey }, body: JSON.stringify(late) });
    expect(refused.status).toBe(409);

    // ---- the result aggregator ----
    const summary = bus.aggregator.summarize(sessionId, { format: "json" });
    expect(summary).toMatchObject({
      session_id: sessionId,
      status: "completed",
      completion: { summary: "All tasks completed successfully", artifacts: ["s3://artifacts/build.zip"] },
      totals: { tasks: 2, completed: 2, failed: 0, pending: 0, usage: { input_tokens: 200, output_tokens: 75 } },
    });
    expect(summary.steps.map((step) => [step.name, step.status])).toEqual([
      ["design", "completed"],
      ["implementation", "completed"],
      ["review", "completed"],
    ]);
    const implementation = summary.steps[1]!;
    expect(implementation.agents.map((each) => [each.agent_id, each.completed, each.usage.input_tokens])).toEqual([
      ["opencode://backend", 1, 120],
      ["codex://frontend", 1, 80],
    ]);
    expect(implementation.agents[0]!.results[0]!.result).toMatchObject({ status: "done", files: ["notification-service.ts"] });
    const markdown = bus.aggregator.summarize(sessionId, { format: "markdown" });
    expect(markdown).toContain(`# Session ${sessionId}: completed`);
    expect(markdown).toContain("All tasks completed successfully");
    expect(markdown).toContain("- s3://artifacts/build.zip");
    expect(markdown).toContain("| opencode://backend | 1 | 1 | 0 | 0 |");

    const overHttp = await fetch(`${bus.url}/sessions/${sessionId}/summary?format=markdown`, { headers: { "x-agent-api-key": apiKey } });
    expect(await overHttp.json()).toEqual({ session_id: sessionId, format: "markdown", markdown });

    await bus.stop();
    running = undefined;
  });
});

describe("the seed tutorial with a seed project's adapter as its backend (SPEC §3.9)", () => {
  it("serves it unchanged but for the URL and key: its registration, its socket at /, no acks, a reply naming the task and recipient.session_id", async () => {
    const { bus, clock } = await startSimulatedBus({ heartbeatInterval: 3_600_000 });
    const sessionManager = bus["sessionManager"];
    const sessionId = sessionManager.createSession(SEED_AGENTS.lead, SEED_PARTICIPANTS, SEED_STEPS);
    sessionManager.updateWorkflow(sessionId, { current_step: "implementation" });

    // The adapter registers with its own body, connects at / and answers tasks without ever sending an ack.
    const registration = await fetch(`${bus.url}/agents/register`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "x-agent-api-key": TEST_KEY },
      body: JSON.stringify({
        agent_descriptor: {
          agent_id: SEED_AGENTS.backend,
          framework: "opencode",
          capabilities: [{ name: "implementation", description: "Backend services" }],
          endpoints: { websocket: "ws://localhost:8080/" },
          metadata: { adapter: "opencode" },
        },
        health_check_url: "http://localhost:4001/health",
        status_endpoint: "http://localhost:4001/status",
        authentication: { type: "api_key" },
      }),
    });
    expect(registration.status).toBe(201);
    const backend = await rawConnect(bus, SEED_AGENTS.backend, undefined, { path: "/" });
    backend.socket.on("message", (data) => {
      const request = JSON.parse(frameText(data)) as MessageEnvelope;
      if (request.message_type !== "task_request") return;
      const reply = {
        message_id: `resp_${request.message_id}`,
        timestamp: "2025-02-02T11:05:00Z",
        sender: { agent_id: SEED_AGENTS.backend, framework: "opencode" },
        recipient: { agent_id: request.sender.agent_id, framework: request.sender.framework, session_id: request.sender.session_id },
        message_type: "task_response",
        priority: "high",
        payload: { status: "done", files: ["notification-service.ts"] },
        metadata: { task_id: request.message_id },
      };
      backend.socket.send(JSON.stringify(reply));
    });
    const orchestrator = await connect(bus, SEED_AGENTS.lead);

    const response = await fetch(`${bus.url}/messages/send`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "x-agent-api-key": TEST_KEY },
      body: curlBody(sessionId),
    });
    expect(response.status).toBe(202);

    await until(() => orchestrator.received.length === 1);
    expect(orchestrator.received[0]).toMatchObject({
      message_type: "task_response",
      recipient: { agent_id: SEED_AGENTS.lead, session_id: sessionId },
      metadata: { task_id: "task_impl_backend" },
    });
    expect(sessionManager.getSession(sessionId)?.tasks).toEqual([
      expect.objectContaining({
        task_id: "task_impl_backend",
        status: "completed",
        answered_by: SEED_AGENTS.backend,
        result: { status: "done", files: ["notification-service.ts"] },
      }),
    ]);

    // Its answer was its ack: past every ack timeout and retry, it has seen the task once, and nothing else.
    for (let step = 0; step < 12; step += 1) {
      clock.increment(30_000);
      await flush();
    }
    expect(bus.messageStatus("task_impl_backend")).toEqual({
      message_id: "task_impl_backend",
      sender: "claude-code://orchestrator",
      status: "acknowledged",
      attempts: 1,
    });
    expect(backend.frames.map((frame) => frame.message_id)).toEqual(["task_impl_backend"]);
  });
});
