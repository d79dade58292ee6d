/**
 * The WebSocket protocol between the bus and its agents: the path, the key, the frames and the close codes.
 *
 * The bus sends each message as its envelope (a JSON text frame with `message_type`); the agent answers
 * `{ type: "ack", message_id }`. An agent sends envelopes back over the same socket; the bus answers each
 * with `{ type: "accepted", message_id, status }` or `{ type: "rejected", message_id?, error }` when the
 * socket asked for these control frames with `?control=1` (the seed project's adapters do not expect them).
 */
import type { RawData } from "ws";
import type { BridgeError } from "../errors.js";

/** Where agents connect: `ws://host:port/agents/connect?agent_id=…`. */
export const AGENT_CONNECT_PATH = "/agents/connect";
/** Where agents register (HTTP `POST`): what `connectAgent` calls when the bus does not know its agent. */
export const AGENT_REGISTER_PATH = "/agents/register";
/** The seed project's adapters connect at the root: `ws://host:port/?agent_id=…` (SPEC §3.9). */
export const ROOT_CONNECT_PATH = "/";
/** The query parameter by which a socket asks for the bus's control frames (`?control=1`). */
export const CONTROL_PARAM = "control";
/** Browsers cannot set headers: they offer the key as the subprotocol `key.<key>`. */
export const KEY_PROTOCOL_PREFIX = "key.";
/**
 * The subprotocol the bus answers with when it is offered. The key's subprotocol is never echoed (a response
 * header is no place for a secret); a client that needs a subprotocol back (Node's `ws`) offers this one too.
 */
export const TROUPE_PROTOCOL = "troupe";
/** Browsers offer an agent's token as the subprotocol `token.<token>` (never echoed either). */
export const TOKEN_PROTOCOL_PREFIX = "token.";

/** Close codes the bus uses. */
export const CLOSE_CODES = {
  /** The agent closed, or the client's `close()`. */
  normal: 1000,
  /** The bus is stopping. */
  goingAway: 1001,
  /** The agent is not registered (nor a participant of a session), or was deregistered. */
  policy: 1008,
  /** The agent does not read its socket: an answer to its frames would pass `maxSocketBufferBytes`. */
  tryAgainLater: 1013,
  /** A newer connection of the same agent took over. */
  replaced: 4000,
} as const;

/**
 * The reasons that come with `CLOSE_CODES.policy`: a client tells "the bus does not know me" (register, then
 * connect again) from "I was deregistered" (stop) by them.
 */
export const CLOSE_REASONS = {
  /** Followed by `: <agent_id>`. */
  notRegistered: "Agent not registered",
  deregistered: "Agent deregistered",
  /** Followed by `: <agent_id>`: one of the runtime's own agents (or its framework, `troupe://`), which answer in-process. */
  runtimeAgent: "A runtime agent (troupe://) answers in-process and cannot connect as a remote agent",
} as const;

/** The agent's acknowledgement of one message. */
export interface AckFrame {
  type: "ack";
  message_id: string;
}

/** The bus's answer to an envelope an agent sent. */
export type SendAnswerFrame =
  { type: "accepted"; message_id: string; status: string } | { type: "rejected"; message_id?: string; error: ReturnType<BridgeError["toJSON"]> };

/**
 * The JSON of an answer frame, as `JSON.stringify` writes it. The bus answers every envelope a socket sends: the
 * common answer, `accepted`, is written from a template rather than an object serialized key by key.
 */
export function encodeAnswerFrame(frame: SendAnswerFrame): string {
  if (frame.type !== "accepted") return JSON.stringify(frame);
  return `{"type":"accepted","message_id":${JSON.stringify(frame.message_id)},"status":${JSON.stringify(frame.status)}}`;
}

/** Whether a parsed frame is an ack. */
export function isAckFrame(frame: unknown): frame is AckFrame {
  return (
    typeof frame === "object" &&
    frame !== null &&
    (frame as { type?: unknown }).type === "ack" &&
    typeof (frame as { message_id?: unknown }).message_id === "string"
  );
}

/** A frame's text, whichever form `ws` hands it in (a Buffer by default; an ArrayBuffer or fragments with other binaryTypes). */
export function frameText(data: RawData): string {
  if (Buffer.isBuffer(data)) return data.toString("utf8");
  return (Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString("utf8");
}
