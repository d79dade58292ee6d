/**
 * One troupe node of a cluster: its id, its connection to NATS with JetStream, the cluster's lease table, message
 * stream and presence bucket. A bus given `cluster` options opens one at `start()` and closes it at `stop()`
 * (`bus.cluster`); everything the cluster shares goes through it (docs/cluster.md).
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Msg } from "@nats-io/transport-node";
import type { Clock } from "../clock.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { ClusterAnswers } from "./answer-stream.js";
import { LeaseTable } from "./leases.js";
import { ClusterMessageStream, DEFAULT_MESSAGE_STREAM, DEFAULT_SUBJECT_PREFIX } from "./message-stream.js";
import { connectNats, openedPatiently, REPLICA_COUNTS, type ClusterConnection, type NatsConnectionState, type Replicas } from "./nats-connection.js";
import { PresenceTable } from "./presence.js";
import { textPieces } from "./text-pieces.js";

/** How a node joins its cluster (`cluster` of the bus's options, `--cluster` of `troupe serve`). */
export interface ClusterOptions {
  /** `nats://host:4222` (several comma-separated for a NATS cluster; credentials in the URL). */
  url: string;
  /** This node's id, unique in the cluster: letters, digits, `.`, `_`, `-`, at most 64 (default `<hostname>-<random>`). */
  nodeId?: string;
  /** How long a lease lasts without renewal (default 10 s): how long a dead node's work waits before another takes it. */
  leaseMs?: number;
  /** The JetStream stream of bus messages (default `TROUPE_MESSAGES`) and its subjects' prefix (default `troupe.messages`). */
  stream?: string;
  subjectPrefix?: string;
  /** The key-value bucket of leases (default `troupe_leases`). */
  leaseBucket?: string;
  /** The key-value bucket of presence, which node each agent is connected to (default `troupe_presence`). */
  presenceBucket?: string;
  /** How long a pulled message may stay unacknowledged before it is delivered again (default 30 s). */
  ackWaitMs?: number;
  /** What the message stream holds at most (the bus sets them from its queues' bounds): see `MessageStreamOptions.limits`. */
  queueLimits?: { perRecipientPriority: number; maxBytes: number };
  /** How long the first connection may take (default 5 s). */
  connectTimeoutMs?: number;
  /**
   * How many copies of the message stream and of the lease bucket the NATS cluster keeps: 1, 3 or 5, at most its
   * number of JetStream servers; an existing stream or bucket is brought to it. With 3, the cluster goes on when one
   * NATS server dies; with 5, two. Not given: 1 for a stream or bucket this node creates, an existing one as it is.
   */
  replicas?: Replicas;
}

/** A node's handle on its cluster. */
export interface ClusterNode {
  readonly nodeId: string;
  readonly connection: ClusterConnection;
  readonly leases: LeaseTable;
  readonly messages: ClusterMessageStream;
  /** The answers that name no workflow, told to every node and kept a while (`<stream>_ANSWERS`, a subject per sender, `<subjectPrefix>-answers.<sender>`). */
  readonly answers: ClusterAnswers;
  /** Which node each agent is connected to. */
  readonly presence: PresenceTable;
  /** How long a lease lasts without renewal. */
  readonly leaseMs: number;
  /** Whether NATS is reachable now. */
  state(): NatsConnectionState;
  /** The largest message NATS carries, in bytes (the server's `max_payload`, 1 MiB by default). */
  maxPayloadBytes(): number;
  /**
   * Answers the requests of `topic` that other nodes send to this one (`request`): the handler's result (JSON) is
   * the answer, what it throws goes back as its BridgeError. An answer larger than `maxPayloadBytes()` goes back in
   * numbered pieces that each fit, joined by the asking node. Resolves, once the server has the subscription, with
   * the function that stops answering.
   */
  serve(topic: string, handler: (body: unknown, from: string) => unknown): Promise<() => void>;
  /**
   * Asks node `nodeId` (its handler of `topic`) and resolves with its answer, whatever its size. TRANSPORT
   * (`unavailable`, `retryable`: 503) when no node of that id answers within `timeoutMs` (default 5 s): it is gone,
   * or cut from NATS; or when a piece of a large answer is lost, or the whole answer has not come within
   * `timeoutMs` of the request. The handler's error otherwise, unchanged. A request larger than `maxPayloadBytes()` is not sent: CONFIG
   * with `limitBytes` (413).
   */
  request(nodeId: string, topic: string, body: unknown, timeoutMs?: number): Promise<unknown>;
  /** Closes the connection (idempotent). */
  close(): Promise<void>;
}

const DEFAULT_LEASE_MS = 10_000;
const DEFAULT_REQUEST_MS = 5_000;
/** NATS's own default `max_payload`, for a connection that has not heard the server's yet. */
const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
const TOPIC = /^[A-Za-z0-9_-]{1,64}$/;
/** What a node id may be: it names the node in NATS subjects, leases and records. */
export const NODE_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** A node id for this process: the host's name (made safe) and 6 random hex digits. */
export function defaultNodeId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .slice(0, 48) || "node";
  return `${host}-${randomBytes(3).toString("hex")}`;
}

/** Connects this node to the cluster. CONFIG for bad options (naming the field); TRANSPORT when NATS cannot be reached. */
export async function openClusterNode(options: ClusterOptions, clock?: Pick<Clock, "now">): Promise<ClusterNode> {
  if (typeof options.url !== "string" || options.url.length === 0) throw new BridgeError("CONFIG", "cluster.url: give a nats:// URL", { field: "cluster.url" });
  const nodeId = options.nodeId ?? defaultNodeId();
  if (typeof nodeId !== "string" || !NODE_ID.test(nodeId)) {
    throw new BridgeError("CONFIG", "cluster.nodeId: letters, digits, '.', '_' and '-', 1 to 64 of them", { field: "cluster.nodeId" });
  }
  const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
  const { replicas } = options;
  if (replicas !== undefined && !(REPLICA_COUNTS as readonly unknown[]).includes(replicas)) {
    throw new BridgeError("CONFIG", `cluster.replicas: 1, 3 or 5 (copies JetStream keeps of troupe's stream and bucket), not ${JSON.stringify(replicas)}`, {
      field: "cluster.replicas",
    });
  }
  const connection = await connectNats({
    url: options.url,
    name: `troupe ${nodeId}`,
    ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
  });
  try {
    // A server outside a NATS cluster takes (and keeps) a stream's replicas setting without copying anything.
    if (replicas !== undefined && replicas > 1 && connection.nats.info?.cluster === undefined) {
      throw new BridgeError(
        "CONFIG",
        `cluster.replicas: ${replicas} copies take a NATS cluster of at least ${replicas} JetStream servers; the server of ${connection.where} is not in a cluster`,
        { field: "cluster.replicas" },
      );
    }
    // The streams (and, in `openBucket`, the buckets) are asked again should JetStream not answer in time.
    const leases = await LeaseTable.open(connection, {
      nodeId,
      leaseMs,
      ...(replicas === undefined ? {} : { replicas }),
      ...(options.leaseBucket === undefined ? {} : { bucket: options.leaseBucket }),
      ...(clock === undefined ? {} : { clock }),
    });
    const messages = await openedPatiently("the message stream", () =>
      ClusterMessageStream.open(connection, {
        ...(replicas === undefined ? {} : { replicas }),
        ...(options.stream === undefined ? {} : { stream: options.stream }),
        ...(options.subjectPrefix === undefined ? {} : { subjectPrefix: options.subjectPrefix }),
        ...(options.ackWaitMs === undefined ? {} : { ackWaitMs: options.ackWaitMs }),
        ...(options.queueLimits === undefined ? {} : { limits: options.queueLimits }),
      }),
    );
    const answers = await openedPatiently("the answers' stream", () =>
      ClusterAnswers.open(connection, {
        stream: `${options.stream ?? DEFAULT_MESSAGE_STREAM}_ANSWERS`,
        subject: `${options.subjectPrefix ?? DEFAULT_SUBJECT_PREFIX}-answers`,
        // Longer than any replay reads back.
        keepMs: Math.max(60_000, 6 * leaseMs),
        ...(replicas === undefined ? {} : { replicas }),
      }),
    );
    const presence = await PresenceTable.open(connection, {
      nodeId,
      ...(replicas === undefined ? {} : { replicas }),
      ...(options.presenceBucket === undefined ? {} : { bucket: options.presenceBucket }),
      ...(clock === undefined ? {} : { clock }),
    });
    return {
      nodeId,
      connection,
      leases,
      messages,
      answers,
      presence,
      leaseMs,
      state: () => connection.state(),
      maxPayloadBytes: () => maxPayloadOf(connection),
      serve: (topic, handler) => serveRequests(connection, nodeId, topic, handler),
      request: (to, topic, body, timeoutMs = DEFAULT_REQUEST_MS) => requestNode(connection, nodeId, to, topic, body, timeoutMs),
      close: () => {
        presence.close();
        return connection.close();
      },
    };
  } catch (error) {
    await connection.close().catch(() => undefined);
    throw error;
  }
}

/** The largest message the connection's server takes. */
function maxPayloadOf(connection: ClusterConnection): number {
  return connection.nats.info?.max_payload ?? DEFAULT_MAX_PAYLOAD_BYTES;
}

/** The subject of `topic` requests to node `nodeId` (the id in base64url: it may hold `.`, a subject's separator). */
function requestSubject(nodeId: string, topic: string): string {
  if (!TOPIC.test(topic)) throw new BridgeError("INTERNAL", `A node request topic is letters, digits, '_' and '-': ${JSON.stringify(topic)}`);
  return `troupe.nodes.${Buffer.from(nodeId, "utf8").toString("base64url")}.${topic}`;
}

type NodeAnswer = { result: unknown } | { error: ReturnType<BridgeError["toJSON"]> };

/** One of the numbered pieces of an answer too large for one NATS message: the pieces, in order, are its JSON. */
interface AnswerPiece {
  part: number;
  of: number;
  piece: string;
}

/** Room left in an answer's piece for its numbers and keys. */
const PIECE_OVERHEAD_BYTES = 128;

async function serveRequests(
  connection: ClusterConnection,
  nodeId: string,
  topic: string,
  handler: (body: unknown, from: string) => unknown,
): Promise<() => void> {
  const subscription = connection.nats.subscribe(requestSubject(nodeId, topic), {
    callback: (error, message) => {
      if (error !== null) return;
      void (async () => {
        let answer: NodeAnswer;
        try {
          const { from, body } = message.json<{ from: string; body: unknown }>();
          answer = { result: (await handler(body, from)) ?? null };
        } catch (handlerError) {
          answer = { error: toBridgeError(handlerError).toJSON() };
        }
        try {
          for (const data of answerMessages(JSON.stringify(answer), maxPayloadOf(connection))) message.respond(data);
        } catch {
          // The connection closed meanwhile: the asking node hears nothing (whole) and answers TRANSPORT, as for a node gone.
        }
      })();
    },
  });
  try {
    await connection.nats.flush();
  } catch (error) {
    subscription.unsubscribe();
    throw new BridgeError(
      "TRANSPORT",
      `${connection.where}: subscribing to ${topic} requests failed (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  return () => subscription.unsubscribe();
}

/**
 * The messages that carry an answer's JSON back: itself when it fits one NATS message of `limitBytes`, else its
 * numbered pieces. The answer the handler gave is the one the asking node gets: a change a route made is never
 * answered as an error for its size.
 */
function answerMessages(encoded: string, limitBytes: number): string[] {
  if (Buffer.byteLength(encoded) <= limitBytes) return [encoded];
  const pieces = [...textPieces(encoded, limitBytes - PIECE_OVERHEAD_BYTES)];
  return pieces.map((piece, part) => JSON.stringify({ part, of: pieces.length, piece } satisfies AnswerPiece));
}

async function requestNode(connection: ClusterConnection, from: string, to: string, topic: string, body: unknown, timeoutMs: number): Promise<unknown> {
  const request = JSON.stringify({ from, body });
  const bytes = Buffer.byteLength(request);
  const limitBytes = maxPayloadOf(connection);
  if (bytes > limitBytes) {
    throw new BridgeError("CONFIG", `A ${topic} request of ${bytes} bytes is more than NATS carries to node ${to} (max_payload ${limitBytes})`, {
      nodeId: to,
      limitBytes,
      actualBytes: bytes,
    });
  }
  if (connection.state() !== "connected") throw cutOff(from, to, topic);
  const subject = requestSubject(to, topic);
  let heard: Heard;
  try {
    // Several messages may answer (an answer in pieces): all of them within `timeoutMs` of the request.
    heard = await answerOf(await connection.nats.requestMany(subject, request, { strategy: "stall", maxWait: timeoutMs, stall: timeoutMs }));
  } catch (error) {
    // A request in flight when this node's connection broke fails: this node, not the other, is the cause.
    if (connection.state() !== "connected") throw cutOff(from, to, topic);
    throw unanswered(error, to, topic, subject, timeoutMs);
  }
  if (!("answer" in heard)) {
    if (connection.state() !== "connected") throw cutOff(from, to, topic);
    throw incomplete(heard, to, topic, subject, timeoutMs);
  }
  const { answer } = heard;
  if ("error" in answer) throw new BridgeError(answer.error.type, answer.error.message, answer.error.details);
  return answer.result;
}

/** What came back for a request: the whole answer, or how many of its pieces came before the replies stopped. */
type Heard = { answer: NodeAnswer } | { pieces: number; of: number };

/** Reads the replies to a request until its answer is whole (one message, or every piece in order). */
async function answerOf(replies: AsyncIterable<Msg>): Promise<Heard> {
  const pieces: string[] = [];
  let of = 0;
  for await (const reply of replies) {
    const message = reply.json<NodeAnswer | AnswerPiece>();
    if (!("part" in message)) return { answer: message };
    of = message.of;
    // Core NATS delivers at most once: a piece lost on the way leaves the answer unknown.
    if (message.part !== pieces.length) break;
    pieces.push(message.piece);
    if (pieces.length === of) return { answer: JSON.parse(pieces.join("")) as NodeAnswer };
  }
  return { pieces: pieces.length, of };
}

/** This node is cut from NATS: it can ask no node (503, to be asked again once it is back). */
function cutOff(from: string, to: string, topic: string): BridgeError {
  return new BridgeError("TRANSPORT", `This node (${from}) is cut off from NATS: it cannot ask node ${to} for ${topic} until NATS is back`, {
    nodeId: to,
    askingNode: from,
    unavailable: true,
    retryable: true,
  });
}

/**
 * Why node `to` gave no answer: no node of that id listens now (NATS says so at once), or something else broke the
 * request. Either is a service unavailable for now (503), to be asked again.
 */
function unanswered(error: unknown, to: string, topic: string, subject: string, timeoutMs: number): BridgeError {
  const details = { nodeId: to, subject, unavailable: true, retryable: true };
  if (isNoResponders(error)) {
    return new BridgeError(
      "TRANSPORT",
      `No node ${to} answers ${topic} now: it stopped or is cut off from NATS (ask again once another node took its work over)`,
      details,
    );
  }
  if (error instanceof Error && error.name === "TimeoutError") return notInTime(to, topic, timeoutMs, details);
  return new BridgeError("TRANSPORT", `Node ${to} could not be asked ${topic}: ${error instanceof Error ? error.message : String(error)}`, details);
}

/** NATS's answer that nobody listens on a subject: alone, or as the cause of a failed request. */
function isNoResponders(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error.name === "NoResponders" || (error.name === "RequestError" && (error as Error & { isNoResponders?: () => boolean }).isNoResponders?.() === true);
}

/**
 * The replies stopped before the answer was whole: nothing came within `timeoutMs`, a piece did not come within
 * `timeoutMs` of the one before, or one was lost. The outcome is unknown (503, ask again).
 */
function incomplete(heard: { pieces: number; of: number }, to: string, topic: string, subject: string, timeoutMs: number): BridgeError {
  const details = { nodeId: to, subject, unavailable: true, retryable: true };
  if (heard.of === 0) return notInTime(to, topic, timeoutMs, details);
  return new BridgeError("TRANSPORT", `Node ${to}'s answer to ${topic} came in part (${heard.pieces} of its ${heard.of} pieces): ask again`, details);
}

function notInTime(to: string, topic: string, timeoutMs: number, details: Record<string, unknown>): BridgeError {
  return new BridgeError("TRANSPORT", `Node ${to} did not answer ${topic} within ${timeoutMs} ms`, { ...details, timeoutMs });
}
