/**
 * The A2A endpoint of a cluster node and the cluster, as each sees the other (docs/cluster.md, "A2A across nodes"):
 * the endpoint asks where a task or context is and sends a request there (`A2aRemote`, src/cluster/forwarded-a2a.ts);
 * the cluster has the endpoint answer what other nodes sent (`A2aHere`). Types only: no SDK, no NATS.
 */
import type { RequestTarget } from "./request-target.js";

/** An A2A request as it travels to the node that serves its task or context: what that node's route would read of it. */
export interface ForwardedA2aRequest {
  /** The agent as the request's URL names it (`writer`, `troupe://writer`, `claude-code://qa`). */
  agentId: string;
  /** The JSON-RPC request. */
  body: unknown;
  /** The headers the SDK reads (protocol version, extensions) and `host` (the cards' URLs), lower-case. */
  headers: Record<string, string>;
}

/** The kinds of text a forwarded request's answer comes back in: first its head (`{ status, headers }` as JSON), then its body. */
export const ANSWER_HEAD = "head";
export const ANSWER_BODY = "body";

/** Receives the pieces of an answer, in order: `kind` is `ANSWER_HEAD` or `ANSWER_BODY`. */
export type AnswerPieces = (kind: string, text: string) => void;

/** The cluster, as the A2A endpoint of one of its nodes sees it. */
export interface A2aRemote {
  /**
   * The node that serves agent `agentId`'s task or context `target` when its record names another node than this
   * one; `undefined` when it is answered here (no record names another node). TRANSPORT (`unavailable`, 503) when
   * it names this node, which cannot answer for it now (its lease lost, or what it takes over not yet restored).
   */
  nodeOf(agentId: string, target: RequestTarget): Promise<string | undefined>;
  /** Throws TRANSPORT (`unavailable`, 503) while this node does not hold its lease: it answers for no task then. */
  checkLease(): void;
  /**
   * Sends `request` to node `nodeId`, which answers it as its own route would; its answer comes to `pieces`, and
   * the promise resolves once it is whole. TRANSPORT (`unavailable`, 503) when that node does not answer or stops
   * answering; CAPACITY (429) past `maxConcurrentRequests`; that node's refusal otherwise. Aborting `signal` (the
   * client went away) tells that node to stop writing: the task itself runs on.
   */
  forward(nodeId: string, request: ForwardedA2aRequest, pieces: AnswerPieces, signal: AbortSignal): Promise<void>;
}

/** The A2A endpoint, as the cluster sees it. */
export interface A2aHere {
  /**
   * Answers a request another node forwarded, as this node's route answers its own (never sent on: one hop), its
   * answer given to `pieces`; resolves once it is whole. Aborting `signal` stops a stream (the asking node's client
   * went away, or a node stops).
   */
  answerForwarded(request: ForwardedA2aRequest, pieces: AnswerPieces, signal: AbortSignal): Promise<void>;
}
