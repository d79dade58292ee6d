/**
 * Deliveries: the bus's side of the delivery actors. Each accepted message is a delivery actor in the
 * supervisor's delivery pool (machines/pool.machine.ts); this performs what the machine decides (write to a
 * socket, or queue), keeps the per-recipient priority queues and the window of unacknowledged messages per
 * socket, and keeps of each finished message only its status record. A message's status, attempts and
 * last error are read from its actor while it lives.
 */
import type { AnyActorRef } from "xstate";
import type { DeliveryContext, DeliveryEmitted, DeliveryEvent, DeliveryInput, DeliveryStatus } from "../../machines/delivery.machine.js";
import type { PoolChildEnding } from "../../machines/pool-shard.machine.js";
import type { Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import { inReplyToOf, taskIdOf, type MessageEnvelope } from "../protocol/envelope.js";
import type { DeliveryPoolHost, Runtime } from "../runtime/runtime.js";
import type { AgentConnection as SocketConnection } from "./agent-connections.js";
import { PriorityQueue } from "./priority-queue.js";

/** What a delivery writes to: an agent's socket, or a runtime agent's in-process endpoint (always open). */
export type AgentConnection = Pick<SocketConnection, "agentId" | "inFlight" | "open" | "send" | "canWrite">;

/** Where a delivery stands, as `GET /messages/:id` answers it. */
export interface MessageStatusView {
  message_id: string;
  status: DeliveryStatus;
  attempts: number;
  last_error?: string;
}

/** What the bus hears about a message besides its status: the event, and the envelope it concerns. */
export interface DeliveryNotice {
  event: DeliveryEmitted;
  envelope: MessageEnvelope;
  acceptedAt: number;
}

/** What the deliveries need from the bus. */
export interface DeliveriesOptions {
  runtime: Runtime;
  clock: Clock;
  connection(agentId: string): AgentConnection | undefined;
  /** False for an agent registered with `metadata.acks: false`: a message written to it counts as acknowledged. */
  sendsAcks(agentId: string): boolean;
  ackTimeoutMs: number;
  retryBaseMs: number;
  maxInFlightPerAgent: number;
  maxQueuedPerAgent: number;
  /** Bytes of all live messages together (their frames). */
  maxQueuedBytes: number;
  maxRetainedMessages: number;
  /** Every event a delivery emits, after it took effect here. */
  onStatus(notice: DeliveryNotice): void;
}

/** What `accept` needs besides the envelope. */
export interface AcceptOptions {
  timeoutMs: number;
  localSink?: (envelope: MessageEnvelope) => void;
}

type DeliveryActor = AnyActorRef & { send(event: DeliveryEvent): void };

const FINAL_STATUSES: ReadonlySet<string> = new Set<DeliveryStatus>(["acknowledged", "dead"]);

/** The id of a message's delivery actor (ids share the system's namespace with sessions and workflows). */
export function deliveryChildId(messageId: string): string {
  return `message:${messageId}`;
}

function contextOf(child: AnyActorRef): DeliveryContext {
  return (child.getSnapshot() as { context: DeliveryContext }).context;
}

function statusViewOf(messageId: string, status: DeliveryStatus, context: DeliveryContext): MessageStatusView {
  return { message_id: messageId, status, attempts: context.attempts, ...(context.lastError === null ? {} : { last_error: context.lastError }) };
}

/** The task a `task_request` carries: its `metadata.task_id`, else its `message_id`; other messages carry none. */
function requestTaskIdOf(envelope: MessageEnvelope): string | undefined {
  return envelope.message_type === "task_request" ? (taskIdOf(envelope) ?? envelope.message_id) : undefined;
}

/** A recipient's waiting messages: an order (priority, then FIFO) and the set of those still waiting. */
class RecipientQueue {
  readonly order = new PriorityQueue<string>();
  readonly waiting = new Set<string>();
}

/** Every message of one bus, from acceptance until its status record is forgotten. */
export class Deliveries implements DeliveryPoolHost {
  private readonly queues = new Map<string, RecipientQueue>();
  /** The socket each message was last written to, while it waits for its ack there. */
  private readonly writtenTo = new Map<string, AgentConnection>();
  /** Receives a message in this process instead of a socket (a sync sender waiting for this reply). */
  private readonly localSinks = new Map<string, (envelope: MessageEnvelope) => void>();
  /** Status records of finished messages, oldest first; forgotten beyond `maxRetainedMessages`. */
  private readonly finished = new Map<string, MessageStatusView>();
  /** Live deliveries by state, counted from their transitions; finished ones by their record. */
  private readonly counts: Record<DeliveryStatus, number> = { accepted: 0, queued: 0, delivered: 0, acknowledged: 0, retrying: 0, dead: 0 };
  /** Bytes of the frames of every live message: bounded by `maxQueuedBytes`. */
  private liveBytes = 0;
  /** Live `task_request`s by task id (`metadata.task_id`, else `message_id`, as workflows name tasks). */
  private readonly requestsByTask = new Map<string, Set<string>>();

  constructor(private readonly options: DeliveriesOptions) {
    options.runtime.attachPool("delivery", this);
  }

  /** Whether a message id is known (alive, or finished and still remembered). */
  has(messageId: string): boolean {
    return this.finished.has(messageId) || this.options.runtime.pooledChild(deliveryChildId(messageId)) !== undefined;
  }

  /** A message's status, while it is remembered: from its actor while it lives, then from its record. */
  status(messageId: string): MessageStatusView | undefined {
    const child = this.options.runtime.pooledChild(deliveryChildId(messageId));
    if (child === undefined) return this.finished.get(messageId);
    const snapshot = child.getSnapshot() as { value: DeliveryStatus; context: DeliveryContext };
    return statusViewOf(messageId, snapshot.value, snapshot.context);
  }

  /** Messages by status: live ones and the finished ones still remembered. */
  countsByStatus(): Record<DeliveryStatus, number> {
    return { ...this.counts };
  }

  /** Messages waiting in an agent's queue (a message that left the queue, e.g. dead, no longer counts). */
  queuedFor(agentId: string): number {
    return this.queues.get(agentId)?.waiting.size ?? 0;
  }

  /** Messages written to a socket and not yet acknowledged. */
  get unacknowledged(): number {
    return this.counts.delivered;
  }

  /** Starts the delivery of a validated, new message. A full recipient queue is CAPACITY. */
  accept(envelope: MessageEnvelope, { timeoutMs, localSink }: AcceptOptions): void {
    const recipient = envelope.recipient.agent_id;
    if (localSink === undefined && this.queuedFor(recipient) >= this.options.maxQueuedPerAgent) {
      const limit = this.options.maxQueuedPerAgent;
      throw new BridgeError("CAPACITY", `The queue of ${recipient} holds maxQueuedPerAgent (${limit}) messages`, { retryable: true, limit, agentId: recipient });
    }
    const messageId = envelope.message_id;
    const frame = JSON.stringify(envelope);
    const { maxQueuedBytes } = this.options;
    if (this.liveBytes + frame.length > maxQueuedBytes) {
      throw new BridgeError("CAPACITY", `The bus holds maxQueuedBytes (${maxQueuedBytes}) of messages not yet delivered`, { retryable: true, limit: maxQueuedBytes });
    }
    if (localSink !== undefined) this.localSinks.set(messageId, localSink);
    const { routing } = envelope;
    const input: DeliveryInput = {
      messageId,
      envelope,
      frame,
      acceptedAt: this.options.clock.now(),
      targets: [recipient, ...(routing.fallback_agents ?? []).filter((agentId) => agentId !== recipient)],
      maxRetries: routing.retry_policy.max_retries,
      backoff: routing.retry_policy.backoff,
      retryBaseMs: this.options.retryBaseMs,
      ackTimeoutMs: this.options.ackTimeoutMs,
      timeoutMs,
    };
    try {
      this.liveBytes += frame.length;
      this.options.runtime.spawnPooled("delivery", deliveryChildId(messageId), "delivery", input);
    } catch (error) {
      this.liveBytes -= frame.length;
      this.localSinks.delete(messageId);
      throw error;
    }
    const taskId = requestTaskIdOf(envelope);
    if (taskId !== undefined) this.requestsByTask.set(taskId, (this.requestsByTask.get(taskId) ?? new Set()).add(messageId));
  }

  /**
   * An agent answered (SPEC §3.9): a `task_response` or `error` naming a message by `metadata.in_reply_to`, or,
   * without one, a `task_request` by its task id in `metadata.task_id`, is the ack of that message by its
   * current target, so an agent that never sends `ack` frames is not sent the message again. Another agent's
   * answer acks nothing. `in_reply_to` names one message; a task id may be the same in several workflows, so
   * it is only the fallback of the seed project's adapters, which name tasks by it alone.
   */
  acknowledgeByAnswer(answer: MessageEnvelope): void {
    if (answer.message_type !== "task_response" && answer.message_type !== "error") return;
    const responder = answer.sender.agent_id;
    const inReplyTo = inReplyToOf(answer);
    const taskId = taskIdOf(answer);
    const answered = inReplyTo !== undefined ? [inReplyTo] : taskId === undefined ? [] : [...(this.requestsByTask.get(taskId) ?? [])];
    for (const messageId of answered) {
      const child = this.childOf(messageId);
      if (child === undefined) continue;
      const { targets, targetIndex } = contextOf(child);
      if (targets[targetIndex] === responder) child.send({ type: "ACK", agentId: responder });
    }
  }

  /** An agent acknowledged a message. Unknown and finished messages are ignored: acks may repeat. */
  acknowledge(connection: AgentConnection, messageId: string): void {
    this.childOf(messageId)?.send({ type: "ACK", agentId: connection.agentId });
  }

  /** An agent connected: its queue is served. */
  connected(connection: AgentConnection): void {
    this.pump(connection.agentId);
  }

  /** An agent's socket wrote out what waited: its queue is served again. */
  drained(connection: AgentConnection): void {
    this.pump(connection.agentId);
  }

  /** An agent's socket closed: every message waiting for its ack there failed this attempt. */
  disconnected(connection: AgentConnection): void {
    for (const messageId of [...connection.inFlight]) {
      this.childOf(messageId)?.send({ type: "SEND_FAILED", error: `Connection of ${connection.agentId} closed before the ack` });
    }
    connection.inFlight.clear();
  }

  /** Reaps every delivery actor and empties the queues (the bus is stopping). */
  stop(): void {
    this.options.runtime.clearPool("delivery");
    this.liveBytes = 0;
    this.queues.clear();
  }

  // ---- DeliveryPoolHost: what the runtime tells the owner of the delivery actors ----

  /** The machine's `dispatch`: write the message to its current target now, or queue it. */
  dispatch(context: DeliveryContext, self: AnyActorRef): void {
    const { messageId } = context;
    const target = context.targets[context.targetIndex] as string;
    this.release(messageId);
    const localSink = this.localSinks.get(messageId);
    if (localSink !== undefined) {
      self.send({ type: "SENT", agentId: target } satisfies DeliveryEvent);
      localSink(context.envelope as MessageEnvelope);
      self.send({ type: "ACK", agentId: target } satisfies DeliveryEvent);
      return;
    }
    const connection = this.options.connection(target);
    const queue = this.queues.get(target);
    if (connection !== undefined && this.hasRoom(connection) && (queue === undefined || queue.waiting.size === 0) && connection.canWrite(context.frame)) {
      const awaitsAck = this.write(messageId, context.frame, connection);
      self.send({ type: "SENT", agentId: target } satisfies DeliveryEvent);
      if (!awaitsAck) self.send({ type: "ACK", agentId: target } satisfies DeliveryEvent);
      return;
    }
    this.enqueue(target, messageId, (context.envelope as MessageEnvelope).priority);
    self.send({ type: "QUEUED" } satisfies DeliveryEvent);
  }

  /** Counts transitions; a message that leaves `queued` leaves its queue. */
  stateChanged(child: AnyActorRef, from: string | undefined, to: string | undefined): void {
    if (from !== undefined && !FINAL_STATUSES.has(from)) this.counts[from as DeliveryStatus] -= 1;
    if (to !== undefined && !FINAL_STATUSES.has(to)) this.counts[to as DeliveryStatus] += 1;
    const { messageId, targets } = contextOf(child);
    if (from === "queued" && to !== "queued") {
      for (const target of targets) this.dequeue(target, messageId);
    }
  }

  /** A delivery's emitted event: a final one leaves the status record; the bus hears of each. */
  emitted(child: AnyActorRef, event: { type: string }): void {
    const emitted = event as DeliveryEmitted;
    const context = contextOf(child);
    // Emitted events arrive after the transition's own effects: a new attempt's write is not undone here.
    if (emitted.type === "message.retrying" || emitted.type === "message.acknowledged" || emitted.type === "message.dead") this.release(context.messageId);
    if (emitted.type === "message.acknowledged" || emitted.type === "message.dead") {
      this.remember(statusViewOf(context.messageId, emitted.type === "message.acknowledged" ? "acknowledged" : "dead", context));
      this.forgetRequest(context.envelope as MessageEnvelope);
      this.liveBytes -= context.frame.length;
    }
    const { hub } = this.options.runtime;
    // Every message passes here several times: build the stream's event only for a listener.
    if (hub.wants(emitted.type)) {
      const { type, ...fields } = emitted;
      hub.emit(type, deliveryChildId(context.messageId), fields as never);
    }
    this.options.onStatus({ event: emitted, envelope: context.envelope as MessageEnvelope, acceptedAt: context.acceptedAt });
  }

  /** A delivery actor was reaped: nothing of it stays but its status record. */
  released(childId: string, _ending: PoolChildEnding): void {
    const messageId = childId.slice(deliveryChildId("").length);
    this.localSinks.delete(messageId);
    this.release(messageId);
  }

  // ---- queues and windows ----

  private childOf(messageId: string): DeliveryActor | undefined {
    return this.options.runtime.pooledChild(deliveryChildId(messageId)) as DeliveryActor | undefined;
  }

  /** A finished `task_request` can no longer be acknowledged by an answer. */
  private forgetRequest(envelope: MessageEnvelope): void {
    const taskId = requestTaskIdOf(envelope);
    const requests = taskId === undefined ? undefined : this.requestsByTask.get(taskId);
    if (taskId === undefined || requests === undefined) return;
    requests.delete(envelope.message_id);
    if (requests.size === 0) this.requestsByTask.delete(taskId);
  }

  private remember(record: MessageStatusView): void {
    this.finished.set(record.message_id, record);
    this.counts[record.status] += 1;
    while (this.finished.size > this.options.maxRetainedMessages) {
      const [oldestId, oldest] = this.finished.entries().next().value as [string, MessageStatusView];
      this.finished.delete(oldestId);
      this.counts[oldest.status] -= 1;
    }
  }

  private enqueue(agentId: string, messageId: string, priority: MessageEnvelope["priority"]): void {
    let queue = this.queues.get(agentId);
    if (queue === undefined) {
      queue = new RecipientQueue();
      this.queues.set(agentId, queue);
    }
    queue.order.push(messageId, priority);
    queue.waiting.add(messageId);
  }

  private dequeue(agentId: string, messageId: string): void {
    const queue = this.queues.get(agentId);
    if (queue === undefined || !queue.waiting.delete(messageId)) return;
    // Its entry in `order` is skipped when reached; an empty queue is dropped with its stale entries.
    if (queue.waiting.size === 0) this.queues.delete(agentId);
  }

  private hasRoom(connection: AgentConnection): boolean {
    return connection.open && connection.inFlight.size < this.options.maxInFlightPerAgent;
  }

  /** Writes the message; false when its agent sends no acks (at-most-once: written counts as acknowledged). */
  private write(messageId: string, frame: string, connection: AgentConnection): boolean {
    connection.send(frame);
    if (!this.options.sendsAcks(connection.agentId)) return false;
    connection.inFlight.add(messageId);
    this.writtenTo.set(messageId, connection);
    return true;
  }

  /**
   * Writes queued messages to the agent's socket while its window has room and its buffer takes them, most
   * urgent first; what is left waits for the next ack or the socket's 'drain'.
   */
  private pump(agentId: string): void {
    const connection = this.options.connection(agentId);
    const queue = this.queues.get(agentId);
    if (connection === undefined || queue === undefined) return;
    while (queue.waiting.size > 0 && this.hasRoom(connection)) {
      const messageId = queue.order.peek() as string;
      const child = queue.waiting.has(messageId) ? this.childOf(messageId) : undefined;
      if (child === undefined) {
        queue.order.shift();
        continue;
      }
      const { frame } = contextOf(child);
      if (!connection.canWrite(frame)) return;
      queue.order.shift();
      const awaitsAck = this.write(messageId, frame, connection);
      // SENT moves it out of `queued`, which takes it out of the queue (see stateChanged).
      child.send({ type: "SENT", agentId });
      if (!awaitsAck) child.send({ type: "ACK", agentId });
    }
  }

  /** The attempt on the socket a message was written to is over: its window gets the room back. */
  private release(messageId: string): void {
    const connection = this.writtenTo.get(messageId);
    if (connection === undefined) return;
    this.writtenTo.delete(messageId);
    connection.inFlight.delete(messageId);
    if (connection.open) this.pump(connection.agentId);
  }
}
