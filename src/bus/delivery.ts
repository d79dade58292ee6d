/**
 * Deliveries: one delivery actor per accepted message, the per-recipient priority queues, the window of
 * unacknowledged messages per socket, dedupe by `message_id`, and the memory of finished messages.
 */
import { createActor, type Actor, type InspectionEvent } from "xstate";
import { deliveryMachine, type DeliveryEmitted, type DeliveryStatus } from "../../machines/delivery.machine.js";
import type { Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { AgentConnection as SocketConnection } from "./agent-connections.js";
import type { MessageEnvelope } from "../protocol/envelope.js";
import { Fifo, PriorityQueue } from "./priority-queue.js";

type DeliveryActor = Actor<typeof deliveryMachine>;

/** What a delivery writes to: an agent's socket, or a runtime agent's in-process endpoint (always open). */
export type AgentConnection = Pick<SocketConnection, "agentId" | "inFlight" | "open" | "send">;

/** Where a delivery stands, as `GET /messages/:id` answers it. */
export interface MessageStatusView {
  message_id: string;
  status: DeliveryStatus;
  attempts: number;
  last_error?: string;
}

/** One accepted message. */
export interface MessageRecord {
  readonly envelope: MessageEnvelope;
  /** The envelope as the JSON text frame written to sockets, serialized once. */
  readonly frame: string;
  readonly acceptedAt: number;
  status: DeliveryStatus;
  attempts: number;
  lastError: string | null;
  /** The agent being tried. */
  target: string;
  /** The socket the message was last written to, while it waits for the ack there. */
  connection: AgentConnection | undefined;
  /** Receives the message in this process instead of a socket (a sync sender waiting for this reply). */
  localSink: ((envelope: MessageEnvelope) => void) | undefined;
  /** Dropped once the delivery is final. */
  actor: DeliveryActor | undefined;
}

/** What the deliveries need from the bus. */
export interface DeliveriesOptions {
  clock: Clock;
  inspect: ((event: InspectionEvent) => void) | undefined;
  connection(agentId: string): AgentConnection | undefined;
  ackTimeoutMs: number;
  retryBaseMs: number;
  maxInFlightPerAgent: number;
  maxQueuedPerAgent: number;
  maxRetainedMessages: number;
  /** Every status change, after the record is updated. */
  onStatus(record: MessageRecord, event: DeliveryEmitted): void;
}

/** What `accept` needs besides the envelope. */
export interface AcceptOptions {
  timeoutMs: number;
  localSink?: (envelope: MessageEnvelope) => void;
}

const STATUS_OF: Record<DeliveryEmitted["type"], DeliveryStatus> = {
  "message.accepted": "accepted",
  "message.queued": "queued",
  "message.delivered": "delivered",
  "message.acknowledged": "acknowledged",
  "message.retrying": "retrying",
  "message.dead": "dead",
};

/** Every message of one bus, from acceptance until it is forgotten. */
export class Deliveries {
  private readonly records = new Map<string, MessageRecord>();
  private readonly queues = new Map<string, PriorityQueue<MessageRecord>>();
  /** Finished messages, oldest first: forgotten beyond `maxRetainedMessages`. */
  private readonly finished = new Fifo<string>();
  private readonly counts: Record<DeliveryStatus, number> = { accepted: 0, queued: 0, delivered: 0, acknowledged: 0, retrying: 0, dead: 0 };
  private readonly machine: typeof deliveryMachine;

  constructor(private readonly options: DeliveriesOptions) {
    this.machine = deliveryMachine.provide({
      actions: {
        dispatch: ({ context, self }) => this.dispatch(context.messageId, context.targets[context.targetIndex] ?? "", self),
      },
    });
  }

  /** The record of a message, while it is remembered. */
  get(messageId: string): MessageRecord | undefined {
    return this.records.get(messageId);
  }

  /** A message's status, while it is remembered. */
  status(messageId: string): MessageStatusView | undefined {
    const record = this.records.get(messageId);
    if (record === undefined) return undefined;
    return {
      message_id: messageId,
      status: record.status,
      attempts: record.attempts,
      ...(record.lastError === null ? {} : { last_error: record.lastError }),
    };
  }

  /** Messages remembered, by status. Finished ones count until they are forgotten. */
  countsByStatus(): Record<DeliveryStatus, number> {
    return { ...this.counts };
  }

  /** Messages waiting in an agent's queue. */
  queuedFor(agentId: string): number {
    return this.queues.get(agentId)?.size ?? 0;
  }

  /** Messages written to a socket and not yet acknowledged. */
  get unacknowledged(): number {
    return this.counts.delivered;
  }

  /** Starts the delivery of a validated, new message. A full recipient queue is CAPACITY. */
  accept(envelope: MessageEnvelope, { timeoutMs, localSink }: AcceptOptions): MessageRecord {
    const recipient = envelope.recipient.agent_id;
    if (localSink === undefined && this.queuedFor(recipient) >= this.options.maxQueuedPerAgent) {
      throw new BridgeError("CAPACITY", `The queue of ${recipient} is full (${this.options.maxQueuedPerAgent} messages)`, { agentId: recipient });
    }
    const record: MessageRecord = {
      envelope,
      frame: JSON.stringify(envelope),
      acceptedAt: this.options.clock.now(),
      status: "accepted",
      attempts: 0,
      lastError: null,
      target: recipient,
      connection: undefined,
      localSink,
      actor: undefined,
    };
    this.records.set(envelope.message_id, record);
    this.counts.accepted += 1;
    const { routing } = envelope;
    const actor = createActor(this.machine, {
      id: `message:${envelope.message_id}`,
      clock: this.options.clock,
      ...(this.options.inspect ? { inspect: this.options.inspect } : {}),
      input: {
        messageId: envelope.message_id,
        targets: [recipient, ...(routing.fallback_agents ?? []).filter((agentId) => agentId !== recipient)],
        maxRetries: routing.retry_policy.max_retries,
        backoff: routing.retry_policy.backoff,
        retryBaseMs: this.options.retryBaseMs,
        ackTimeoutMs: this.options.ackTimeoutMs,
        timeoutMs,
      },
    });
    record.actor = actor;
    actor.on("*", (event) => this.onEmitted(record, event));
    actor.start();
    return record;
  }

  /** An agent acknowledged a message. Unknown and finished messages are ignored: acks may repeat. */
  acknowledge(connection: AgentConnection, messageId: string): void {
    this.records.get(messageId)?.actor?.send({ type: "ACK", agentId: connection.agentId });
  }

  /** An agent connected: its queue is served. */
  connected(connection: AgentConnection): void {
    this.pump(connection.agentId);
  }

  /** An agent's socket closed: every message waiting for its ack there failed this attempt. */
  disconnected(connection: AgentConnection): void {
    for (const messageId of [...connection.inFlight]) {
      this.records.get(messageId)?.actor?.send({ type: "SEND_FAILED", error: `Connection of ${connection.agentId} closed before the ack` });
    }
    connection.inFlight.clear();
  }

  /** Stops every delivery actor and empties the queues (the bus is stopping). */
  stop(): void {
    for (const record of this.records.values()) {
      record.actor?.stop();
      record.actor = undefined;
    }
    this.queues.clear();
  }

  /** The machine's `dispatch`: write the message to its target now, or queue it. */
  private dispatch(messageId: string, target: string, self: { send(event: { type: "SENT"; agentId: string } | { type: "QUEUED" } | { type: "ACK"; agentId: string }): void }): void {
    const record = this.records.get(messageId);
    if (record === undefined) return;
    this.release(record);
    record.target = target;
    if (record.localSink !== undefined) {
      self.send({ type: "SENT", agentId: target });
      record.localSink(record.envelope);
      self.send({ type: "ACK", agentId: target });
      return;
    }
    const connection = this.options.connection(target);
    const queue = this.queues.get(target);
    if (connection !== undefined && this.hasRoom(connection) && (queue === undefined || queue.size === 0)) {
      this.write(record, connection);
      self.send({ type: "SENT", agentId: target });
      return;
    }
    this.queueOf(target).push(record, record.envelope.priority);
    self.send({ type: "QUEUED" });
  }

  private queueOf(agentId: string): PriorityQueue<MessageRecord> {
    let queue = this.queues.get(agentId);
    if (queue === undefined) {
      queue = new PriorityQueue();
      this.queues.set(agentId, queue);
    }
    return queue;
  }

  private hasRoom(connection: AgentConnection): boolean {
    return connection.open && connection.inFlight.size < this.options.maxInFlightPerAgent;
  }

  private write(record: MessageRecord, connection: AgentConnection): void {
    connection.send(record.frame);
    connection.inFlight.add(record.envelope.message_id);
    record.connection = connection;
  }

  /** Writes queued messages to the agent's socket while its window has room, most urgent first. */
  private pump(agentId: string): void {
    const connection = this.options.connection(agentId);
    const queue = this.queues.get(agentId);
    if (connection === undefined || queue === undefined) return;
    while (queue.size > 0 && this.hasRoom(connection)) {
      const record = queue.shift() as MessageRecord;
      // Entries go stale when the message was acknowledged late or timed out while it waited.
      if (record.status !== "queued" || record.target !== agentId || record.actor === undefined) continue;
      this.write(record, connection);
      record.actor.send({ type: "SENT", agentId });
    }
    if (queue.size === 0) this.queues.delete(agentId);
  }

  /** Emitted events reach this after the transition (XState defers `emit`), so `dispatch` may have run already. */
  private onEmitted(record: MessageRecord, event: DeliveryEmitted): void {
    const status = STATUS_OF[event.type];
    this.counts[record.status] -= 1;
    this.counts[status] += 1;
    record.status = status;
    if (event.type === "message.delivered") record.attempts = event.attempts;
    if (event.type === "message.retrying" || event.type === "message.dead") record.lastError = event.error;
    if (status === "retrying" || status === "acknowledged" || status === "dead") this.release(record);
    if (status === "acknowledged" || status === "dead") this.finish(record);
    this.options.onStatus(record, event);
  }

  /** The attempt on `record.connection` is over: its window gets the room back. */
  private release(record: MessageRecord): void {
    const { connection } = record;
    if (connection === undefined) return;
    connection.inFlight.delete(record.envelope.message_id);
    record.connection = undefined;
    if (connection.open) this.pump(connection.agentId);
  }

  private finish(record: MessageRecord): void {
    record.actor = undefined;
    record.localSink = undefined;
    this.finished.push(record.envelope.message_id);
    while (this.finished.size > this.options.maxRetainedMessages) {
      const messageId = this.finished.shift() as string;
      const forgotten = this.records.get(messageId);
      if (forgotten !== undefined) this.counts[forgotten.status] -= 1;
      this.records.delete(messageId);
    }
  }
}
