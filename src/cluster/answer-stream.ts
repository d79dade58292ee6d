/**
 * The cluster's answers to workflow tasks that name no workflow (docs/cluster.md, "Answers that name no
 * workflow"): an answer that names only the request or task it answers goes to every node, and the node whose
 * workflow awaits it takes it. Heard live on the subject, and kept a while in a JetStream stream: the node that
 * takes over a dead node's workflows reads again what was said while no node ran them.
 */
import { BridgeError } from "../errors.js";
import { isNotFound, keepReplicas, natsError, natsJetstream, replicasError, type ClusterConnection, type Replicas } from "./nats-connection.js";

const NANOS_PER_MS = 1_000_000;
/** The most the stream keeps, whatever its age: the oldest answers go first. */
const MAX_STREAM_BYTES = 64 * 1024 * 1024;
/** Answers one fetch of a replay takes. */
const REPLAY_BATCH = 500;
/** How long a replay's fetch waits for answers the stream said it holds. */
const REPLAY_FETCH_MS = 2_000;

/** How the answers are kept. */
export interface AnswerStreamOptions {
  /** The JetStream stream (created when missing). */
  stream: string;
  /** The subject answers go to. */
  subject: string;
  /** How long an answer is kept for a replay. */
  keepMs: number;
  /** Copies JetStream keeps of the stream (`cluster.replicas`); an existing stream is brought to it when given. */
  replicas?: Replicas;
}

/** The answers every node hears, kept for `keepMs`. */
export class ClusterAnswers {
  readonly #connection: ClusterConnection;
  readonly #stream: string;
  readonly #subject: string;

  private constructor(connection: ClusterConnection, stream: string, subject: string) {
    this.#connection = connection;
    this.#stream = stream;
    this.#subject = subject;
  }

  /** Opens the stream, creating it when missing (file storage, limits retention: kept `keepMs`, 64 MiB at most). */
  static async open(connection: ClusterConnection, { stream, subject, keepMs, replicas }: AnswerStreamOptions): Promise<ClusterAnswers> {
    if (!Number.isSafeInteger(keepMs) || keepMs < 1_000)
      throw new BridgeError("CONFIG", "The answers' keepMs must be an integer of at least 1000", { field: "keepMs" });
    const { DiscardPolicy, RetentionPolicy, StorageType } = await natsJetstream();
    try {
      await connection.manager.streams.info(stream);
      if (replicas !== undefined) await keepReplicas(connection, stream, replicas);
    } catch (error) {
      if (!isNotFound(error)) throw natsError(error, connection.where, `reading the stream ${stream}`);
      try {
        await connection.manager.streams.add({
          name: stream,
          subjects: [subject],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          max_age: keepMs * NANOS_PER_MS,
          max_bytes: MAX_STREAM_BYTES,
          duplicate_window: Math.min(keepMs, 120_000) * NANOS_PER_MS,
          num_replicas: replicas ?? 1,
        });
      } catch (addError) {
        throw replicasError(addError, connection.where, stream, replicas ?? 1) ?? natsError(addError, connection.where, `creating the stream ${stream}`);
      }
    }
    return new ClusterAnswers(connection, stream, subject);
  }

  /** Tells every node (and the stream) an answer; `key` drops a second publish of the same answer. Resolves once the stream has it. */
  async publish(key: string, data: string): Promise<void> {
    try {
      await this.#connection.jetstream.publish(this.#subject, data, { msgID: key, expect: { streamName: this.#stream } });
    } catch (error) {
      throw natsError(error, this.#connection.where, `telling the other nodes answer ${key}`);
    }
  }

  /** Hears every answer as it is told (core NATS: what is said while this node is away is not heard); returns the function that stops. */
  listen(onAnswer: (data: string) => void): () => void {
    const subscription = this.#connection.nats.subscribe(this.#subject, {
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
      const consumer = await this.#connection.jetstream.consumers.get(this.#stream, {
        filter_subjects: this.#subject,
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
}
