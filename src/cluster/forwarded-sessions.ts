/**
 * The bridge-session tools on any node of a cluster (docs/cluster.md, "Bridge sessions on any node"). A node asked
 * about a session it does not run reads the session's record in the shared store and sends the call to the node
 * the record names (`cluster.request`, topic `bridge-session`), which answers it with its own bridge as if it had
 * been asked itself: its result, or its BridgeError, is the answer.
 *
 * `sessions_status`, `sessions_cancel` and `sessions_close` are one node request each. A prompt may outlive any
 * request and may stream, so its request only starts it: the session's node answers at once (it took the prompt,
 * or its refusal), then publishes the prompt's stream to a subject the asking node subscribed to, every message
 * numbered: the streamed text (when the caller listens to it), a sign of life every third of a lease time, then
 * the answer's text in pieces that fit a NATS message and the outcome. The asking node gives up with TRANSPORT
 * (`unavailable`: 503, ask again) after a lease time without a word or at a number missing, and cancels the
 * prompt on the session's node when its caller aborts.
 */
import { z } from "zod";
import { DeltaStream } from "../bus/delta-stream.js";
import { SESSION_TOOLS, type CallOptions, type RemoteSessions, type SessionToolArguments, type SessionToolName } from "../bridge/bridge.js";
import type { PromptResult } from "../bridge/schemas.js";
import { BRIDGE_ERROR_TYPES, BridgeError, messageOf, sessionNotFound, toBridgeError } from "../errors.js";
import { randomId } from "../ids.js";
import type { Runtime } from "../runtime/runtime.js";
import type { ClusterNode } from "./node.js";

/** The node-to-node request of a session tool, answered by the node that runs the session. */
const TOPIC = "bridge-session";
/** Where a node receives the stream of a prompt it forwarded: `<prefix>.<random id>`, one subject per prompt. */
const STREAM_SUBJECT_PREFIX = "troupe.prompts";
/** Room left in a stream message for its number and keys around a piece of text. */
const MESSAGE_OVERHEAD_BYTES = 128;
/** The most bytes one character of a JSON string takes (a control character as `\u001f`). */
const MAX_BYTES_PER_CHAR = 6;
/** The longest error message a stream carries (a longer one is cut). */
const MAX_ERROR_MESSAGE_CHARS = 4_096;

/** A session tool call as it travels to the session's node; a prompt's names the subject of its stream. */
const forwardedCallSchema = z.strictObject({
  tool: z.enum(SESSION_TOOLS),
  args: z.looseObject({ sessionId: z.string() }),
  stream: z.strictObject({ subject: z.string().startsWith(`${STREAM_SUBJECT_PREFIX}.`), deltas: z.boolean() }).optional(),
});

/** A forwarded call (see `forwardedCallSchema`). */
type ForwardedCall = z.infer<typeof forwardedCallSchema>;

const seq = z.number().int().nonnegative();

/** One message of a prompt's stream, numbered from 0 by `seq`. */
const streamMessageSchema = z.union([
  z.strictObject({ seq, alive: z.literal(true) }),
  /** Streamed text, for a caller that listens to it (`onDelta`). */
  z.strictObject({ seq, delta: z.string() }),
  /** A piece of the answer's text: the pieces, in order, are the text. */
  z.strictObject({ seq, text: z.string() }),
  /** The prompt answered: the rest of its result. */
  z.strictObject({ seq, end: z.looseObject({ stopReason: z.string(), requestId: z.string() }) }),
  z.strictObject({ seq, error: z.strictObject({ type: z.enum(BRIDGE_ERROR_TYPES), message: z.string(), details: z.record(z.string(), z.unknown()) }) }),
]);

/** What a stream message carries besides its number. */
type StreamContent =
  { alive: true } | { delta: string } | { text: string } | { end: Omit<PromptResult, "text"> } | { error: ReturnType<BridgeError["toJSON"]> };

/** What forwarding needs of the node's ownership (`NodeOwnership`). */
export interface SessionLocator {
  /** The node whose record names bridge session `sessionId` when it is another than this one (TRANSPORT when this node lost its lease). */
  sessionNodeOf(sessionId: string): Promise<string | undefined>;
  /** Throws TRANSPORT (`unavailable`) while this node does not hold its lease: it answers for no session then. */
  checkLease(): void;
}

/** The session tools of one cluster node: those it sends to other nodes, and those it answers for them. */
export class ForwardedSessions implements RemoteSessions {
  readonly #cluster: ClusterNode;
  readonly #locator: SessionLocator;
  readonly #runtime: Runtime;
  /** Prompts this node forwarded, whose stream it awaits. */
  readonly #asked = new Set<AskedPrompt>();
  /** Prompts other nodes forwarded here, whose stream this node publishes. */
  readonly #served = new Set<ServedPrompt>();
  #stopServing: (() => void) | undefined;
  #stopForwarding: (() => void) | undefined;
  #stopped = false;

  constructor(cluster: ClusterNode, locator: SessionLocator, runtime: Runtime) {
    this.#cluster = cluster;
    this.#locator = locator;
    this.#runtime = runtime;
  }

  /** Answers the other nodes' calls for this node's sessions, and sends its bridge's calls for theirs to them. */
  async start(): Promise<void> {
    this.#stopServing = await this.#cluster.serve(TOPIC, (body, from) => this.#answer(body, from));
    this.#stopForwarding = this.#runtime.bridge.forwardSessions(this);
  }

  /**
   * Stops both ways (the bus is stopping): the prompts this node forwarded fail TRANSPORT (ask again) and are
   * cancelled on their nodes; those it runs for other nodes stop streaming, their askers told TRANSPORT.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#stopForwarding?.();
    this.#stopServing?.();
    const stopping = nodeStopping(this.#cluster.nodeId);
    for (const asked of this.#asked) asked.abandon(stopping);
    for (const served of this.#served) served.fail(stopping);
  }

  /** `RemoteSessions.call`: the session's node, found from its record, answers; `undefined` when the session is answered here. */
  async call(toolName: SessionToolName, args: SessionToolArguments, options: CallOptions): Promise<{ result: unknown } | undefined> {
    const nodeId = await this.#locator.sessionNodeOf(args.sessionId);
    if (nodeId === undefined) return undefined;
    if (toolName === "sessions_prompt") return { result: await this.#prompt(nodeId, args, options) };
    return { result: await this.#cluster.request(nodeId, TOPIC, { tool: toolName, args } satisfies ForwardedCall) };
  }

  /** Sends a prompt to node `nodeId` and follows its stream until its outcome. */
  async #prompt(nodeId: string, args: SessionToolArguments, { signal, onDelta }: CallOptions): Promise<PromptResult> {
    const { sessionId } = args;
    if (signal?.aborted) throw new BridgeError("CANCELLED", "Prompt cancelled by the caller", { sessionId });
    if (this.#stopped) throw nodeStopping(this.#cluster.nodeId);
    // Named here, so that an abort can cancel exactly this prompt there.
    const requestId = typeof args.requestId === "string" ? args.requestId : randomId();
    const cancel = (): void =>
      void this.#cluster.request(nodeId, TOPIC, { tool: "sessions_cancel", args: { sessionId, requestId } } satisfies ForwardedCall).catch(() => undefined);
    const subject = `${STREAM_SUBJECT_PREFIX}.${randomId()}`;
    const asked = new AskedPrompt(nodeId, this.#cluster.leaseMs, cancel, onDelta);
    // Subscribed before the request goes: nothing the node publishes can come before it.
    const subscription = this.#cluster.connection.nats.subscribe(subject, {
      callback: (error, message) => {
        if (error !== null) asked.fail(lostStream(nodeId, error.message));
        else asked.take(parsedJson(message.string()));
      },
    });
    this.#asked.add(asked);
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      const call: ForwardedCall = { tool: "sessions_prompt", args: { ...args, requestId }, stream: { subject, deltas: onDelta !== undefined } };
      try {
        await this.#cluster.request(nodeId, TOPIC, call);
      } catch (error) {
        // No answer: the node may have taken the prompt all the same, and nobody would hear its outcome.
        if (toBridgeError(error).details.unavailable === true) cancel();
        throw error;
      }
      asked.watch();
      return await asked.outcome;
    } finally {
      signal?.removeEventListener("abort", cancel);
      subscription.unsubscribe();
      asked.close();
      this.#asked.delete(asked);
    }
  }

  /**
   * Another node's call for a session of this node: answered by this node's bridge (never sent on). A prompt is
   * answered once it is taken (or refused: NOT_FOUND for a session not here), its outcome going to its stream.
   */
  async #answer(body: unknown, from: string): Promise<unknown> {
    const parsed = forwardedCallSchema.safeParse(body);
    if (!parsed.success) throw new BridgeError("INTERNAL", `Node ${from} sent a session tool call that is not one`);
    this.#locator.checkLease();
    const { tool, args, stream } = parsed.data;
    if (tool !== "sessions_prompt") return this.#runtime.bridge.callHere(tool, args);
    if (stream === undefined) throw new BridgeError("INTERNAL", `Node ${from} forwarded a prompt without its stream`);
    if (this.#stopped) throw nodeStopping(this.#cluster.nodeId);
    if (!this.#runtime.hasSession(args.sessionId)) throw sessionNotFound(args.sessionId);
    this.#serve(args, stream);
    return null;
  }

  /** Runs a forwarded prompt here, its stream published to the subject its node named. */
  #serve(args: SessionToolArguments, stream: NonNullable<ForwardedCall["stream"]>): void {
    const nats = this.#cluster.connection.nats;
    const served = new ServedPrompt(
      (data) => nats.publish(stream.subject, data),
      () => this.#cluster.maxPayloadBytes(),
      Math.max(1, Math.floor(this.#cluster.leaseMs / 3)),
    );
    this.#served.add(served);
    // What the agent streams goes in one message per turn of the event loop, not one per word.
    const deltas = stream.deltas
      ? new DeltaStream({
          send: (delta) => {
            served.text("delta", delta);
            return "";
          },
          hasRoom: () => true,
          isWaiting: () => false,
        })
      : undefined;
    this.#runtime.bridge
      .callHere("sessions_prompt", args, deltas === undefined ? {} : { onDelta: (delta) => deltas.push(delta) })
      .then(
        (result) => {
          deltas?.end();
          served.end(result);
        },
        (error: unknown) => {
          deltas?.end();
          served.fail(toBridgeError(error));
        },
      )
      .finally(() => this.#served.delete(served));
  }
}

/** A prompt this node forwarded: its stream, read in order, and its outcome. */
class AskedPrompt {
  /** The prompt's result, or its error. */
  readonly outcome: Promise<PromptResult>;
  #resolve!: (result: PromptResult) => void;
  #reject!: (error: BridgeError) => void;
  #settled = false;
  #next = 0;
  #text = "";
  #watching = false;
  #silence: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly nodeId: string,
    private readonly silenceMs: number,
    private readonly cancel: () => void,
    private readonly onDelta: ((delta: string) => void) | undefined,
  ) {
    this.outcome = new Promise<PromptResult>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // The outcome may come before anyone awaits it (a refusal published before the request's answer).
    this.outcome.catch(() => undefined);
  }

  /** The node took the prompt: from now on, a lease time without a word from it means it is gone. */
  watch(): void {
    this.#watching = true;
    this.#rewatch();
  }

  /** One message of the stream. */
  take(data: unknown): void {
    if (this.#settled) return;
    const parsed = streamMessageSchema.safeParse(data);
    if (!parsed.success) return this.fail(new BridgeError("INTERNAL", `Node ${this.nodeId} sent a prompt stream message that is not one`));
    const message = parsed.data;
    // Core NATS delivers at most once: a message lost on the way leaves the outcome unknown.
    if (message.seq !== this.#next) return this.abandon(lostStream(this.nodeId, `message ${this.#next} of the prompt's stream never came`));
    this.#next += 1;
    this.#rewatch();
    if ("delta" in message) this.#hear(message.delta);
    else if ("text" in message) this.#text += message.text;
    else if ("end" in message) this.#settle(() => this.#resolve({ text: this.#text, ...(message.end as Omit<PromptResult, "text">) }));
    else if ("error" in message) this.fail(new BridgeError(message.error.type, message.error.message, message.error.details));
  }

  /** Ends the prompt here with `error`. */
  fail(error: BridgeError): void {
    this.#settle(() => this.#reject(error));
  }

  /** Ends the prompt here with `error`, and cancels it on its node (if that node still hears): nobody would read its outcome. */
  abandon(error: BridgeError): void {
    if (this.#settled) return;
    this.cancel();
    this.fail(error);
  }

  /** Stops watching (the prompt is over for its caller). */
  close(): void {
    this.#settled = true;
    clearTimeout(this.#silence);
  }

  /** Gives the caller a delta, as the runtime's event hub does: a caller's bug must not break the node's NATS connection. */
  #hear(delta: string): void {
    try {
      this.onDelta?.(delta);
    } catch (error) {
      process.emitWarning(`troupe: a forwarded prompt's onDelta threw: ${messageOf(error)}`, { code: "TROUPE_LISTENER" });
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
    // Dead, cut from NATS, or its answer lost: its session comes back on a survivor, this prompt unanswered.
    this.#silence = setTimeout(() => this.abandon(lostStream(this.nodeId, `nothing came from it for ${this.silenceMs} ms`)), this.silenceMs);
  }
}

/** A prompt another node forwarded here: its stream, numbered, each message within what NATS carries. */
class ServedPrompt {
  #seq = 0;
  #open = true;
  readonly #alive: ReturnType<typeof setInterval>;

  constructor(
    private readonly publish: (data: string) => void,
    private readonly maxPayloadBytes: () => number,
    aliveEveryMs: number,
  ) {
    this.#alive = setInterval(() => this.#send({ alive: true }), aliveEveryMs);
    this.#alive.unref();
  }

  /** Sends `text` as `kind` messages, in pieces that each fit a NATS message. */
  text(kind: "delta" | "text", text: string): void {
    const pieceChars = Math.max(2, Math.floor((this.maxPayloadBytes() - MESSAGE_OVERHEAD_BYTES) / MAX_BYTES_PER_CHAR));
    for (let start = 0; start < text.length;) {
      let end = Math.min(text.length, start + pieceChars);
      // A character outside the BMP stays whole (its two UTF-16 units in one piece).
      if (end < text.length && isHighSurrogate(text.charCodeAt(end - 1))) end -= 1;
      const piece = text.slice(start, end);
      this.#send(kind === "delta" ? { delta: piece } : { text: piece });
      start = end;
    }
  }

  /** The prompt answered: its text, then the rest of its result; nothing goes after. */
  end({ text, ...rest }: PromptResult): void {
    this.text("text", text);
    this.#send({ end: rest });
    this.#close();
  }

  /** The prompt failed (or this node stops streaming it); nothing goes after. */
  fail(error: BridgeError): void {
    const { retryable, sessionValid } = error.details;
    const fits = Buffer.byteLength(JSON.stringify(error.toJSON())) <= this.maxPayloadBytes() - MESSAGE_OVERHEAD_BYTES;
    // An error too large to travel keeps its type, its first words and whether to try again.
    const sent = fits ? error : new BridgeError(error.type, error.message.slice(0, MAX_ERROR_MESSAGE_CHARS), { retryable, sessionValid });
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
    this.#open = false;
    clearInterval(this.#alive);
  }
}

/** The TRANSPORT error of a call that node `nodeId` cannot carry any more: it is stopping (503, ask again, another node answers). */
function nodeStopping(nodeId: string): BridgeError {
  return new BridgeError("TRANSPORT", `Node ${nodeId} is stopping: ask again`, { nodeId, unavailable: true, retryable: true });
}

/** The TRANSPORT error of a prompt whose stream from node `nodeId` broke: 503, ask again (the session lives on). */
function lostStream(nodeId: string, why: string): BridgeError {
  return new BridgeError("TRANSPORT", `The prompt's node ${nodeId} stopped answering (${why}): ask again`, {
    nodeId,
    unavailable: true,
    retryable: true,
  });
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}

function parsedJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
