/**
 * The cluster's message stream: bus messages between nodes on a JetStream stream, so that a message accepted by
 * one node reaches its recipient connected to another, and survives the death of either.
 *
 * Each message goes to the subject `<prefix>.<recipient>.<priority>` (the recipient in base64url), under its key
 * as JetStream's message id, so that the same message published twice within the duplicate window is stored
 * once. The stream is a work queue: a message stays until its recipient's node acknowledges it, and then it is
 * gone. Each recipient has one durable pull consumer with explicit acks, shared by every node: whichever node the
 * recipient is connected to pulls its messages, and one that is not acknowledged within the ack wait (its node
 * died, or lost the recipient) is delivered again, to whichever node pulls next. A node orders what it pulled
 * by priority in its own queue, as a single node does.
 */
import type { Consumer, ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import { BridgeError } from "../errors.js";
import { PRIORITIES, type Priority } from "../protocol/envelope.js";
import {
  isNotFound,
  keepReplicas,
  natsError,
  natsJetstream,
  natsToken,
  replicasError,
  streamConfig,
  type ClusterConnection,
  type Replicas,
} from "./nats-connection.js";

/** The stream and subjects messages use unless told otherwise. */
export const DEFAULT_MESSAGE_STREAM = "TROUPE_MESSAGES";
export const DEFAULT_SUBJECT_PREFIX = "troupe.messages";
const NANOS_PER_MS = 1_000_000;

/** How the message stream is set up. */
export interface MessageStreamOptions {
  /** The JetStream stream (default `TROUPE_MESSAGES`), created when missing. */
  stream?: string;
  /** The subjects' prefix (default `troupe.messages`). */
  subjectPrefix?: string;
  /** How long a message id is remembered to drop a second publish of it (default 2 minutes). */
  duplicateWindowMs?: number;
  /** How long a pulled message may stay unacknowledged before it is delivered again (default 30 s). */
  ackWaitMs?: number;
  /** Copies of the stream a NATS cluster keeps, an existing stream brought to it; not given: 1 for a new stream, an existing one as it is. */
  replicas?: Replicas;
  /**
   * What the stream holds at most (an existing stream is brought to it): messages waiting for one recipient at one
   * priority (the bus's `maxQueuedPerAgent`), and bytes in all. A publish past either is refused (CAPACITY, 429),
   * as one node refuses a message past its queues' bounds.
   */
  limits?: { perRecipientPriority: number; maxBytes: number };
}

/** A message to publish. */
export interface OutgoingMessage {
  recipient: string;
  /** Unique per message (the bus's `<sender> U+001F <message_id>`): a second publish within the duplicate window is dropped. */
  key: string;
  priority: Priority;
  /** The message, as the bus serialized it. */
  data: string;
}

/** What a publish did. */
export interface Published {
  /** The message's sequence in the stream. */
  sequence: number;
  /** Whether the stream already held this key (and kept the first). */
  duplicate: boolean;
}

/** A message pulled for a recipient. */
export interface StreamedMessage {
  recipient: string;
  key: string;
  priority: Priority;
  data: string;
  /** 1 at the first delivery; more when it was delivered before and not acknowledged. */
  deliveryCount: number;
  /** Acknowledges it, and resolves once the server has it: it is then never delivered again. */
  ack(): Promise<void>;
  /** Gives it back, to be delivered again after `delayMs`. */
  retryAfter(delayMs: number): void;
  /** Keeps it for another ack wait (a delivery still in progress). */
  working(): void;
}

/** A running pull of one recipient's messages. */
export interface MessageSubscription {
  /**
   * Stops pulling; messages pulled and not acknowledged are delivered again after their ack wait, and those given
   * back (`retryAfter`) once it resolved go to the next pull.
   */
  stop(): Promise<void>;
}

/** What `take` found of a recipient's messages. */
export interface TakenMessages {
  /** Those no node held: taken by the caller, to acknowledge or give back. */
  messages: StreamedMessage[];
  /**
   * Those it could not reach (about): held by a node, or waiting out a delay before they are delivered again (a
   * dead node's come back after the ack wait).
   */
  unreached: number;
}

/** The cluster's stream of bus messages. */
export class ClusterMessageStream {
  readonly #connection: ClusterConnection;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #ackWaitMs: number;
  readonly #duplicateWindowMs: number;

  private constructor(connection: ClusterConnection, stream: string, prefix: string, ackWaitMs: number, duplicateWindowMs: number) {
    this.#connection = connection;
    this.#stream = stream;
    this.#prefix = prefix;
    this.#ackWaitMs = ackWaitMs;
    this.#duplicateWindowMs = duplicateWindowMs;
  }

  /** How long a pulled message may stay unacknowledged before it is delivered again. */
  get ackWaitMs(): number {
    return this.#ackWaitMs;
  }

  /**
   * How long after a message is published the stream takes another publish of its key for the same message
   * (answered `duplicate`, not stored again), acked or not: the stream's own setting, as it was made.
   */
  get duplicateWindowMs(): number {
    return this.#duplicateWindowMs;
  }

  /**
   * Opens the stream, creating it when missing (file storage, work-queue retention, `replicas` copies); an existing
   * stream is brought to `replicas` copies when they are given, and otherwise used as it is.
   */
  static async open(connection: ClusterConnection, options: MessageStreamOptions = {}): Promise<ClusterMessageStream> {
    const stream = options.stream ?? DEFAULT_MESSAGE_STREAM;
    const prefix = options.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX;
    const duplicateWindowMs = options.duplicateWindowMs ?? 120_000;
    const ackWaitMs = options.ackWaitMs ?? 30_000;
    for (const [field, value] of Object.entries({ duplicateWindowMs, ackWaitMs })) {
      if (!Number.isSafeInteger(value) || value < 1) throw new BridgeError("CONFIG", `${field} must be a positive integer`, { field });
    }
    const { DiscardPolicy, RetentionPolicy, StorageType } = await natsJetstream();
    const { limits } = options;
    const bounds =
      limits === undefined
        ? {}
        : { max_msgs_per_subject: limits.perRecipientPriority, max_bytes: limits.maxBytes, discard: DiscardPolicy.New, discard_new_per_subject: true };
    const existing = await streamConfig(connection, stream);
    if (existing !== undefined) {
      if (options.replicas !== undefined || limits !== undefined) await keepReplicas(connection, stream, options.replicas, bounds, existing);
    } else {
      const replicas = options.replicas ?? 1;
      try {
        await connection.manager.streams.add({
          name: stream,
          subjects: [`${prefix}.>`],
          retention: RetentionPolicy.Workqueue,
          storage: StorageType.File,
          duplicate_window: duplicateWindowMs * NANOS_PER_MS,
          num_replicas: replicas,
          ...bounds,
        });
      } catch (addError) {
        throw replicasError(addError, connection.where, stream, replicas) ?? natsError(addError, connection.where, `creating the stream ${stream}`);
      }
    }
    const window = existing?.duplicate_window === undefined ? duplicateWindowMs : Math.floor(existing.duplicate_window / NANOS_PER_MS);
    return new ClusterMessageStream(connection, stream, prefix, ackWaitMs, window);
  }

  /** Stores a message in the stream; resolves once JetStream has it (durable on the server's disk). TRANSPORT when NATS does not answer. */
  async publish({ recipient, key, priority, data }: OutgoingMessage): Promise<Published> {
    if (!PRIORITIES.includes(priority)) throw new BridgeError("INTERNAL", `Unknown priority ${JSON.stringify(priority)}`);
    try {
      const ack = await this.#connection.jetstream.publish(`${this.#recipientSubject(recipient)}.${priority}`, data, {
        msgID: key,
        expect: { streamName: this.#stream },
      });
      return { sequence: ack.seq, duplicate: ack.duplicate };
    } catch (error) {
      if (error instanceof Error && /maximum (messages per subject|messages|bytes) exceeded/i.test(error.message)) {
        throw new BridgeError("CAPACITY", `The cluster's queue for ${recipient} (or the cluster's stream) is full: try again later`, {
          recipient,
          retryable: true,
        });
      }
      throw natsError(error, this.#connection.where, `publishing ${key}`);
    }
  }

  /** Removes a message from the stream by its sequence (a copy published in vain); false when it was gone already. */
  async remove(sequence: number): Promise<boolean> {
    try {
      return await this.#connection.manager.streams.deleteMessage(this.#stream, sequence, false);
    } catch (error) {
      if (isNotFound(error)) return false;
      throw natsError(error, this.#connection.where, `removing message ${sequence}`);
    }
  }

  /**
   * Pulls `recipient`'s messages, at most `maxInFlight` unacknowledged at a time, and hands each to `onMessage`
   * in the order the stream holds them. Creates the recipient's durable consumer when missing.
   */
  async subscribe(recipient: string, onMessage: (message: StreamedMessage) => void, { maxInFlight = 100 } = {}): Promise<MessageSubscription> {
    let consumer: Consumer;
    let messages: ConsumerMessages;
    try {
      consumer = await this.#consumer(recipient, maxInFlight);
      messages = await consumer.consume({ max_messages: maxInFlight });
    } catch (error) {
      throw natsError(error, this.#connection.where, `subscribing to ${recipient}'s messages`);
    }
    const pulling = (async () => {
      for await (const message of messages) onMessage(this.#streamed(recipient, message));
    })();
    return {
      stop: async () => {
        await messages.close();
        await pulling;
        // The server keeps the closed pull's request until it next looks at its requests. nats-server before 2.10.14
        // (Debian 12 has 2.9.10) loses a message it delivers again (given back) to such a request alone, until its
        // next ack wait: reading the consumer's info makes it drop them first. Not reached (NATS away), the pull's
        // request expires by itself.
        await consumer.info(false).catch(() => undefined);
      },
    };
  }

  /**
   * Takes up to `max` of `recipient`'s messages that no node holds now, waiting at most `expiresMs` for them
   * (none at once when the recipient has no message at all). For a node that must look at messages waiting for an
   * agent connected nowhere (their timeouts); `maxInFlight` is the consumer's, as `subscribe` creates it. Messages
   * given back (`retryAfter`) or delivered and not acknowledged count as JetStream's `num_ack_pending`, not as its
   * `num_pending`: both are looked at.
   */
  async take(recipient: string, max: number, { maxInFlight = 100, expiresMs = 1_000 } = {}): Promise<TakenMessages> {
    try {
      const consumer = await this.#consumer(recipient, maxInFlight);
      const { num_pending: waiting, num_ack_pending: delivered } = await consumer.info(true);
      if (waiting + delivered === 0) return { messages: [], unreached: 0 };
      const fetched = await consumer.fetch({ max_messages: Math.min(max, waiting + delivered), expires: expiresMs });
      const messages: StreamedMessage[] = [];
      for await (const message of fetched) messages.push(this.#streamed(recipient, message));
      return { messages, unreached: Math.max(0, waiting + delivered - messages.length) };
    } catch (error) {
      throw natsError(error, this.#connection.where, `taking ${recipient}'s waiting messages`);
    }
  }

  /** The recipient's durable pull consumer, created when missing. */
  async #consumer(recipient: string, maxInFlight: number) {
    const { AckPolicy, DeliverPolicy } = await natsJetstream();
    const durable = `troupe_${encode(recipient)}`;
    await this.#connection.manager.consumers.add(this.#stream, {
      durable_name: durable,
      filter_subject: `${this.#recipientSubject(recipient)}.*`,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: this.#ackWaitMs * NANOS_PER_MS,
      max_ack_pending: maxInFlight,
    });
    return this.#connection.jetstream.consumers.get(this.#stream, durable);
  }

  #recipientSubject(recipient: string): string {
    return `${this.#prefix}.${encode(recipient)}`;
  }

  #streamed(recipient: string, message: JsMsg): StreamedMessage {
    const priority = message.subject.slice(message.subject.lastIndexOf(".") + 1) as Priority;
    const where = this.#connection.where;
    return {
      recipient,
      key: message.headers?.get("Nats-Msg-Id") ?? "",
      priority,
      data: message.string(),
      deliveryCount: message.info.deliveryCount,
      async ack() {
        try {
          await message.ackAck();
        } catch (error) {
          throw natsError(error, where, `acknowledging a message to ${recipient}`);
        }
      },
      retryAfter: (delayMs) => message.nak(delayMs),
      working: () => message.working(),
    };
  }
}

/** A recipient as one subject token (and durable name): agent ids hold `.` and `:`. */
function encode(recipient: string): string {
  return natsToken(recipient, "A message needs a recipient");
}
