/**
 * troupe serving A2A (docs/a2a.md), called with the SDK's own client (`@a2a-js/sdk/client`): cards and their
 * directory, sending and streaming messages, contexts continued in one bridge session, getting, cancelling
 * and resubscribing to tasks, input-required, the key, v0.3, and every kind of agent (in-process, ACP worker,
 * remote WebSocket agent).
 */
import { AGENT_CARD_PATH as SDK_AGENT_CARD_PATH, Role, TaskState, type StreamResponse } from "@a2a-js/sdk";
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, openAI, type Agent, type RuntimeEvent } from "../../src/index.js";
import { AGENT_CARD_PATH } from "../../src/a2a/routes.js";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { call, connect, register, TEST_KEY, until } from "../bus/support.js";
import { createControlledAgent } from "../support/controlled-agent.js";
import { rejectionOf } from "../support/runtime.js";
import { fixtureWorker } from "../support/workers.js";
import { startRuntimeBus } from "../e2e/support.js";
import { answerOf, asTask, clientFor, collect, describeEvent, message, stateName, statusTextOf } from "./client.js";

const QA = "claude-code://qa";

/** An agent that answers with how many turns of its session came before, and streams its answer word by word. */
function countingAgent(id: string, capabilities: string[] = []): Agent {
  return {
    id,
    name: `${id} agent`,
    description: "Counts the turns of its conversation",
    capabilities,
    prompt: async (ctx) => {
      const text = `${ctx.prompt}: turn ${ctx.history.length / 2 + 1}`;
      for (const piece of text.match(/\S+\s*/g) ?? []) ctx.emit(piece);
      return { text, usage: { inputTokens: 5, outputTokens: 4 } };
    },
  };
}

/** An agent that asks which city before it books: it answers `input_required` first. */
const bookingAgent: Agent = {
  id: "booker",
  prompt: async (ctx) => (ctx.history.length === 0 ? { text: "Which city?", stopReason: "input_required" } : { text: `Booked in ${ctx.prompt}` }),
};

/** Waits for the first runtime event that `matches`. */
function nextEvent(on: (listener: (event: RuntimeEvent) => void) => () => void, matches: (event: RuntimeEvent) => boolean): Promise<RuntimeEvent> {
  return new Promise((resolve) => {
    const stop = on((event) => {
      if (!matches(event)) return;
      stop();
      resolve(event);
    });
  });
}

describe("troupe serving A2A", () => {
  it("serves each agent's card at its well-known path and a directory of them at /a2a, behind the key", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer", ["writing", "editing"])], workers: [fixtureWorker("coder")] });
    await register(bus, QA);
    const withKey = { headers: { "x-agent-api-key": TEST_KEY } };

    const card = await fetch(`${bus.url}/a2a/writer/${AGENT_CARD_PATH}`, withKey);
    const directory = await fetch(`${bus.url}/a2a`, withKey);

    expect(AGENT_CARD_PATH).toBe(SDK_AGENT_CARD_PATH);
    expect(card.status).toBe(200);
    const url = `${bus.url}/a2a/writer/`;
    expect(await card.json()).toEqual({
      name: "writer agent",
      description: "Counts the turns of its conversation",
      supportedInterfaces: [
        { url, protocolBinding: "JSONRPC", protocolVersion: "1.0" },
        { url, protocolBinding: "JSONRPC", protocolVersion: "0.3" },
      ],
      provider: { organization: "troupe", url: bus.url },
      version: expect.any(String),
      capabilities: { streaming: true, pushNotifications: false, extendedAgentCard: false },
      securitySchemes: { troupeBusKey: { apiKeySecurityScheme: { description: "The troupe bus's API key", location: "header", name: "x-agent-api-key" } } },
      securityRequirements: [{ schemes: { troupeBusKey: {} } }],
      defaultInputModes: ["text/plain"],
      defaultOutputModes: ["text/plain"],
      skills: [
        { id: "writing", name: "writing", description: "writer agent: writing", tags: ["writing"] },
        { id: "editing", name: "editing", description: "writer agent: editing", tags: ["editing"] },
      ],
    });
    expect(directory.status).toBe(200);
    const { agents } = (await directory.json()) as { agents: Array<{ id: string; url: string; card: { name: string } }> };
    expect(agents.map(({ id, url: agentUrl }) => [id, agentUrl])).toEqual([
      ["writer", url],
      ["coder", `${bus.url}/a2a/coder/`],
      [QA, `${bus.url}/a2a/${encodeURIComponent(QA)}/`],
    ]);
    expect(agents[2]!.card.name).toBe(QA);
    expect((await fetch(`${bus.url}/a2a/nobody/${AGENT_CARD_PATH}`, withKey)).status).toBe(404);
    expect((await fetch(`${bus.url}/a2a/writer/${AGENT_CARD_PATH}`)).status).toBe(401);
    expect((await fetch(`${bus.url}/a2a`)).status).toBe(401);
  });

  it("answers a message with a completed task whose artifact is the answer, as the SDK's client reads it", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`);

    const task = asTask(await client.sendMessage(message("Draft the intro")));

    expect(stateName(task.status?.state)).toBe("completed");
    expect(answerOf(task)).toBe("Draft the intro: turn 1");
    expect(task.history.map((each) => each.parts[0]?.content)).toEqual([{ $case: "text", value: "Draft the intro" }]);
    expect(task.metadata).toEqual({ stopReason: "end_turn", usage: { inputTokens: 5, outputTokens: 4 } });
  });

  it("streams a message: submitted, working, each delta appended to the artifact, the whole answer, completed", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`);

    const events = await collect(client.sendMessageStream(message("Draft it")));

    expect(events.map(describeEvent)).toEqual([
      "task:submitted",
      "status:working",
      "artifact:replace:Draft ",
      "artifact:append:it: ",
      "artifact:append:turn ",
      "artifact:append:1",
      "artifact:replace:Draft it: turn 1",
      "status:completed",
    ]);
  });

  it("continues a context in one bridge session: the agent sees the earlier turns", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`);

    const first = asTask(await client.sendMessage(message("One")));
    const second = asTask(await client.sendMessage(message("Two", { contextId: first.contextId })));
    const elsewhere = asTask(await client.sendMessage(message("Three")));

    expect(answerOf(first)).toBe("One: turn 1");
    expect(second.contextId).toBe(first.contextId);
    expect(second.id).not.toBe(first.id);
    expect(answerOf(second)).toBe("Two: turn 2");
    expect(answerOf(elsewhere)).toBe("Three: turn 1");
    expect(runtime.health().sessions.total).toBe(2);
  });

  it("gets a task, and refuses one it does not know with the protocol's TaskNotFound", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`);
    const sent = asTask(await client.sendMessage(message("Keep this")));

    const got = await client.getTask({ tenant: "", id: sent.id, historyLength: undefined });
    const unknown = await rejectionOf(client.getTask({ tenant: "", id: "no-such-task", historyLength: undefined }));

    expect(got).toMatchObject({ id: sent.id, contextId: sent.contextId, status: { state: TaskState.TASK_STATE_COMPLETED } });
    expect(answerOf(got)).toBe("Keep this: turn 1");
    expect(unknown.name).toBe("TaskNotFoundError");
    const listed = await client.listTasks({
      tenant: "",
      contextId: sent.contextId,
      status: TaskState.TASK_STATE_UNSPECIFIED,
      pageToken: "",
      statusTimestampAfter: undefined,
    });
    expect(listed.tasks.map((each) => each.id)).toEqual([sent.id]);
  });

  it("cancels a task through sessions_cancel: the provider's HTTP connection closes and the task ends canceled", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ deltas: ["Once upon "], hangAfterDeltas: true }));
    const storyteller = createMultiProviderAgent({
      id: "storyteller",
      providers: [openAI({ credentials: { apiKey: "sk-test-0123456789abcdef" }, baseURL: fake.baseURL })],
    });
    const { bus, runtime } = await startRuntimeBus({ agents: [storyteller] });
    const client = await clientFor(`${bus.url}/a2a/storyteller/`);
    const cancelled = nextEvent(
      (listener) => runtime.on("prompt.cancelled", listener),
      () => true,
    );

    const stream = client.sendMessageStream(message("Tell me a long story"));
    const seen: string[] = [];
    let taskId = "";
    for await (const event of stream) {
      seen.push(describeEvent(event));
      if (event.payload?.$case === "task") taskId = event.payload.value.id;
      if (event.payload?.$case === "artifactUpdate") break;
    }
    const answer = await client.cancelTask({ tenant: "", id: taskId, metadata: undefined });

    await fake.lastRequest.clientClosed;
    expect(seen).toEqual(["task:submitted", "status:working", "artifact:replace:Once upon "]);
    expect(stateName(answer.status?.state)).toBe("canceled");
    expect(await cancelled).toMatchObject({ type: "prompt.cancelled", cause: "cancel", agentId: "storyteller" });
    const got = await client.getTask({ tenant: "", id: taskId, historyLength: undefined });
    expect(stateName(got.status?.state)).toBe("canceled");
  });

  it("resubscribes to a running task: the new stream starts with the task and carries the rest", async () => {
    const controlled = createControlledAgent("slow");
    const { bus } = await startRuntimeBus({ agents: [controlled.agent] });
    const client = await clientFor(`${bus.url}/a2a/slow/`);
    const abort = new AbortController();

    let taskId = "";
    for await (const event of client.sendMessageStream(message("Take your time"), { signal: abort.signal })) {
      if (event.payload?.$case === "task") taskId = event.payload.value.id;
      if (event.payload?.$case === "statusUpdate") break;
    }
    abort.abort();
    const resubscribed = client.resubscribeTask({ tenant: "", id: taskId });
    const first = await resubscribed.next();
    await until(() => controlled.prompts.length === 1);
    controlled.current().reply({ text: "Done slowly" });
    const rest: StreamResponse[] = [];
    for await (const event of resubscribed) rest.push(event);

    expect(describeEvent(first.value as StreamResponse)).toBe("task:working");
    expect(rest.map(describeEvent)).toEqual(["artifact:replace:Done slowly", "status:completed"]);
  });

  it("asks for input: the task waits in input-required with the agent's question, and the next message into it completes it", async () => {
    const { bus } = await startRuntimeBus({ agents: [bookingAgent] });
    const client = await clientFor(`${bus.url}/a2a/booker/`);

    const asked = asTask(await client.sendMessage(message("Book a table")));
    const answered = asTask(await client.sendMessage(message("Paris", { contextId: asked.contextId, taskId: asked.id })));

    expect(stateName(asked.status?.state)).toBe("input_required");
    expect(statusTextOf(asked)).toBe("Which city?");
    expect(answered.id).toBe(asked.id);
    expect(stateName(answered.status?.state)).toBe("completed");
    expect(answerOf(answered)).toBe("Booked in Paris");
    expect(answered.history.map((each) => [Role[each.role], each.parts[0]?.content])).toEqual([
      ["ROLE_USER", { $case: "text", value: "Book a table" }],
      ["ROLE_AGENT", { $case: "text", value: "Which city?" }],
      ["ROLE_USER", { $case: "text", value: "Paris" }],
    ]);
  });

  it("fails a task whose prompt fails, saying why, and the context goes on", async () => {
    const controlled = createControlledAgent("flaky");
    const { bus } = await startRuntimeBus({ agents: [controlled.agent] });
    const client = await clientFor(`${bus.url}/a2a/flaky/`);

    const failing = client.sendMessage(message("Try"));
    await until(() => controlled.prompts.length === 1);
    controlled.current().fail("UPSTREAM", "the model is overloaded");
    const failed = asTask(await failing);
    const retrying = client.sendMessage(message("Again", { contextId: failed.contextId }));
    await until(() => controlled.prompts.length === 2);
    controlled.current().reply({ text: "fine now" });

    expect(stateName(failed.status?.state)).toBe("failed");
    expect(statusTextOf(failed)).toBe("the model is overloaded");
    expect(answerOf(asTask(await retrying))).toBe("fine now");
    expect(controlled.prompts[1]!.ctx.session.sessionId).toBe(controlled.prompts[0]!.ctx.session.sessionId);
  });

  it("refuses a client without the key, or with a wrong one, with 401, as the card declares", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`);

    const withoutKey = await rejectionOf(clientFor(`${bus.url}/a2a/writer/`, { key: null }));
    const wrongKey = await rejectionOf(clientFor(`${bus.url}/a2a/writer/`, { key: "wrong-key" }));
    const sent = await call(bus, "POST", "/a2a/writer/", { jsonrpc: "2.0", id: 1, method: "SendMessage", params: {} }, { "x-agent-api-key": "" });

    expect(withoutKey.message).toMatch(/Failed to fetch Agent Card .*: 401/);
    expect(wrongKey.message).toMatch(/Failed to fetch Agent Card .*: 401/);
    expect(sent).toMatchObject({ status: 401, body: { error: { type: "AUTH" } } });
    const card = await client.getAgentCard();
    expect(card.securityRequirements).toEqual([{ schemes: { troupeBusKey: { list: [] } } }]);
  });

  it("speaks v0.3 through the SDK's compatibility layer", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`, { legacy: true });

    const task = asTask(await client.sendMessage(message("Old protocol")));
    const events = await collect(client.sendMessageStream(message("Streamed", { contextId: task.contextId })));

    expect(client.protocolVersion).toBe("0.3");
    expect(answerOf(task)).toBe("Old protocol: turn 1");
    expect(events.map(describeEvent).at(-2)).toBe("artifact:replace:Streamed: turn 2");
    expect(events.map(describeEvent).at(-1)).toBe("status:completed");
  });

  it("serves an ACP worker's agent and a remote WebSocket agent: the latter answers a task_request sent through the bus", async () => {
    const { bus } = await startRuntimeBus({ workers: [fixtureWorker("coder")] });
    await register(bus, QA);
    const qa = await connect(bus, QA, {
      onMessage: async (envelope, context) => {
        qa.received.push(envelope);
        if (envelope.message_type === "task_request") await context.reply({ text: `Reviewed: ${String(envelope.payload["prompt"])}` });
      },
    });
    const worker = await clientFor(`${bus.url}/a2a/coder/`);
    const remote = await clientFor(`${bus.url}/a2a/${encodeURIComponent(QA)}/`);

    const coded = asTask(await worker.sendMessage(message("hello worker")));
    const reviewed = asTask(await remote.sendMessage(message("the patch")));

    expect(answerOf(coded)).toBe("Echo: hello worker");
    expect(stateName(reviewed.status?.state)).toBe("completed");
    expect(answerOf(reviewed)).toBe("Reviewed: the patch");
    expect(qa.received[0]).toMatchObject({
      sender: { agent_id: "troupe://a2a" },
      message_type: "task_request",
      payload: { prompt: "the patch", a2a: { context_id: reviewed.contextId, task_id: reviewed.id } },
    });
  });

  it("cancels a remote WebSocket agent's task: the agent is told, the task ends canceled", async () => {
    const { bus } = await startRuntimeBus();
    await register(bus, QA);
    const qa = await connect(bus, QA, { onMessage: (envelope) => void qa.received.push(envelope) });
    const remote = await clientFor(`${bus.url}/a2a/${encodeURIComponent(QA)}/`);

    const stream = remote.sendMessageStream(message("a long review"));
    const { value: opened } = await stream.next();
    const taskId = ((opened as StreamResponse).payload!.value as { id: string }).id;
    await until(() => qa.received.length === 1);
    const cancelled = await remote.cancelTask({ tenant: "", id: taskId, metadata: undefined });
    await until(() => qa.received.length === 2);

    expect(stateName(cancelled.status?.state)).toBe("canceled");
    expect(qa.received[1]).toMatchObject({
      message_type: "status_update",
      payload: { status: "cancelled" },
      metadata: { in_reply_to: qa.received[0]!.message_id },
    });
    expect((await collect(stream)).map(describeEvent)).toEqual(["status:working", "status:canceled"]);
  });

  it("answers an agent it does not serve with 404", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });

    const answer = await call(bus, "POST", "/a2a/nobody/", { jsonrpc: "2.0", id: 1, method: "GetTask", params: { id: "x" } });

    expect(answer).toMatchObject({ status: 404, body: { error: { type: "NOT_FOUND" } } });
  });

  it("answers a malformed body with the protocol's JSON-RPC error", async () => {
    const { bus } = await startRuntimeBus({ agents: [countingAgent("writer")] });

    const answer = await call(bus, "POST", "/a2a/writer/", "{ not json", { "a2a-version": "1.0" });

    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: -32700, message: expect.stringContaining("Invalid JSON payload") } });
  });
});

describe("A2A contexts", () => {
  it("are bounded: past the bound, the context used longest ago that runs nothing is closed, and starts afresh", async () => {
    // maxSessions 4: the A2A endpoint holds a quarter of them, one context.
    const { bus, runtime } = await startRuntimeBus({ agents: [countingAgent("writer")], maxSessions: 4 });
    const client = await clientFor(`${bus.url}/a2a/writer/`);

    const first = asTask(await client.sendMessage(message("A")));
    const second = asTask(await client.sendMessage(message("B")));
    await until(() => runtime.health().sessions.total === 1);
    const again = asTask(await client.sendMessage(message("A again", { contextId: first.contextId })));

    expect(answerOf(second)).toBe("B: turn 1");
    expect(answerOf(again)).toBe("A again: turn 1");
  });

  it("are forgotten when their session closes: the next message of the context opens a new session", async () => {
    const { bus, runtime } = await startRuntimeBus({ agents: [countingAgent("writer")] });
    const client = await clientFor(`${bus.url}/a2a/writer/`);
    const started = nextEvent(
      (listener) => runtime.on("prompt.started", listener),
      () => true,
    );
    const first = asTask(await client.sendMessage(message("A")));
    const { sessionId } = (await started) as RuntimeEvent & { sessionId: string };

    await runtime.bridge.sessionsClose({ sessionId });
    const next = asTask(await client.sendMessage(message("B", { contextId: first.contextId })));

    expect(answerOf(next)).toBe("B: turn 1");
    expect(runtime.health().sessions.total).toBe(1);
  });
});

describe("A2A task states", () => {
  it("follow the session: a task queued behind another of its context stays submitted until its prompt starts", async () => {
    const controlled = createControlledAgent("slow");
    const { bus, runtime } = await startRuntimeBus({ agents: [controlled.agent] });
    const client = await clientFor(`${bus.url}/a2a/slow/`);
    const first = client.sendMessageStream(message("first"));
    const { value: opened } = await first.next();
    const contextId =
      (opened as StreamResponse).payload?.$case === "task" ? ((opened as StreamResponse).payload!.value as { contextId: string }).contextId : "";

    const second = client.sendMessageStream(message("second", { contextId }));
    const { value: queued } = await second.next();
    const queuedTask = (queued as StreamResponse).payload!.value as { id: string };
    await until(() => controlled.prompts.length === 1);
    const whileQueued = await client.getTask({ tenant: "", id: queuedTask.id, historyLength: undefined });
    const sessionId = controlled.prompts[0]!.ctx.session.sessionId;
    expect((await runtime.bridge.sessionsStatus({ sessionId })).queued).toBe(1);
    controlled.current().reply({ text: "one" });
    await until(() => controlled.prompts.length === 2);
    controlled.current().reply({ text: "two" });
    const rest = await collect(second);
    await collect(first);

    expect(describeEvent(queued as StreamResponse)).toBe("task:submitted");
    expect(stateName(whileQueued.status?.state)).toBe("submitted");
    expect(rest.map(describeEvent)).toEqual(["status:working", "artifact:replace:two", "status:completed"]);
  });

  it("end canceled when the bus stops: the contexts' sessions close, and the open streams end", async () => {
    const controlled = createControlledAgent("slow");
    const { bus, runtime } = await startRuntimeBus({ agents: [controlled.agent] });
    const client = await clientFor(`${bus.url}/a2a/slow/`);
    const stream = client.sendMessageStream(message("never answered"));
    await stream.next();
    await until(() => controlled.prompts.length === 1);

    await bus.stop();
    const rest = await collect(stream);

    expect(rest.map(describeEvent)).toEqual(["status:working", "status:canceled"]);
    expect(runtime.health().sessions.total).toBe(0);
  });
});
