/**
 * What a node of a cluster sends back for a request that may outlive any NATS request and may stream (a forwarded
 * prompt, a forwarded A2A request: docs/cluster.md, "Bridge sessions on any node" and "A2A across nodes").
 *
 * The asking node subscribes to a subject for this request alone (`<prefix>.<random id>`) and names it in its node
 * request; the answering node answers that request at once (it took it, or its refusal), then publishes to the
 * subject, on core NATS, messages numbered from 0: pieces of text, each of a kind the two sides agree on and each
 * within what a NATS message carries, a sign of life every third of a lease time, then an end (a JSON object) or an
 * error. The asking node reads them in order and gives up with TRANSPORT (`unavailable`: 503, ask again) after a
 * lease time without a word or at a number missing (core NATS delivers at most once), telling the answering node
 * (`cancel`) in case it still hears. Not JetStream: the stream matters only while its caller waits.
 */
import { z } from "zod";
import { BRIDGE_ERROR_TYPES, BridgeError, isServiceUnavailable, messageOf, toBridgeError } from "../errors.js";
import { randomId } from "../ids.js";
import type { ClusterNode } from "./node.js";
import { textPieces } from "./text-pieces.js";

/** Room left in a stream message for its number and keys around a piece of text. */
const MESSAGE_OVERHEAD_BYTES = 128;
/** The longest error message a stream carries (a longer one is cut). */
const MAX_ERROR_MESSAGE_CHARS = 4_096;

const seq = z.number().int().nonnegative();

/** One message of a stream, numbered from 0 by `seq`. */
const streamMessageSchema = z.union([
  z.strictObject({ seq, alive: z.literal(true) }),
  /** A piece of text of one kind: the pieces of a kind, in order, are its text. */
  z.strictObject({ seq, kind: z.string(), piece: z.string() }),
  /** The request answered: what the answer holds besides its text. */
  z.strictObject({ seq, end: z.record(z.string(), z.unknown()) }),
  z.strictObject({ seq, error: z.strictObject({ type: z.enum(BRIDGE_ERROR_TYPES), message: z.string(), details: z.record(z.string(), z.unknown()) }) }),
]);

/** What a stream message carries besides its number. */
type StreamContent = { alive: true } | { kind: string; piece: string } | { end: Record<string, unknown> } | { error: ReturnType<BridgeError["toJSON"]> };

/** How the asking node follows one stream. */
export interface AskOptions {
  /** Each piece of text, in order, with its kind. */
  onPiece: (kind: string, piece: string) => void;
  /** Tells the answering node to end the request on `subject` (its caller gave up, or its stream broke): best effort. */
  cancel: (subject: string) => void;
  /** Aborting it calls `cancel`: the stream goes on until the answering node ends it. */
  signal?: AbortSignal;
}

/** The streams of one cluster node under one subject prefix: those it asked for, and those it answers. */
export class NodeStreams {
  readonly #cluster: ClusterNode;
  readonly #prefix: string;
  /** Streams this node awaits. */
  readonly #asked = new Set<StreamReader>();
  /** Streams this node publishes, by subject. */
  readonly #served = new Map<string, { writer: StreamWriter; onCancel: () => void }>();
  #stopped: BridgeError | undefined;

  /** `prefix`: the subjects' prefix (`troupe.prompts`), which `subjectSchema` accepts. */
  constructor(cluster: ClusterNode, prefix: string) {
    this.#cluster = cluster;
    this.#prefix = prefix;
  }

  /** The schema of a stream's subject as a request names it: one of this prefix. */
  get subjectSchema(): z.ZodString {
    return z.string().startsWith(`${this.#prefix}.`);
  }

  /** How many streams this node awaits and publishes now. */
  get size(): { asked: number; served: number } {
    return { asked: this.#asked.size, served: this.#served.size };
  }

  /**
   * Sends `request(subject)` to node `nodeId` (its handler of `topic`), then reads the stream that node publishes to
   * `subject` until its end, which it resolves with; the node's refusal, or the stream's error, is thrown as it is.
   * TRANSPORT (`unavailable`) when the node does not answer, falls silent for a lease time or loses a message.
   */
  async ask(nodeId: string, topic: string, request: (subject: string) => unknown, options: AskOptions): Promise<Record<string, unknown>> {
    if (this.#stopped !== undefined) throw this.#stopped;
    const { signal } = options;
    const subject = `${this.#prefix}.${randomId()}`;
    const cancel = (): void => options.cancel(subject);
    const reader = new StreamReader(nodeId, this.#cluster.leaseMs, cancel, options.onPiece);
    // Subscribed before the request goes: nothing the node publishes can come before it.
    const subscription = this.#cluster.connection.nats.subscribe(subject, {
      callback: (error, message) => {
        if (error !== null) reader.fail(lostStream(nodeId, error.message));
        else reader.take(parsedJson(message.string()));
      },
    });
    this.#asked.add(reader);
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      try {
        await this.#cluster.request(nodeId, topic, request(subject));
      } catch (error) {
        // No answer: the node may have taken the request all the same, and nobody would hear its outcome.
        if (isServiceUnavailable(toBridgeError(error))) cancel();
        // This node stopped while it waited for the answer (its connection closing ends the request): that is the outcome.
        throw this.#stopped ?? error;
      }
      reader.watch();
      return await reader.outcome;
    } finally {
      signal?.removeEventListener("abort", cancel);
      subscription.unsubscribe();
      reader.close();
      this.#asked.delete(reader);
    }
  }

  /**
   * The writer of the stream another node asked for on `subject` (the subject its request names), until it ends.
   * `onCancel` runs when the asking node gives up (`cancel(subject)`) or this node stops.
   */
  open(subject: string, onCancel: () => void = () => undefined): StreamWriter {
    const nats = this.#cluster.connection.nats;
    const writer = new StreamWriter(
      (data) => nats.publish(subject, data),
      () => this.#cluster.maxPayloadBytes(),
      Math.max(1, Math.floor(this.#cluster.leaseMs / 3)),
      () => this.#served.delete(subject),
    );
    if (this.#stopped !== undefined) writer.fail(this.#stopped);
    else this.#served.set(subject, { writer, onCancel });
    return writer;
  }

  /** The asking node gave up the stream of `subject`: what feeds it stops (its writer ends it). */
  cancel(subject: string): void {
    this.#served.get(subject)?.onCancel();
  }

  /**
   * Stops both ways with `error` (this node is stopping): the streams it awaits fail with it (and are cancelled on
   * their nodes), those it publishes end with it after their feeds are told.
   */
  stop(error: BridgeError): void {
    if (this.#stopped !== undefined) return;
    this.#stopped = error;
    for (const reader of this.#asked) reader.abandon(error);
    for (const { writer, onCancel } of [...this.#served.values()]) {
      onCancel();
      writer.fail(error);
    }
  }
}

/** A stream this node asked for: read in order, until its outcome. */
class StreamReader {
  /** The stream's end, or its error. */
  readonly outcome: Promise<Record<string, unknown>>;
  #resolve!: (end: Record<string, unknown>) => void;
  #reject!: (error: BridgeError) => void;
  #settled = false;
  #next = 0;
  #watching = false;
  #silence: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly nodeId: string,
    private readonly silenceMs: number,
    private readonly cancel: () => void,
    private readonly onPiece: (kind: string, piece: string) => void,
  ) {
    this.outcome = new Promise<Record<string, unknown>>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // The outcome may come before anyone awaits it (a refusal published before the request's answer).
    this.outcome.catch(() => undefined);
  }

  /** The node took the request: from now on, a lease time without a word from it means it is gone. */
  watch(): void {
    this.#watching = true;
    this.#rewatch();
  }

  /** One message of the stream. */
  take(data: unknown): void {
    if (this.#settled) return;
    const parsed = streamMessageSchema.safeParse(data);
    if (!parsed.success) return this.fail(new BridgeError("INTERNAL", `Node ${this.nodeId} sent a stream message that is not one`));
    const message = parsed.data;
    // Core NATS delivers at most once: a message lost on the way leaves the outcome unknown.
    if (message.seq !== this.#next) return this.abandon(lostStream(this.nodeId, `message ${this.#next} of its stream never came`));
    this.#next += 1;
    this.#rewatch();
    if ("piece" in message) this.#hear(message.kind, message.piece);
    else if ("end" in message) this.#settle(() => this.#resolve(message.end));
    else if ("error" in message) this.fail(new BridgeError(message.error.type, message.error.message, message.error.details));
  }

  /** Ends the stream here with `error`. */
  fail(error: BridgeError): void {
    this.#settle(() => this.#reject(error));
  }

  /** Ends the stream here with `error`, and cancels it on its node (if that node still hears): nobody would read its outcome. */
  abandon(error: BridgeError): void {
    if (this.#settled) return;
    this.cancel();
    this.fail(error);
  }

  /** Stops watching (the stream is over for its caller). */
  close(): void {
    this.#settled = true;
    clearTimeout(this.#silence);
  }

  /** Gives the caller a piece, as the runtime's event hub does: a caller's bug must not break the node's NATS connection. */
  #hear(kind: string, piece: string): void {
    try {
      this.onPiece(kind, piece);
    } catch (error) {
      process.emitWarning(`troupe: a listener of a stream from node ${this.nodeId} threw: ${messageOf(error)}`, { code: "TROUPE_LISTENER" });
    }
  }

  #settle(settle: () => void): void {
    if (this.#settled) return;
    this.close();
    settle();
  }

  #rewatch(): void {
    if (!this.#watching || this.#settled) return;
    clearTimeout(this.#silence);
    // Dead, cut from NATS, or its answer lost: what it ran comes back on a survivor, this request unanswered.
    this.#silence = setTimeout(() => this.abandon(lostStream(this.nodeId, `nothing came from it for ${this.silenceMs} ms`)), this.silenceMs);
  }
}

/** A stream another node asked this one for: numbered, each message within what NATS carries, alive until it ends. */
export class StreamWriter {
  #seq = 0;
  #open = true;
  readonly #alive: ReturnType<typeof setInterval>;

  constructor(
    private readonly publish: (data: string) => void,
    private readonly maxPayloadBytes: () => number,
    aliveEveryMs: number,
    private readonly onClose: () => void,
  ) {
    this.#alive = setInterval(() => this.#send({ alive: true }), aliveEveryMs);
    this.#alive.unref();
  }

  /** Whether the stream still takes messages (it has not ended, and NATS took every one). */
  get open(): boolean {
    return this.#open;
  }

  /** Sends `text` as pieces of `kind`, each fitting a NATS message. */
  text(kind: string, text: string): void {
    for (const piece of textPieces(text, this.maxPayloadBytes() - MESSAGE_OVERHEAD_BYTES - kind.length)) this.#send({ kind, piece });
  }

  /** The request answered: `end` is what its answer holds besides its text; nothing goes after. */
  end(end: Record<string, unknown>): void {
    this.#send({ end });
    this.#close();
  }

  /** The request failed (or this node stops answering it); nothing goes after. */
  fail(error: BridgeError): void {
    const { retryable, sessionValid, unavailable, nodeId } = error.details;
    const fits = Buffer.byteLength(JSON.stringify(error.toJSON())) <= this.maxPayloadBytes() - MESSAGE_OVERHEAD_BYTES;
    // An error too large to travel keeps its type, its first words and whether to try again.
    const sent = fits ? error : new BridgeError(error.type, error.message.slice(0, MAX_ERROR_MESSAGE_CHARS), { retryable, sessionValid, unavailable, nodeId });
    this.#send({ error: sent.toJSON() });
    this.#close();
  }

  #send(content: StreamContent): void {
    if (!this.#open) return;
    try {
      this.publish(JSON.stringify({ seq: this.#seq, ...content }));
      this.#seq += 1;
    } catch {
      // NATS closed (the node is stopping): the asking node hears nothing more, and gives up after a lease time.
      this.#close();
    }
  }

  #close(): void {
    if (!this.#open) return;
    this.#open = false;
    clearInterval(this.#alive);
    this.onClose();
  }
}

/** The TRANSPORT error of a request that node `nodeId` cannot carry any more: it is stopping (503, ask again, another node answers). */
export function nodeStopping(nodeId: string): BridgeError {
  return new BridgeError("TRANSPORT", `Node ${nodeId} is stopping: ask again`, { nodeId, unavailable: true, retryable: true });
}

/** The TRANSPORT error of a request whose stream from node `nodeId` broke: 503, ask again (what it ran lives on). */
function lostStream(nodeId: string, why: string): BridgeError {
  return new BridgeError("TRANSPORT", `Node ${nodeId} stopped answering (${why}): ask again`, {
    nodeId,
    unavailable: true,
    retryable: true,
  });
}

function parsedJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
