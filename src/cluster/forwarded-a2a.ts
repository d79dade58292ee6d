/**
 * A2A on any node of a cluster (docs/cluster.md, "A2A across nodes"). A request naming a task or a context another
 * node serves (its task's record names that node, or its context's record names a bridge session whose record
 * does) is sent to that node (`cluster.request`, topic `a2a`), which answers it with its own A2A endpoint as if it
 * had been asked itself; the answer (a JSON-RPC answer, or a stream of server-sent events) comes back on a stream of
 * its own (./node-streams.ts, as a forwarded prompt does), piece by piece, and the node asked writes it to its
 * client unchanged.
 */
import { z } from "zod";
import { a2aRecordId, contextSessionOf } from "../a2a/a2a-records.js";
import type { A2aHere, A2aRemote, AnswerPieces, ForwardedA2aRequest } from "../a2a/a2a-remote.js";
import type { RequestTarget } from "../a2a/request-target.js";
import { BridgeError, toBridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";
import type { Store } from "../store/store.js";
import type { SessionLocator } from "./forwarded-sessions.js";
import type { ClusterNode } from "./node.js";
import { NodeStreams, nodeStopping } from "./node-streams.js";

/** The node-to-node request of an A2A request, answered by the node that serves its task or context. */
const TOPIC = "a2a";
/** Where a node receives the answer of an A2A request it forwarded: `<prefix>.<random id>`. */
const STREAM_SUBJECT_PREFIX = "troupe.a2a";

/** What forwarding needs of the node's ownership (`NodeOwnership`). */
export interface A2aLocator extends SessionLocator {
  /** The node a record of `collection` names when it is another than this one (TRANSPORT when it names this one, which cannot answer for it now). */
  otherNodeOf(collection: "a2a_tasks", id: string): Promise<string | undefined>;
}

/** The A2A requests of one cluster node: those it sends to other nodes, and those it answers for them. */
export class ForwardedA2a implements A2aRemote {
  readonly #cluster: ClusterNode;
  readonly #locator: A2aLocator;
  readonly #runtime: Runtime;
  readonly #store: () => Store;
  readonly #here: A2aHere;
  readonly #streams: NodeStreams;
  /** A request that starts an answer's stream, or the asking node giving one up. */
  readonly #messageSchema;
  #stopServing: (() => void) | undefined;

  constructor(cluster: ClusterNode, locator: A2aLocator, runtime: Runtime, store: () => Store, here: A2aHere) {
    this.#cluster = cluster;
    this.#locator = locator;
    this.#runtime = runtime;
    this.#store = store;
    this.#here = here;
    this.#streams = new NodeStreams(cluster, STREAM_SUBJECT_PREFIX);
    const subject = this.#streams.subjectSchema;
    this.#messageSchema = z.union([
      z.strictObject({
        request: z.strictObject({ agentId: z.string(), body: z.unknown(), headers: z.record(z.string(), z.string()) }),
        stream: z.strictObject({ subject }),
      }),
      z.strictObject({ cancel: subject }),
    ]);
  }

  /** Answers the other nodes' A2A requests for this node's tasks and contexts. */
  async start(): Promise<void> {
    this.#stopServing = await this.#cluster.serve(TOPIC, (body, from) => this.#answer(body, from));
  }

  /**
   * Stops both ways (the bus is stopping): the requests this node forwarded end TRANSPORT (ask again), those it
   * answers for other nodes stop writing, their askers told TRANSPORT.
   */
  stop(): void {
    this.#stopServing?.();
    this.#streams.stop(nodeStopping(this.#cluster.nodeId));
  }

  /** `A2aRemote.nodeOf`: one read of the store for a task, two for a context (its record, then its session's). */
  async nodeOf(agentId: string, target: RequestTarget): Promise<string | undefined> {
    if ("taskId" in target) return this.#locator.otherNodeOf("a2a_tasks", a2aRecordId(agentId, target.taskId));
    const sessionId = await contextSessionOf(this.#store(), agentId, target.contextId);
    return sessionId === undefined ? undefined : this.#locator.sessionNodeOf(sessionId);
  }

  /** `A2aRemote.checkLease`. */
  checkLease(): void {
    this.#locator.checkLease();
  }

  /** `A2aRemote.forward`: holds one of this node's `maxConcurrentRequests` until the answer is whole. */
  async forward(nodeId: string, request: ForwardedA2aRequest, pieces: AnswerPieces, signal: AbortSignal): Promise<void> {
    const release = this.#runtime.bridge.reserve();
    try {
      await this.#streams.ask(nodeId, TOPIC, (subject) => ({ request, stream: { subject } }), {
        onPiece: pieces,
        cancel: (subject) => void this.#cluster.request(nodeId, TOPIC, { cancel: subject }).catch(() => undefined),
        signal,
      });
    } finally {
      release();
    }
  }

  /**
   * Another node's A2A request for a task or context of this node: taken at once (or refused: this node lost its
   * lease, or holds `maxConcurrentRequests` already), answered by this node's endpoint on the stream it names.
   */
  #answer(body: unknown, from: string): null {
    const parsed = this.#messageSchema.safeParse(body);
    if (!parsed.success) throw new BridgeError("INTERNAL", `Node ${from} sent an A2A request that is not one`);
    const message = parsed.data;
    if ("cancel" in message) {
      this.#streams.cancel(message.cancel);
      return null;
    }
    this.#locator.checkLease();
    const release = this.#runtime.bridge.reserve();
    const abort = new AbortController();
    const writer = this.#streams.open(message.stream.subject, () => abort.abort());
    this.#here
      .answerForwarded(message.request, (kind, text) => writer.text(kind, text), abort.signal)
      .then(
        () => writer.end({}),
        (error: unknown) => writer.fail(toBridgeError(error)),
      )
      .finally(release);
    return null;
  }
}
