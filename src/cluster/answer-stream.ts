/**
 * The cluster's answers to workflow tasks that name no workflow (docs/cluster.md, "Answers that name no
 * workflow"): an answer that names only the request or task it answers goes to every node, and the node whose
 * workflow awaits it takes it. Heard live on the subject, and kept a while in a JetStream stream: the node that
 * takes over a dead node's workflows reads again what was said while no node ran them.
 *
 * Each sender has its own subject (`<subject>.<sender in base64url>`) and its share of the stream: JetStream keeps at
 * most `perSender.answers` of one sender's answers, and this node publishes at most `perSender.bytes` of them for as
 * long as the stream keeps them. Past its share, or past the whole stream's bytes, an answer is refused (CAPACITY,
 * 429) and nothing kept is dropped for it: one sender cannot push another's answers out.
 */
import { BridgeError } from "../errors.js";
import { quotaExceeded } from "../server/quotas.js";
import { keepReplicas, natsError, natsJetstream, natsToken, replicasError, streamConfig, type ClusterConnection, type Replicas } from "./nats-connection.js";

const NANOS_PER_MS = 1_000_000;
/** The most the stream keeps, whatever its age: past it an answer is refused, none kept is dropped for it. */
const MAX_STREAM_BYTES = 64 * 1024 * 1024;
/** One sender's share: the answers the cluster keeps of it, and the bytes of them each node publishes (an eighth of the stream). */
const SENDER_SHARE = { answers: 1_000, bytes: MAX_STREAM_BYTES / 8 };
/** Answers one fetch of a replay takes. */
const REPLAY_BATCH = 500;
/** How long a replay's fetch waits for answers the stream said it holds. */
const REPLAY_FETCH_MS = 2_000;

/** How the answers are kept. */
export interface AnswerStreamOptions {
  /** The JetStream stream (created when missing, an existing one brought to these bounds). */
  stream: string;
  /** The subjects' prefix: each sender's answers go to `<subject>.<sender in base64url>`. */
  subject: string;
  /** How long an answer is kept for a replay. */
  keepMs: number;
  /** Copies JetStream keeps of the stream (`cluster.replicas`); an existing stream is brought to it when given. */
  replicas?: Replicas;
  /** The bytes the whole stream keeps at most (default 64 MiB). */
  maxBytes?: number;
  /** One sender's share (default 1,000 answers in the cluster, 8 MiB of them published by each node). */
  perSender?: { answers: number; bytes: number };
}

/** What the stream keeps at most, and for how long. */
interface AnswerBounds {
  maxBytes: number;
  perSender: { answers: number; bytes: number };
  keepMs: number;
}

/** What one sender's answers published through this node hold: their sizes, and when the stream no longer keeps them, oldest first. */
interface HeldAnswers {
  bytes: number;
  answers: Array<{ bytes: number; until: number }>;
}

/** The answers every node hears, kept for `keepMs`. */
export class ClusterAnswers {
  readonly #connection: ClusterConnection;
  readonly #stream: string;
  readonly #subject: string;
  readonly #bounds: AnswerBounds;
  readonly #shares: SenderShares;

  private constructor(connection: ClusterConnection, stream: string, subject: string, bounds: AnswerBounds) {
    this.#connection = connection;
    this.#stream = stream;
    this.#subject = subject;
    this.#bounds = bounds;
    this.#shares = new SenderShares(bounds.perSender.bytes, bounds.keepMs);
  }

  /**
   * Opens the stream, creating it when missing (file storage, limits retention: kept `keepMs`, `maxBytes` at most,
   * `perSender.answers` per sender, new answers refused past either); an existing stream is brought to these bounds
   * and subjects (one made by an earlier troupe kept every answer on `subject` itself, oldest dropped when full).
   */
  static async open(
    connection: ClusterConnection,
    { stream, subject, keepMs, replicas, maxBytes = MAX_STREAM_BYTES, perSender = SENDER_SHARE }: AnswerStreamOptions,
  ): Promise<ClusterAnswers> {
    if (!Number.isSafeInteger(keepMs) || keepMs < 1_000)
      throw new BridgeError("CONFIG", "The answers' keepMs must be an integer of at least 1000", { field: "keepMs" });
    for (const [field, value] of Object.entries({ maxBytes, "perSender.answers": perSender.answers, "perSender.bytes": perSender.bytes })) {
      if (!Number.isSafeInteger(value) || value < 1) throw new BridgeError("CONFIG", `The answers' ${field} must be a positive integer`, { field });
    }
    const { DiscardPolicy, RetentionPolicy, StorageType } = await natsJetstream();
    const bounds = {
      subjects: [`${subject}.*`],
      discard: DiscardPolicy.New,
      max_bytes: maxBytes,
      max_msgs_per_subject: perSender.answers,
      discard_new_per_subject: true,
    };
    const existing = await streamConfig(connection, stream);
    if (existing !== undefined) await keepReplicas(connection, stream, replicas, bounds, existing);
    else {
      try {
        await connection.manager.streams.add({
          name: stream,
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          max_age: keepMs * NANOS_PER_MS,
          duplicate_window: Math.min(keepMs, 120_000) * NANOS_PER_MS,
          num_replicas: replicas ?? 1,
          ...bounds,
        });
      } catch (addError) {
        throw replicasError(addError, connection.where, stream, replicas ?? 1) ?? natsError(addError, connection.where, `creating the stream ${stream}`);
      }
    }
    return new ClusterAnswers(connection, stream, subject, { maxBytes, perSender, keepMs });
  }

  /**
   * Tells every node (and the stream) an answer of `sender`; `key` drops a second publish of the same answer.
   * Resolves once the stream has it. CAPACITY (429) past the sender's share or the stream's bytes: nothing kept is
   * dropped for it, and it is not told.
   */
  async publish(sender: string, key: string, data: string): Promise<void> {
    const subject = `${this.#subject}.${natsToken(sender, "An answer to keep names no sender")}`;
    const giveBack = this.#shares.take(sender, Buffer.byteLength(data));
    try {
      const ack = await this.#connection.jetstream.publish(subject, data, { msgID: key, expect: { streamName: this.#stream } });
      // The stream kept the first copy: this one takes nothing of the share.
      if (ack.duplicate) giveBack();
    } catch (error) {
      giveBack();
      throw this.#refusal(error, sender) ?? natsError(error, this.#connection.where, `telling the other nodes answer ${key}`);
    }
  }

  /** Hears every answer as it is told (core NATS: what is said while this node is away is not heard); returns the function that stops. */
  listen(onAnswer: (data: string) => void): () => void {
    const subscription = this.#connection.nats.subscribe(`${this.#subject}.*`, {
      callback: (error, message) => {
        if (error === null) onAnswer(message.string());
      },
    });
    return () => subscription.unsubscribe();
  }

  /** Hands `onAnswer` every answer the stream kept that was told at or after `since` (epoch ms), oldest first; resolves with their count. */
  async replay(since: number, onAnswer: (data: string) => void): Promise<number> {
    const { DeliverPolicy } = await natsJetstream();
    try {
      const { state } = await this.#connection.manager.streams.info(this.#stream);
      if (state.messages === 0 || Date.parse(state.last_ts) < since) return 0;
      const last = state.last_seq;
      // Unfiltered: the stream holds answers only, every sender's (and those an earlier troupe kept on the bare subject).
      const consumer = await this.#connection.jetstream.consumers.get(this.#stream, {
        deliver_policy: DeliverPolicy.StartTime,
        opt_start_time: new Date(since).toISOString(),
      });
      let count = 0;
      for (;;) {
        let sequence = 0;
        const batch = await consumer.fetch({ max_messages: REPLAY_BATCH, expires: REPLAY_FETCH_MS });
        for await (const message of batch) {
          sequence = message.seq;
          count += 1;
          onAnswer(message.string());
          if (sequence >= last) break;
        }
        // Up to what the stream held when the replay began, or until it holds nothing more (aged out meanwhile).
        if (sequence === 0 || sequence >= last) return count;
      }
    } catch (error) {
      throw natsError(error, this.#connection.where, `reading the answers kept in ${this.#stream}`);
    }
  }

  /** The CAPACITY error of an answer JetStream refused for the stream's bounds; `undefined` for any other error. */
  #refusal(error: unknown, sender: string): BridgeError | undefined {
    const reason = error instanceof Error ? /maximum (messages per subject|bytes) exceeded/i.exec(error.message)?.[1] : undefined;
    if (reason === undefined) return undefined;
    const keptFor = `kept ${Math.round(this.#bounds.keepMs / 1000)} s`;
    if (reason.toLowerCase() === "bytes") {
      return new BridgeError(
        "CAPACITY",
        `The cluster's answers that name no workflow fill their stream ${this.#stream} (${this.#bounds.maxBytes} bytes, each ${keptFor}): this answer of ${sender} is refused, and none kept is dropped for it; send it again once older ones aged out`,
        { sender, limit: this.#bounds.maxBytes, retryable: true },
      );
    }
    return new BridgeError(
      "CAPACITY",
      `The cluster keeps ${this.#bounds.perSender.answers} answers of ${sender} that name no workflow, its most (each ${keptFor}): this one is refused, and none kept is dropped for it; send it again once older ones aged out`,
      { sender, limit: this.#bounds.perSender.answers, retryable: true },
    );
  }
}

/**
 * The bytes of each sender's answers this node published that the stream may still keep (JetStream bounds a
 * subject in answers, not in bytes): a sender that holds its share is refused until the oldest of its answers age
 * out. Per node: a sender that publishes through several nodes gets a share from each.
 */
class SenderShares {
  readonly #held = new Map<string, HeldAnswers>();
  readonly #limitBytes: number;
  readonly #keepMs: number;
  #sweptAt = performance.now();

  constructor(limitBytes: number, keepMs: number) {
    this.#limitBytes = limitBytes;
    this.#keepMs = keepMs;
  }

  /**
   * Counts `bytes` in `sender`'s share, and answers the function that gives them back (the answer was refused, or was
   * a duplicate). CAPACITY (429, `retryAfterMs`: until its oldest answer ages out) while its answers hold the share.
   */
  take(sender: string, bytes: number): () => void {
    const now = performance.now();
    if (now - this.#sweptAt >= this.#keepMs) {
      this.#sweptAt = now;
      for (const other of [...this.#held.keys()]) this.#forgetAged(other, now);
    }
    const held: HeldAnswers = this.#forgetAged(sender, now) ?? { bytes: 0, answers: [] };
    if (held.bytes >= this.#limitBytes) {
      throw quotaExceeded(
        `The answers of ${sender} that name no workflow, published through this node and kept by the cluster, hold ${held.bytes} bytes, its share of ${this.#limitBytes}: this one is refused, and none kept is dropped for it; send it again once older ones aged out`,
        this.#limitBytes,
        held.answers[0]!.until - now,
      );
    }
    this.#held.set(sender, held);
    const answer = { bytes, until: now + this.#keepMs };
    held.answers.push(answer);
    held.bytes += bytes;
    return () => {
      held.bytes -= answer.bytes;
      answer.bytes = 0;
    };
  }

  /** What `sender`'s answers hold once those the stream no longer keeps are dropped; `undefined` (forgotten) when none is left. */
  #forgetAged(sender: string, now: number): HeldAnswers | undefined {
    const held = this.#held.get(sender);
    if (held === undefined) return undefined;
    while (held.answers.length > 0 && held.answers[0]!.until <= now) held.bytes -= held.answers.shift()!.bytes;
    if (held.answers.length > 0) return held;
    this.#held.delete(sender);
    return undefined;
  }
}
