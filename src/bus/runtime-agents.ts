/**
 * The runtime's agents on the bus (SPEC §3.6). Every agent of the bus's runtime (in-process, ACP worker) is
 * the bus agent `troupe://<id>` (an id that has a `framework://` prefix already is used as it is). A message
 * to it goes through the bus's normal delivery (queue, window, ack, retries) to an in-process endpoint that the
 * deliveries treat as a connection that is always open. The endpoint acknowledges each message, sees each
 * `message_id` of a sender once, and:
 *
 * - answers a `task_request` through a bridge session of that agent, one per (sender, workflow session) pair,
 *   reused by the pair's later tasks and closed when the workflow ends or the bus stops: a `task_response`
 *   `{ status: "completed", text, usage, stop_reason }` or an `error` `{ code: <BridgeError type>, message }`,
 *   with `metadata.in_reply_to` and `task_id`; with `metadata.stream: true`, the prompt's deltas first, as
 *   `status_update` envelopes `{ status: "in_progress", delta }`;
 * - cancels that task's prompt on a `status_update` `{ status: "cancelled" }` from the same sender naming it
 *   in `metadata.in_reply_to` (what an abandoned `ctx.ask` sends);
 * - hands a `task_response` or `error` that answers one of its agent's `ctx.ask`s to that ask;
 * - acknowledges and otherwise ignores everything else.
 *
 * `troupe://orchestrator` is an endpoint of the same kind without an agent: the default initiator of an auto
 * workflow, it acknowledges the answers (the workflow has recorded them already) so none waits in a queue.
 */
import { randomUUID } from "node:crypto";
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import type { AskReply } from "../agents/agent.js";
import type { Clock } from "../clock.js";
import { BridgeError, isBridgeErrorType, toBridgeError } from "../errors.js";
import { formatDuration } from "../protocol/durations.js";
import { frameworkOf, inReplyToOf, taskIdOf, type EnvelopeInput, type MessageEnvelope, type MessageType } from "../protocol/envelope.js";
import { RecentIds } from "../protocol/recent-ids.js";
import type { AskRequest, Messenger } from "../runtime/messenger.js";
import { BUS_AGENT_ID, busAgentIdOf, ORCHESTRATOR_AGENT_ID } from "../runtime/bus-agents.js";
import { Replies } from "../runtime/replies.js";
import type { Runtime } from "../runtime/runtime.js";

export { BUS_AGENT_ID, ORCHESTRATOR_AGENT_ID } from "../runtime/bus-agents.js";

/** How many recent (sender, message id) pairs the endpoints remember to drop redeliveries. */
const DEDUPE_WINDOW = 10_000;

/** An in-process endpoint: what the deliveries write a runtime agent's messages to, as to a socket that is always open. */
export class AgentEndpoint {
  /** Ids of messages written here and not yet acknowledged (bookkept by the deliveries). */
  readonly inFlight = new Set<string>();
  /** False once the bus stops: messages then wait in the queue like those of an offline agent. */
  open = true;

  constructor(
    readonly agentId: string,
    /** The runtime agent behind it; none for `troupe://orchestrator`. */
    readonly runtimeAgentId: string | undefined,
    private readonly receive: (endpoint: AgentEndpoint, frame: string) => void,
  ) {}

  /** Takes one message, as the deliveries write it. */
  send(frame: string): void {
    this.receive(this, frame);
  }
}

/** What the runtime agents need from the bus. */
export interface RuntimeAgentsHost {
  runtime: Runtime;
  clock: Clock;
  /** The default wait of an ask without `timeoutMs` (the bus's `messageTimeout`). */
  messageTimeoutMs: number;
  /** Sends an envelope through the bus: validation, dedupe, recipient checks, delivery. */
  send(envelope: EnvelopeInput): Promise<unknown>;
  /** Acknowledges a message written to an endpoint. */
  acknowledge(endpoint: AgentEndpoint, messageId: string): void;
}

/** A bridge session answering one (sender, workflow session) pair's tasks. */
interface BridgeSession {
  sessionId: Promise<string>;
  workflowId: string | undefined;
}

/** A task being answered: its session once known, and whether its sender cancelled it. */
interface RunningTask {
  sessionId: string | undefined;
  cancelled: boolean;
}

/** An ask waiting for its answer. */
interface PendingAsk {
  asker: string;
  recipient: string;
}

/** The usage an answer reports, in either spelling the bus sees. */
function usageOf(value: unknown): AskReply["usage"] {
  if (typeof value !== "object" || value === null) return undefined;
  const usage = value as Record<string, unknown>;
  const inputTokens = usage["input_tokens"] ?? usage["inputTokens"];
  const outputTokens = usage["output_tokens"] ?? usage["outputTokens"];
  return typeof inputTokens === "number" && typeof outputTokens === "number" ? { inputTokens, outputTokens } : undefined;
}

/** The prompt of a `task_request`: `payload.prompt` when it is text, else the payload as JSON. */
function promptOf(request: MessageEnvelope): string {
  const { prompt } = request.payload;
  return typeof prompt === "string" ? prompt : JSON.stringify(request.payload);
}

/** The error an `error` answer stands for: its code when it is a BridgeError type; a dead request is TRANSPORT. */
function errorOfAnswer(answer: MessageEnvelope, agentId: string): BridgeError {
  const code = typeof answer.payload["code"] === "string" ? answer.payload["code"] : "UPSTREAM";
  const message = typeof answer.payload["message"] === "string" ? answer.payload["message"] : `${agentId} answered with an error`;
  const type = isBridgeErrorType(code) ? code : code === "DELIVERY_FAILED" ? "TRANSPORT" : "UPSTREAM";
  return new BridgeError(type, message, { code, agentId, messageId: inReplyToOf(answer) });
}

/** Whether the bus refused an answer only because of its `sender.session_id` (not a participant, or the session ended). */
function refusedForSession(error: unknown): boolean {
  return error instanceof BridgeError && (error.details["forbidden"] === true || error.details["conflict"] === true);
}

/** The runtime agents of one bus: their endpoints, the bridge sessions answering their tasks, and their asks. */
export class RuntimeAgents implements Messenger {
  private readonly endpoints = new Map<string, AgentEndpoint>();
  private readonly seen = new RecentIds(DEDUPE_WINDOW);
  /** Bridge sessions by `agent \n sender \n workflow`. */
  private readonly sessions = new Map<string, BridgeSession>();
  /** Tasks being answered, by `sender \n message id`. */
  private readonly running = new Map<string, RunningTask>();
  /** Requests whose deltas stream to their sender, by `bridge session \n request id`. */
  private readonly streams = new Map<string, MessageEnvelope>();
  /** Asks waiting for their answer, by the `message_id` of their `task_request`. */
  private readonly asks: Replies<PendingAsk>;
  private stopDeltas: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly host: RuntimeAgentsHost) {
    this.asks = new Replies(host.clock);
  }

  /** The endpoint of a bus id: a runtime agent's (`troupe://writer`), `troupe://orchestrator`'s, or none. */
  endpoint(busAgentId: string): AgentEndpoint | undefined {
    const known = this.endpoints.get(busAgentId);
    if (known !== undefined) return known;
    const runtimeAgentId = this.host.runtime.agentIdOfBusAgent(busAgentId);
    if (runtimeAgentId === undefined && busAgentId !== ORCHESTRATOR_AGENT_ID) return undefined;
    const endpoint = new AgentEndpoint(busAgentId, runtimeAgentId, (target, frame) => this.receive(target, frame));
    this.endpoints.set(busAgentId, endpoint);
    return endpoint;
  }

  /** `ctx.ask`: a `task_request` from `troupe://<asker>` through the bus, resolved by the recipient's answer. */
  ask(request: AskRequest): Promise<AskReply> {
    const { signal } = request;
    if (signal.aborted) return Promise.reject(new BridgeError("CANCELLED", "The asking prompt was cancelled"));
    if (this.stopped) return Promise.reject(new BridgeError("TRANSPORT", "The bus is stopping"));
    const asker = busAgentIdOf(request.from);
    const recipient = busAgentIdOf(request.agentId);
    const timeoutMs = request.timeoutMs ?? this.host.messageTimeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMER_DELAY_MS) {
      return Promise.reject(new BridgeError("CONFIG", `timeoutMs: expected a whole number of milliseconds from 1 to ${MAX_TIMER_DELAY_MS}`, { field: "timeoutMs" }));
    }
    const messageId = `ask_${randomUUID()}`;
    const answered = this.asks.wait<AskReply>(messageId, {
      meta: { asker, recipient },
      timeoutMs,
      onTimeout: () => {
        this.cancelAsk(asker, recipient, messageId, "timeout");
        return new BridgeError("TIMEOUT", `${recipient} did not answer within ${timeoutMs} ms`, { agentId: recipient, timeoutMs, messageId });
      },
    });
    const onAbort = (): void => {
      if (!this.asks.has(messageId)) return;
      this.asks.reject(messageId, new BridgeError("CANCELLED", `The ask to ${recipient} was cancelled with the asking prompt`, { agentId: recipient, messageId }));
      // The signal aborts while the asking session's actor leaves `busy`: send once that transition is over.
      queueMicrotask(() => this.cancelAsk(asker, recipient, messageId, "cancelled"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
    this.host
      .send({
        message_id: messageId,
        timestamp: new Date(this.host.clock.now()).toISOString(),
        sender: { agent_id: asker, framework: frameworkOf(asker) },
        recipient: { agent_id: recipient, framework: frameworkOf(recipient) },
        message_type: "task_request",
        payload: typeof request.message === "string" ? { prompt: request.message } : request.message,
        routing: { timeout: formatDuration(timeoutMs) },
        metadata: { task_id: messageId },
      })
      .catch((error: unknown) => this.asks.reject(messageId, toBridgeError(error)));
    return answered.finally(() => signal.removeEventListener("abort", onAbort));
  }

  /** A workflow session ended: the bridge sessions that answered its tasks are closed. */
  workflowEnded(workflowId: string): void {
    for (const [key, session] of this.sessions) {
      if (session.workflowId !== workflowId) continue;
      this.sessions.delete(key);
      this.close(session);
    }
  }

  /** The bus is stopping: endpoints close, asks fail with TRANSPORT, and every bridge session is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const endpoint of this.endpoints.values()) endpoint.open = false;
    this.asks.rejectAll(new BridgeError("TRANSPORT", "The bus is stopping"));
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(sessions.map((session) => this.close(session)));
    this.stopDeltas?.();
    this.stopDeltas = undefined;
  }

  /**
   * Takes a message once the delivery that wrote it has finished its transition: an ack inside the write would
   * reach the delivery before its SENT, and the agent's work must not run inside the delivery's action.
   */
  private receive(endpoint: AgentEndpoint, frame: string): void {
    queueMicrotask(() => this.handle(endpoint, JSON.parse(frame) as MessageEnvelope));
  }

  private handle(endpoint: AgentEndpoint, envelope: MessageEnvelope): void {
    this.host.acknowledge(endpoint, envelope.message_id);
    if (!this.seen.add(`${endpoint.agentId}\n${envelope.sender.agent_id}\n${envelope.message_id}`)) return;
    switch (envelope.message_type) {
      case "task_request":
        if (endpoint.runtimeAgentId !== undefined) void this.runTask(endpoint, endpoint.runtimeAgentId, envelope);
        return;
      case "task_response":
      case "error":
        this.answerAsk(endpoint, envelope);
        return;
      case "status_update":
        if (envelope.payload["status"] === "cancelled") this.cancelTask(envelope);
        return;
      default:
    }
  }

  private answerAsk(endpoint: AgentEndpoint, answer: MessageEnvelope): void {
    const inReplyTo = inReplyToOf(answer);
    const ask = inReplyTo === undefined ? undefined : this.asks.metaOf(inReplyTo);
    if (inReplyTo === undefined || ask === undefined || ask.asker !== endpoint.agentId) return;
    const from = answer.sender.agent_id;
    if (from !== ask.recipient && from !== BUS_AGENT_ID) return;
    if (answer.message_type === "error") {
      this.asks.reject(inReplyTo, errorOfAnswer(answer, ask.recipient));
      return;
    }
    const { text } = answer.payload;
    const usage = usageOf(answer.payload["usage"]);
    this.asks.resolve(inReplyTo, { text: typeof text === "string" ? text : JSON.stringify(answer.payload), ...(usage ? { usage } : {}), payload: answer.payload });
  }

  /** Tells the asked agent that nobody waits for the answer any more, through the bus like any message. */
  private cancelAsk(asker: string, recipient: string, messageId: string, reason: string): void {
    this.host
      .send({
        message_id: `cancel_${randomUUID()}`,
        timestamp: new Date(this.host.clock.now()).toISOString(),
        sender: { agent_id: asker, framework: frameworkOf(asker) },
        recipient: { agent_id: recipient, framework: frameworkOf(recipient) },
        message_type: "status_update",
        payload: { status: "cancelled", reason },
        metadata: { in_reply_to: messageId, task_id: messageId },
      })
      // The ask has already failed; a cancel the bus refuses (it is stopping) changes nothing for the asker.
      .catch(() => undefined);
  }

  private cancelTask(update: MessageEnvelope): void {
    const inReplyTo = inReplyToOf(update);
    if (inReplyTo === undefined) return;
    const task = this.running.get(`${update.sender.agent_id}\n${inReplyTo}`);
    if (task === undefined || task.cancelled) return;
    task.cancelled = true;
    // A prompt that ended meanwhile has nothing to cancel: NOT_FOUND is the expected answer then.
    if (task.sessionId !== undefined) this.host.runtime.cancelPrompt(task.sessionId, inReplyTo).catch(() => undefined);
  }

  private async runTask(endpoint: AgentEndpoint, agentId: string, request: MessageEnvelope): Promise<void> {
    const taskKey = `${request.sender.agent_id}\n${request.message_id}`;
    const task: RunningTask = { sessionId: undefined, cancelled: false };
    this.running.set(taskKey, task);
    try {
      const reply = await this.prompt(agentId, request, task);
      const usage = reply.usage ? { usage: { input_tokens: reply.usage.inputTokens, output_tokens: reply.usage.outputTokens } } : {};
      await this.answer(endpoint, request, "task_response", { status: "completed", text: reply.text, stop_reason: reply.stopReason, ...usage });
    } catch (error) {
      const failure = toBridgeError(error, "UPSTREAM");
      await this.answer(endpoint, request, "error", { code: failure.type, message: failure.message });
    } finally {
      this.running.delete(taskKey);
    }
  }

  /** Prompts the pair's bridge session; one that expired or failed meanwhile is replaced once. */
  private async prompt(agentId: string, request: MessageEnvelope, task: RunningTask): Promise<{ text: string; stopReason: string; usage?: AskReply["usage"] }> {
    for (let attempt = 1; ; attempt += 1) {
      const { key, session } = this.sessionFor(agentId, request);
      const sessionId = await session.sessionId;
      if (task.cancelled) throw new BridgeError("CANCELLED", "The sender cancelled the task");
      task.sessionId = sessionId;
      const stream = request.metadata?.["stream"] === true ? `${sessionId}\n${request.message_id}` : undefined;
      if (stream !== undefined) this.streamTo(stream, request);
      try {
        return await this.host.runtime.promptSession(sessionId, { prompt: promptOf(request), requestId: request.message_id });
      } catch (error) {
        const failure = toBridgeError(error, "UPSTREAM");
        // A session that is gone (expired) or unusable (its worker crashed) answers no later task: forget it.
        if (failure.details.sessionValid === false && this.sessions.get(key) === session) {
          this.sessions.delete(key);
          this.close(session);
          if (failure.type === "NOT_FOUND" && attempt === 1) continue;
        }
        throw failure;
      } finally {
        if (stream !== undefined) this.endStream(stream);
      }
    }
  }

  /** The bridge session of the (sender, workflow session) pair for this agent, opened on first use. */
  private sessionFor(agentId: string, request: MessageEnvelope): { key: string; session: BridgeSession } {
    const workflowId = request.sender.session_id;
    const key = `${agentId}\n${request.sender.agent_id}\n${workflowId ?? ""}`;
    let session = this.sessions.get(key);
    if (session === undefined) {
      const metadata = { bus: { sender: request.sender.agent_id, ...(workflowId === undefined ? {} : { session_id: workflowId }) } };
      const created: BridgeSession = { sessionId: this.host.runtime.createSession(agentId, metadata).then((result) => result.sessionId), workflowId };
      session = created;
      this.sessions.set(key, created);
      created.sessionId.catch(() => {
        if (this.sessions.get(key) === created) this.sessions.delete(key);
      });
    }
    return { key, session };
  }

  private close(session: BridgeSession): Promise<void> {
    return session.sessionId
      .then((sessionId) => this.host.runtime.closeSession(sessionId))
      .then(
        () => undefined,
        // A session that was never opened, or is gone already (expired, runtime stopped), needs no closing.
        () => undefined,
      );
  }

  private streamTo(stream: string, request: MessageEnvelope): void {
    this.streams.set(stream, request);
    this.stopDeltas ??= this.host.runtime.on("prompt.delta", (event) => {
      const streaming = this.streams.get(`${event.sessionId}\n${event.requestId}`);
      if (streaming === undefined) return;
      // The request was addressed to the endpoint that streams its deltas.
      const endpoint = this.endpoints.get(streaming.recipient.agent_id);
      if (endpoint !== undefined) void this.answer(endpoint, streaming, "status_update", { status: "in_progress", delta: event.delta });
    });
  }

  private endStream(stream: string): void {
    this.streams.delete(stream);
    if (this.streams.size > 0) return;
    this.stopDeltas?.();
    this.stopDeltas = undefined;
  }

  /**
   * Sends an answer to the request's sender, in the request's workflow session when it names one. The bus
   * refuses that when this agent is not a participant or the session has ended; the answer then goes without
   * the session (its `in_reply_to` still ties it to the task).
   */
  private async answer(endpoint: AgentEndpoint, request: MessageEnvelope, type: MessageType, payload: Record<string, unknown>): Promise<void> {
    const taskId = taskIdOf(request);
    const workflowId = request.sender.session_id;
    const envelope = (inSession: boolean): EnvelopeInput => ({
      message_id: `${type === "error" ? "err" : type === "status_update" ? "upd" : "res"}_${randomUUID()}`,
      timestamp: new Date(this.host.clock.now()).toISOString(),
      sender: { agent_id: endpoint.agentId, framework: frameworkOf(endpoint.agentId), ...(inSession && workflowId !== undefined ? { session_id: workflowId } : {}) },
      recipient: { agent_id: request.sender.agent_id, framework: request.sender.framework },
      message_type: type,
      priority: request.priority,
      payload,
      metadata: { in_reply_to: request.message_id, ...(taskId === undefined ? {} : { task_id: taskId }) },
    });
    try {
      await this.host.send(envelope(true)).catch((error: unknown) => {
        if (workflowId === undefined || !refusedForSession(error)) throw error;
        return this.host.send(envelope(false));
      });
    } catch (error) {
      // While the bus stops, answers have nowhere to go; otherwise the operator should hear of a lost one.
      if (!this.stopped) process.emitWarning(`${endpoint.agentId} could not answer ${request.message_id}: ${toBridgeError(error).message}`, "TroupeBusWarning");
    }
  }
}
