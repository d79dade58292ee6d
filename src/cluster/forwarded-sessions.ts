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
import { BridgeError, sessionNotFound, toBridgeError } from "../errors.js";
import { randomId } from "../ids.js";
import type { Runtime } from "../runtime/runtime.js";
import type { ClusterNode } from "./node.js";
import { NodeStreams, nodeStopping } from "./node-streams.js";

/** The node-to-node request of a session tool, answered by the node that runs the session. */
const TOPIC = "bridge-session";
/** Where a node receives the stream of a prompt it forwarded: `<prefix>.<random id>`, one subject per prompt. */
const STREAM_SUBJECT_PREFIX = "troupe.prompts";
/** The kinds of text a prompt's stream carries: streamed text (for a caller that listens), and the answer's text. */
const DELTA = "delta";
const TEXT = "text";

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
  /** The prompts' streams: those this node awaits, and those it publishes for other nodes. */
  readonly #streams: NodeStreams;
  /** A session tool call as it travels to the session's node; a prompt's names the subject of its stream. */
  readonly #callSchema: z.ZodType<ForwardedCall>;
  #stopServing: (() => void) | undefined;
  #stopForwarding: (() => void) | undefined;
  #stopped = false;

  constructor(cluster: ClusterNode, locator: SessionLocator, runtime: Runtime) {
    this.#cluster = cluster;
    this.#locator = locator;
    this.#runtime = runtime;
    this.#streams = new NodeStreams(cluster, STREAM_SUBJECT_PREFIX);
    this.#callSchema = z.strictObject({
      tool: z.enum(SESSION_TOOLS),
      args: z.looseObject({ sessionId: z.string() }),
      stream: z.strictObject({ subject: this.#streams.subjectSchema, deltas: z.boolean() }).optional(),
    });
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
    this.#streams.stop(nodeStopping(this.#cluster.nodeId));
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
    let text = "";
    const end = await this.#streams.ask(
      nodeId,
      TOPIC,
      (subject) => ({ tool: "sessions_prompt", args: { ...args, requestId }, stream: { subject, deltas: onDelta !== undefined } }) satisfies ForwardedCall,
      {
        onPiece: (kind, piece) => {
          if (kind === TEXT) text += piece;
          else if (kind === DELTA) onDelta?.(piece);
        },
        cancel: () =>
          void this.#cluster.request(nodeId, TOPIC, { tool: "sessions_cancel", args: { sessionId, requestId } } satisfies ForwardedCall).catch(() => undefined),
        ...(signal === undefined ? {} : { signal }),
      },
    );
    return { ...(end as Omit<PromptResult, "text">), text };
  }

  /**
   * Another node's call for a session of this node: answered by this node's bridge (never sent on). A prompt is
   * answered once it is taken (or refused: NOT_FOUND for a session not here), its outcome going to its stream.
   */
  async #answer(body: unknown, from: string): Promise<unknown> {
    const parsed = this.#callSchema.safeParse(body);
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
    const served = this.#streams.open(stream.subject);
    // What the agent streams goes in one message per turn of the event loop, not one per word.
    const deltas = stream.deltas
      ? new DeltaStream({
          send: (delta) => {
            served.text(DELTA, delta);
            return "";
          },
          hasRoom: () => true,
          isWaiting: () => false,
        })
      : undefined;
    this.#runtime.bridge.callHere("sessions_prompt", args, deltas === undefined ? {} : { onDelta: (delta) => deltas.push(delta) }).then(
      ({ text, ...rest }) => {
        deltas?.end();
        served.text(TEXT, text);
        served.end(rest);
      },
      (error: unknown) => {
        deltas?.end();
        served.fail(toBridgeError(error));
      },
    );
  }
}

/** A session tool call as it travels to the session's node; a prompt's names the subject of its stream. */
interface ForwardedCall {
  tool: SessionToolName;
  args: SessionToolArguments;
  stream?: { subject: string; deltas: boolean } | undefined;
}
