/**
 * The runtime's agents on the bus (SPEC §3.6). Every agent of the bus's runtime (in-process, ACP worker) is
 * the bus agent `troupe://<id>` (an id that has a `framework://` prefix already is used as it is). A message
 * to it goes through the bus's normal delivery (queue, window, ack, retries) to an in-process endpoint that the
 * deliveries treat as a connection that is always open. The endpoint acknowledges each message, sees each
 * `message_id` of a sender once, and:
 *
 * - answers a `task_request` through a bridge session of that agent (see bus-sessions.ts: one per sender and
 *   workflow session, and per asking session for a runtime agent's ask), prompted through `runtime.bridge` so
 *   that the bridge's limits hold for the bus too: a `task_response` `{ status: "completed", text, usage,
 *   stop_reason }` or an `error` `{ code: <BridgeError type>, message }`, with `metadata.in_reply_to` and
 *   `task_id`; with `metadata.stream: true`, the prompt's deltas first, as `status_update` envelopes
 *   `{ status: "in_progress", delta }` (best effort, see delta-stream.ts);
 * - cancels that task's prompt on a `status_update` `{ status: "cancelled" }` from the same sender naming it
 *   in `metadata.in_reply_to` (what an abandoned `ctx.ask` sends);
 * - hands a `task_response` or `error` that answers one of its agent's `ctx.ask`s to that ask;
 * - acknowledges and otherwise ignores everything else.
 *
 * An ask carries the asking prompt's session (`metadata.ask_session`) and how deep in a chain of asks it is
 * (`metadata.ask_depth`); past `maxAskDepth` it is refused, so a cycle of agents asking each other ends at
 * once with CONFIG instead of running until its timeouts. Each message is handled in a later turn of the event
 * loop, never in a chain of microtasks: agents asking each other in a loop cannot starve timers and I/O.
 *
 * `troupe://orchestrator` is an endpoint of the same kind without an agent: the default initiator of an auto
 * workflow, it acknowledges the answers (the workflow has recorded them already) so none waits in a queue.
 */
import { createHash, randomUUID } from "node:crypto";
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import type { AskReply } from "../agents/agent.js";
import type { PromptResult } from "../bridge/schemas.js";
import type { Clock } from "../clock.js";
import { BridgeError, isBridgeErrorType, isServiceUnavailable, toBridgeError } from "../errors.js";
import { formatDuration, parseDuration } from "../protocol/durations.js";
import { frameworkOf, inReplyToOf, messageKeyOf, taskIdOf, usageOf, type EnvelopeInput, type MessageEnvelope, type MessageType } from "../protocol/envelope.js";
import { RecentIds } from "../protocol/recent-ids.js";
import type { AskRequest, Messenger } from "../runtime/messenger.js";
import { BUS_AGENT_ID, busAgentIdOf, ORCHESTRATOR_AGENT_ID } from "../runtime/bus-agents.js";
import { Replies } from "../runtime/replies.js";
import type { RestoredSession, Runtime } from "../runtime/runtime.js";
import { BusSessions, type BusSessionOwner } from "./bus-sessions.js";
import { DeltaStream } from "./delta-stream.js";

export { BUS_AGENT_ID, ORCHESTRATOR_AGENT_ID } from "../runtime/bus-agents.js";

/** How many recent (sender, message id) pairs the endpoints remember to drop redeliveries. */
const DEDUPE_WINDOW = 10_000;

/** An in-process endpoint: what the deliveries write a runtime agent's messages to, as to a socket that is always open. */
export class AgentEndpoint {
  /** Keys (sender and message id) of messages written here and not yet acknowledged (bookkept by the deliveries). */
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

  /** Takes any message at once: nothing waits to be written. */
  canWrite(): boolean {
    return true;
  }
}

/** What the runtime agents need from the bus. */
export interface RuntimeAgentsHost {
  runtime: Runtime;
  clock: Clock;
  /** The default wait of an ask without `timeoutMs` (the bus's `messageTimeout`). */
  messageTimeoutMs: number;
  /** The largest ask payload as JSON, in UTF-8 bytes (the bus's `maxBodyBytes`: no sender may send more). */
  maxAskBytes: number;
  /** The longest chain of asks (`maxAskDepth`). */
  maxAskDepth: number;
  /** Bridge sessions the endpoints may hold at once (`maxBusSessions`). */
  maxBusSessions: number;
  /** Sends an envelope through the bus: validation, dedupe, recipient checks, delivery. */
  send(envelope: EnvelopeInput): Promise<unknown>;
  /** Acknowledges a message written to an endpoint. */
  acknowledge(endpoint: AgentEndpoint, messageId: string): void;
  /** Whether a workflow session is still active. */
  workflowActive(workflowId: string): boolean;
  /** Whether an agent's queue has room for best-effort messages (streamed deltas). */
  hasRoomFor(agentId: string): boolean;
  /** Whether a message still waits to be written to its recipient. */
  isWaiting(senderId: string, messageId: string): boolean;
}

/** A task being answered: its session once known, whether its sender cancelled it, and whether a lost answer was reported. */
interface RunningTask {
  sessionId: string | undefined;
  cancelled: boolean;
  warned: boolean;
}

/** A prompt of a task in flight: how deep in a chain of asks it is, and its deltas when they stream. */
interface BusPrompt {
  askDepth: number;
  stream: DeltaStream | undefined;
}

/** An ask waiting for its answer. */
interface PendingAsk {
  asker: string;
  recipient: string;
}

/** Whose task a bridge session of the bus answers, from the `metadata.bus` it was opened with; none for other sessions. */
function busOwnerOf(agentId: string, metadata: Record<string, unknown>): BusSessionOwner | undefined {
  const bus = metadata["bus"] as { sender?: unknown; session_id?: unknown; ask_session?: unknown } | undefined;
  if (typeof bus?.sender !== "string") return undefined;
  return {
    agentId,
    sender: bus.sender,
    workflowId: typeof bus.session_id === "string" ? bus.session_id : undefined,
    askSession: typeof bus.ask_session === "string" ? bus.ask_session : undefined,
  };
}

/** The key of a prompt in flight, as `prompt.delta` events and asks name it. */
function promptKey(sessionId: string, requestId: string): string {
  return `${sessionId}\n${requestId}`;
}

/** The prompt of a `task_request`: `payload.prompt` when it is text, else the payload as JSON. */
function promptOf(request: MessageEnvelope): string {
  const { prompt } = request.payload;
  return typeof prompt === "string" ? prompt : JSON.stringify(request.payload);
}

/** How many asks led to a request (`metadata.ask_depth`); 0 for a request that is no ask. */
function askDepthOf(request: MessageEnvelope): number {
  const depth = request.metadata?.["ask_depth"];
  return typeof depth === "number" && Number.isInteger(depth) && depth >= 0 ? depth : 0;
}

/** The error an `error` answer stands for: its code when it is a BridgeError type; a dead request is TRANSPORT. */
function errorOfAnswer(answer: MessageEnvelope, agentId: string): BridgeError {
  const code = typeof answer.payload["code"] === "string" ? answer.payload["code"] : "UPSTREAM";
  const message = typeof answer.payload["message"] === "string" ? answer.payload["message"] : `${agentId} answered with an error`;
  const type = isBridgeErrorType(code) ? code : code === "DELIVERY_FAILED" ? "TRANSPORT" : "UPSTREAM";
  return new BridgeError(type, message, { code, agentId, messageId: inReplyToOf(answer) });
}

/**
 * Whether the bus refused an answer only because of its `sender.session_id`: this agent is not a participant
 * (403), the workflow has ended (409), or it was evicted meanwhile (404 naming it).
 */
function refusedForSession(error: unknown, workflowId: string): boolean {
  if (!(error instanceof BridgeError)) return false;
  return error.details["forbidden"] === true || error.details["conflict"] === true || (error.type === "NOT_FOUND" && error.details["sessionId"] === workflowId);
}

/** How long an answer the bus could not take now waits before it is sent again. */
const ANSWER_RETRY_MS = 1_000;
/** How long the answer to a request a restart interrupted is sent again while the bus cannot take it (its timeout is not kept). */
const INTERRUPTED_ANSWER_PATIENCE_MS = 60_000;

/** A new message id for an answer of this type. */
function answerIdOf(type: MessageType): string {
  return `${type === "error" ? "err" : type === "status_update" ? "upd" : "res"}_${randomUUID()}`;
}

/** The runtime agents of one bus: their endpoints, the bridge sessions answering their tasks, and their asks. */
export class RuntimeAgents implements Messenger {
  private readonly endpoints = new Map<string, AgentEndpoint>();
  private readonly seen = new RecentIds(DEDUPE_WINDOW);
  private readonly sessions: BusSessions;
  /** Tasks being answered, by `sender \n message id`. */
  private readonly running = new Map<string, RunningTask>();
  /** Prompts of tasks in flight, by `bridge session \n request id`. */
  private readonly prompts = new Map<string, BusPrompt>();
  /** How many of them stream their deltas: the `prompt.delta` listener lives while any does. */
  private streaming = 0;
  /** Asks waiting for their answer, by the `message_id` of their `task_request`. */
  private readonly asks: Replies<PendingAsk>;
  private stopDeltas: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly host: RuntimeAgentsHost) {
    this.asks = new Replies(host.clock);
    this.sessions = new BusSessions({
      runtime: host.runtime,
      maxSessions: host.maxBusSessions,
      workflowActive: (workflowId) => host.workflowActive(workflowId),
    });
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

  /**
   * The bus started: bridge sessions follow the runtime's events from now on, and those the runtime restored
   * for this bus's tasks answer them again.
   */
  start(): void {
    this.sessions.start();
    this.adoptRestored(this.host.runtime.restoredSessions());
  }

  /** Bridge sessions restored for this bus's tasks (at start, or taken over from a dead node of a cluster) serve those tasks again. */
  adoptRestored(restored: readonly RestoredSession[]): void {
    for (const session of restored) {
      const owner = busOwnerOf(session.agentId, session.metadata);
      if (owner !== undefined && this.host.runtime.hasSession(session.sessionId)) this.sessions.adopt(session.sessionId, owner);
    }
  }

  /**
   * `ctx.ask`: a `task_request` from `troupe://<asker>` through the bus, resolved by the recipient's answer. It
   * carries the asking session and the depth of the chain of asks; the payload must be JSON of at most
   * `maxBodyBytes`, as any message a sender posts.
   */
  async ask(request: AskRequest): Promise<AskReply> {
    const { signal } = request;
    if (signal.aborted) throw new BridgeError("CANCELLED", "The asking prompt was cancelled");
    if (this.stopped) throw new BridgeError("TRANSPORT", "The bus is stopping");
    const asker = busAgentIdOf(request.from);
    const recipient = busAgentIdOf(request.agentId);
    if (this.endpoint(recipient)?.runtimeAgentId === undefined && (recipient === ORCHESTRATOR_AGENT_ID || recipient === BUS_AGENT_ID)) {
      throw new BridgeError("CONFIG", `${recipient} is an endpoint of the bus itself: it answers no task`, { field: "agentId", agentId: recipient });
    }
    const timeoutMs = request.timeoutMs ?? this.host.messageTimeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMER_DELAY_MS) {
      throw new BridgeError("CONFIG", `timeoutMs: expected a whole number of milliseconds from 1 to ${MAX_TIMER_DELAY_MS}`, { field: "timeoutMs" });
    }
    const payload = this.askPayload(request.message);
    const askDepth = (this.prompts.get(promptKey(request.sessionId, request.requestId))?.askDepth ?? 0) + 1;
    if (askDepth > this.host.maxAskDepth) {
      throw new BridgeError(
        "CONFIG",
        `ask depth exceeded: ${asker} asking ${recipient} would be ask ${askDepth} of one chain (maxAskDepth ${this.host.maxAskDepth}); do agents ask each other in a cycle?`,
        {
          agentId: recipient,
          askDepth,
          limit: this.host.maxAskDepth,
        },
      );
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
      this.asks.reject(
        messageId,
        new BridgeError("CANCELLED", `The ask to ${recipient} was cancelled with the asking prompt`, { agentId: recipient, messageId }),
      );
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
        payload,
        routing: { timeout: formatDuration(timeoutMs) },
        metadata: { task_id: messageId, ask_session: request.sessionId, ask_depth: askDepth },
      })
      .catch((error: unknown) => this.asks.reject(messageId, toBridgeError(error)));
    return answered.finally(() => signal.removeEventListener("abort", onAbort));
  }

  /**
   * After a restart (or a takeover of a dead node's sessions, `restored`): each task whose prompt the restart interrupted (the runtime restored its bridge session
   * idle) is answered with an error (TRANSPORT), so that its sender, a workflow above all, is not left waiting
   * for an answer that will never come: its request was acknowledged when the endpoint took it. The answer's id
   * is derived from the task, so a bus started again over the same runtime sends it once.
   */
  answerInterrupted(restored: readonly RestoredSession[] = this.host.runtime.restoredSessions()): void {
    for (const { sessionId, agentId, metadata, interrupted } of restored) {
      const owner = busOwnerOf(agentId, metadata);
      const endpoint = this.endpoint(busAgentIdOf(agentId));
      if (owner === undefined || endpoint === undefined) continue;
      for (const requestId of interrupted) {
        // The request itself is gone with the process; what the answer needs of it is in the session's metadata.
        const request = {
          message_id: requestId,
          sender: { agent_id: owner.sender, framework: frameworkOf(owner.sender), ...(owner.workflowId === undefined ? {} : { session_id: owner.workflowId }) },
          priority: "high",
        } as MessageEnvelope;
        const answerId = `err_${createHash("sha256").update(`${sessionId}\n${requestId}`).digest("hex").slice(0, 32)}`;
        const task: RunningTask = { sessionId, cancelled: false, warned: false };
        void this.answer(
          endpoint,
          request,
          task,
          "error",
          {
            code: "TRANSPORT",
            message: "The runtime restarted (or, in a cluster, another node took its work over) while this task's prompt was pending: it was not answered",
          },
          answerId,
          INTERRUPTED_ANSWER_PATIENCE_MS,
        );
      }
    }
  }

  /** A workflow session ended: the bridge sessions that answered its tasks are closed. */
  workflowEnded(workflowId: string): void {
    this.sessions.workflowEnded(workflowId);
  }

  /** The bus is stopping: endpoints close, asks fail with TRANSPORT, and every bridge session is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const endpoint of this.endpoints.values()) endpoint.open = false;
    this.asks.rejectAll(new BridgeError("TRANSPORT", "The bus is stopping"));
    await this.sessions.stop();
    this.stopDeltas?.();
    this.stopDeltas = undefined;
  }

  /** An ask's payload: a string as `{ prompt }`; CONFIG for what is no JSON object or is over `maxAskBytes`. */
  private askPayload(message: string | Record<string, unknown>): Record<string, unknown> {
    const payload: unknown = typeof message === "string" ? { prompt: message } : message;
    if (typeof payload !== "object" || payload === null || Array.isArray(payload)) {
      throw new BridgeError("CONFIG", "message: expected a prompt (string) or a payload (object)", { field: "message" });
    }
    let json: string;
    try {
      json = JSON.stringify(payload);
    } catch (error) {
      throw new BridgeError("CONFIG", `message: not JSON-serializable (${toBridgeError(error).message})`, { field: "message" });
    }
    const bytes = Buffer.byteLength(json, "utf8");
    const limit = this.host.maxAskBytes;
    if (bytes > limit) {
      throw new BridgeError("CONFIG", `message: ${bytes} bytes exceeds maxBodyBytes ${limit}`, { field: "message", limitBytes: limit, actualBytes: bytes });
    }
    return payload as Record<string, unknown>;
  }

  /**
   * Takes a message in a later turn of the event loop: an ack inside the write would reach the delivery before
   * its SENT, the agent's work must not run inside the delivery's action, and agents asking each other must
   * leave room for timers and I/O between hops.
   */
  private receive(endpoint: AgentEndpoint, frame: string): void {
    setImmediate(() => this.handle(endpoint, JSON.parse(frame) as MessageEnvelope));
  }

  private handle(endpoint: AgentEndpoint, envelope: MessageEnvelope): void {
    this.host.acknowledge(endpoint, envelope.message_id);
    // Written before the bus stopped: acknowledged so that stopping does not wait for it, and left alone.
    if (this.stopped) return;
    if (!this.seen.add(`${endpoint.agentId}\n${messageKeyOf(envelope)}`)) return;
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
    this.asks.resolve(inReplyTo, {
      text: typeof text === "string" ? text : JSON.stringify(answer.payload),
      ...(usage ? { usage } : {}),
      payload: answer.payload,
    });
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
    const task: RunningTask = { sessionId: undefined, cancelled: false, warned: false };
    this.running.set(taskKey, task);
    try {
      const reply = await this.prompt(endpoint, this.ownerOf(agentId, request), request, task);
      const usage = reply.usage ? { usage: { input_tokens: reply.usage.inputTokens, output_tokens: reply.usage.outputTokens } } : {};
      await this.answer(endpoint, request, task, "task_response", { status: "completed", text: reply.text, stop_reason: reply.stopReason, ...usage });
    } catch (error) {
      const failure = toBridgeError(error, "UPSTREAM");
      await this.answer(endpoint, request, task, "error", { code: failure.type, message: failure.message });
    } finally {
      this.running.delete(taskKey);
    }
  }

  /**
   * Whose session answers a request: the agent, the sender, its workflow, and the asking session when a runtime
   * agent asks (anyone else's `ask_session` names nothing of this runtime and is ignored).
   */
  private ownerOf(agentId: string, request: MessageEnvelope): BusSessionOwner {
    const sender = request.sender.agent_id;
    const askSession = request.metadata?.["ask_session"];
    const asked = typeof askSession === "string" && this.endpoint(sender)?.runtimeAgentId !== undefined;
    return { agentId, sender, workflowId: request.sender.session_id, askSession: asked ? askSession : undefined };
  }

  /** Prompts the owner's bridge session through the bridge; one that expired meanwhile is replaced once. */
  private async prompt(endpoint: AgentEndpoint, owner: BusSessionOwner, request: MessageEnvelope, task: RunningTask): Promise<PromptResult> {
    // A sync sender waits for one envelope, the answer: deltas would take its place.
    const streams = request.metadata?.["stream"] === true && request.routing.delivery_mode === "async";
    for (let attempt = 1; ; attempt += 1) {
      const session = this.sessions.sessionFor(owner);
      const sessionId = await session.sessionId;
      if (task.cancelled) throw new BridgeError("CANCELLED", "The sender cancelled the task");
      task.sessionId = sessionId;
      const key = promptKey(sessionId, request.message_id);
      this.prompts.set(key, { askDepth: askDepthOf(request), stream: streams ? this.streamTo(endpoint, request, task) : undefined });
      try {
        // This node's own session (its deltas come through this runtime's events): never sent to another node.
        return await this.host.runtime.bridge.callHere("sessions_prompt", { sessionId, prompt: promptOf(request), requestId: request.message_id });
      } catch (error) {
        const failure = toBridgeError(error, "UPSTREAM");
        // A session that is gone or unusable (its worker crashed) answers no later task: forget it.
        if (failure.details.sessionValid === false && this.sessions.isCurrent(session)) {
          void this.sessions.drop(session);
          if (failure.type === "NOT_FOUND" && attempt === 1) continue;
        }
        throw failure;
      } finally {
        this.endPrompt(key);
      }
    }
  }

  /** A stream of the request's deltas to its sender, as `status_update`s. */
  private streamTo(endpoint: AgentEndpoint, request: MessageEnvelope, task: RunningTask): DeltaStream {
    this.streaming += 1;
    this.stopDeltas ??= this.host.runtime.on("prompt.delta", (event) =>
      this.prompts.get(promptKey(event.sessionId, event.requestId))?.stream?.push(event.delta),
    );
    return new DeltaStream({
      send: (delta) => {
        const messageId = answerIdOf("status_update");
        void this.answer(endpoint, request, task, "status_update", { status: "in_progress", delta }, messageId);
        return messageId;
      },
      hasRoom: () => this.host.hasRoomFor(request.sender.agent_id),
      isWaiting: (messageId) => this.host.isWaiting(endpoint.agentId, messageId),
    });
  }

  private endPrompt(key: string): void {
    const stream = this.prompts.get(key)?.stream;
    this.prompts.delete(key);
    if (stream === undefined) return;
    stream.end();
    this.streaming -= 1;
    if (this.streaming > 0) return;
    this.stopDeltas?.();
    this.stopDeltas = undefined;
  }

  /**
   * Sends an answer to the request's sender, in the request's workflow session when it names one. The bus
   * refuses that when this agent is not a participant or the session has ended or is gone; the answer then
   * goes without the session (its `in_reply_to` still ties it to the task). An answer that cannot be sent at
   * all is reported once per task.
   */
  private async answer(
    endpoint: AgentEndpoint,
    request: MessageEnvelope,
    task: RunningTask,
    type: MessageType,
    payload: Record<string, unknown>,
    messageId = answerIdOf(type),
    patienceMs = parseDuration(request.routing.timeout, "routing.timeout"),
  ): Promise<void> {
    const taskId = taskIdOf(request);
    const workflowId = request.sender.session_id;
    const envelope = (inSession: boolean): EnvelopeInput => ({
      message_id: messageId,
      timestamp: new Date(this.host.clock.now()).toISOString(),
      sender: {
        agent_id: endpoint.agentId,
        framework: frameworkOf(endpoint.agentId),
        ...(inSession && workflowId !== undefined ? { session_id: workflowId } : {}),
      },
      recipient: { agent_id: request.sender.agent_id, framework: request.sender.framework },
      message_type: type,
      priority: request.priority,
      payload,
      metadata: { in_reply_to: request.message_id, ...(taskId === undefined ? {} : { task_id: taskId }) },
    });
    // A cluster node cut from NATS, or the workflow's node dead: asked again until the request's own timeout.
    const deadline = this.host.clock.now() + patienceMs;
    for (;;) {
      try {
        await this.host.send(envelope(true)).catch((error: unknown) => {
          // Refused in its session, or the session's node is away: without it, the answer still reaches its task
          // (a cluster keeps it for the node that takes the workflow over).
          if (workflowId === undefined || !(refusedForSession(error, workflowId) || isServiceUnavailable(error))) throw error;
          return this.host.send(envelope(false));
        });
        return;
      } catch (error) {
        const retryInMs = answerRetryMs(error);
        if (!this.stopped && retryInMs !== undefined && this.host.clock.now() + retryInMs < deadline) {
          await new Promise<void>((resolve) => this.host.clock.setTimeout(resolve, retryInMs));
          continue;
        }
        // While the bus stops, answers have nowhere to go; otherwise the operator should hear of a lost one, once.
        if (this.stopped || task.warned) return;
        task.warned = true;
        process.emitWarning(`${endpoint.agentId} could not answer ${request.message_id}: ${toBridgeError(error).message}`, "TroupeBusWarning");
        return;
      }
    }
  }
}

/**
 * When a runtime agent's answer that was refused is sent again: every `ANSWER_RETRY_MS` while its node or the
 * workflow's is away (503), after the wait a full share asks for (429 with `retryAfterMs`: the cluster's answers
 * stream keeps a sender's answers for a while); never for another refusal.
 */
function answerRetryMs(error: unknown): number | undefined {
  if (isServiceUnavailable(error)) return ANSWER_RETRY_MS;
  const { type, details } = toBridgeError(error);
  return type === "CAPACITY" && typeof details.retryAfterMs === "number" ? Math.max(ANSWER_RETRY_MS, details.retryAfterMs) : undefined;
}
