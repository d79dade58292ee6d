/**
 * `connectAgent`: a small agent for Node on the bus's WebSocket. It acknowledges every message, hands each
 * `message_id` to `onMessage` once (the bus delivers at least once), sends envelopes with their defaults
 * filled in, and reconnects with exponential backoff when the connection drops. When the bus does not know
 * the agent (a bus that lost its registrations), it registers itself again if it was given its descriptor,
 * and otherwise says so on `onError` and keeps trying: it never gives up silently.
 */
import { randomUUID } from "node:crypto";
import type WebSocket from "ws";
import { BridgeError, isBridgeErrorType } from "../errors.js";
import { AGENT_TOKEN_HEADER, API_KEY_HEADER } from "../protocol/headers.js";
import { frameworkOf, messageKeyOf, type EnvelopeInput, type MessageEnvelope, type MessageType, type Priority } from "../protocol/envelope.js";
import {
  AGENT_CONNECT_PATH,
  AGENT_REGISTER_PATH,
  CLOSE_CODES,
  CLOSE_REASONS,
  CONTROL_PARAM,
  frameText,
  type AckFrame,
  type SendAnswerFrame,
} from "../protocol/frames.js";
import { RecentIds } from "../protocol/recent-ids.js";
import { wsPackage } from "../protocol/ws-package.js";

/** Reconnection delays: `initialDelayMs`, multiplied by `factor` after each failed try, at most `maxDelayMs`. */
export interface ReconnectOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
}

/** What `onMessage` gets besides the envelope. */
export interface MessageContext {
  /**
   * Answers the message: by default a `task_response` to its sender, with `metadata.in_reply_to` (and the
   * request's `task_id` and `session_id`) filled in.
   */
  reply: (payload: Record<string, unknown>, options?: ReplyOptions) => Promise<SendAnswer>;
}

/** Options of `reply`. */
export interface ReplyOptions {
  message_type?: MessageType;
  priority?: Priority;
  metadata?: Record<string, unknown>;
}

/** A message as `send` takes it: `message_id`, `timestamp` and `sender` are filled in when omitted. */
export type OutgoingMessage = Omit<EnvelopeInput, "message_id" | "timestamp" | "sender" | "recipient"> & {
  message_id?: string;
  timestamp?: string;
  /** An agent id, or `{ agent_id, framework }`. */
  recipient: string | { agent_id: string; framework: string };
  /** Names the workflow session the message belongs to (`sender.session_id`). */
  session_id?: string;
};

/** The bus's answer to a sent message. */
export interface SendAnswer {
  message_id: string;
  status: string;
}

/**
 * What `connectAgent` registers the agent with when the bus does not know it: the descriptor of
 * `POST /agents/register`, without `agent_id` (the agent's own) and `agent_token` (its `token`, when it has one).
 */
export interface AgentRegistration {
  framework?: string;
  capabilities?: Array<string | ({ name: string } & Record<string, unknown>)>;
  metadata?: Record<string, unknown>;
  endpoints?: Record<string, unknown> | unknown[];
}

/** Options of `connectAgent`. */
export interface ConnectAgentOptions {
  /** The bus: `http://host:port`, `ws://host:port`, or the full `ws://host:port/agents/connect` URL. */
  url: string;
  /** This agent's id (`framework://name`); it must be registered or take part in a workflow session. */
  agentId: string;
  /** The bus's key, sent as the `x-agent-api-key` header. */
  apiKey?: string;
  /** This agent's own token (the `agent_token` its registration answered), sent as `x-agent-token`: needed with `agentAuth: "token"`. */
  token?: string;
  /**
   * Registers the agent (`POST /agents/register`, with `token` as its `agent_token`) whenever the bus closes
   * its socket because it does not know it: at the first connection, or after a restart of a bus that lost
   * its registrations. The token the bus answers is used from then on. Without it, such a refusal is reported
   * to `onError` (NOT_FOUND) and the connection is tried again with backoff, until someone registers the agent.
   */
  register?: AgentRegistration;
  /** Called once per `message_id`, after the message is acknowledged. */
  onMessage: (envelope: MessageEnvelope, context: MessageContext) => void | Promise<void>;
  /** Errors that have no caller to go to: a failing `onMessage`, a refused connection, a frame the bus rejected. */
  onError?(error: BridgeError): void;
  /** Reconnection backoff; `false` never reconnects. Default 100 ms doubling up to 10 s. */
  reconnect?: ReconnectOptions | false;
  /** How many recent `message_id`s are remembered to drop redeliveries. Default 10,000. */
  dedupeWindow?: number;
}

/** A connected agent. */
export interface AgentClient {
  readonly agentId: string;
  /** Whether the socket is open now. */
  readonly connected: boolean;
  /** Resolves when the socket is open; a refused connection rejects it. */
  ready(): Promise<void>;
  /** Sends an envelope over the socket; resolves with the bus's answer, rejects with its error. */
  send(message: OutgoingMessage): Promise<SendAnswer>;
  /** Closes the socket for good (no reconnection). */
  close(): Promise<void>;
}

function connectUrlOf(url: string, agentId: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (parsed.pathname === "/" || parsed.pathname === "") parsed.pathname = AGENT_CONNECT_PATH;
  parsed.searchParams.set("agent_id", agentId);
  // `send` waits for the bus's accepted / rejected frames, which it writes only to sockets that ask.
  parsed.searchParams.set(CONTROL_PARAM, "1");
  return parsed.toString();
}

function errorOf(frame: Extract<SendAnswerFrame, { type: "rejected" }>): BridgeError {
  const { type, message, details } = frame.error;
  return new BridgeError(isBridgeErrorType(type) ? type : "INTERNAL", message, details);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Where the bus takes registrations: `POST /agents/register` on its HTTP side. */
function registerUrlOf(url: string): string {
  const parsed = new URL(url);
  if (parsed.protocol === "ws:") parsed.protocol = "http:";
  if (parsed.protocol === "wss:") parsed.protocol = "https:";
  parsed.pathname = AGENT_REGISTER_PATH;
  parsed.search = "";
  return parsed.toString();
}

/** The bus's error answer to a request, as a `BridgeError` (a body that is not one says what the status was). */
function errorOfResponse(status: number, body: unknown): BridgeError {
  const error = isRecord(body) && isRecord(body["error"]) ? body["error"] : undefined;
  const type = typeof error?.["type"] === "string" && isBridgeErrorType(error["type"]) ? error["type"] : status >= 500 ? "UPSTREAM" : "CONFIG";
  const message = typeof error?.["message"] === "string" ? error["message"] : `HTTP ${status}`;
  return new BridgeError(type, message, isRecord(error?.["details"]) ? error["details"] : {});
}

/** What a frame from the bus is: a message, the answer to a sent envelope, or something this client cannot read. */
type IncomingFrame = { kind: "message"; envelope: MessageEnvelope } | { kind: "answer"; answer: SendAnswerFrame } | { kind: "unreadable" };

/** Sorts a parsed frame; only its shape is checked (the bus validated the envelope it sends). */
function classify(frame: unknown): IncomingFrame {
  if (!isRecord(frame) || (frame["message_id"] !== undefined && typeof frame["message_id"] !== "string")) return { kind: "unreadable" };
  if (typeof frame["message_type"] === "string" && typeof frame["message_id"] === "string")
    return { kind: "message", envelope: frame as unknown as MessageEnvelope };
  if (frame["type"] === "accepted" && typeof frame["message_id"] === "string") return { kind: "answer", answer: frame as unknown as SendAnswerFrame };
  if (frame["type"] === "rejected" && isRecord(frame["error"])) return { kind: "answer", answer: frame as unknown as SendAnswerFrame };
  return { kind: "unreadable" };
}

/** Connects an agent to the bus. The socket opens in the background; await `ready()` to know it is open. */
export function connectAgent(options: ConnectAgentOptions): AgentClient {
  const WebSocketClient = wsPackage();
  const { agentId, apiKey, onMessage } = options;
  /** The token the socket presents: the one given, then the one a registration of this client answered. */
  let token = options.token;
  const reconnect = options.reconnect === false ? undefined : { initialDelayMs: 100, maxDelayMs: 10_000, factor: 2, ...options.reconnect };
  const reportError = (error: BridgeError): void => options.onError?.(error);
  const seen = new RecentIds(options.dedupeWindow ?? 10_000);
  const pending = new Map<string, { resolve(answer: SendAnswer): void; reject(error: BridgeError): void }>();
  const target = connectUrlOf(options.url, agentId);
  const framework = frameworkOf(agentId);
  let socket: WebSocket | undefined;
  let closed = false;
  let failedTries = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** A registration is under way: the socket it replaces decides nothing when it closes. */
  let registering = false;
  let readyWaiters: Array<{ resolve(): void; reject(error: BridgeError): void }> = [];

  const settleReady = (error?: BridgeError): void => {
    for (const waiter of readyWaiters.splice(0)) {
      if (error === undefined) waiter.resolve();
      else waiter.reject(error);
    }
  };

  const giveUp = (error: BridgeError): void => {
    closed = true;
    reportError(error);
    settleReady(error);
  };

  const transmit = (frame: AckFrame | MessageEnvelope): void => {
    if (socket?.readyState === WebSocketClient.OPEN) socket.send(JSON.stringify(frame));
  };

  const send = (message: OutgoingMessage): Promise<SendAnswer> => {
    const { session_id, recipient, ...rest } = message;
    const envelope = {
      ...rest,
      message_id: message.message_id ?? randomUUID(),
      timestamp: message.timestamp ?? new Date().toISOString(),
      sender: { agent_id: agentId, framework, ...(session_id === undefined ? {} : { session_id }) },
      recipient: typeof recipient === "string" ? { agent_id: recipient, framework: frameworkOf(recipient) } : recipient,
    } as MessageEnvelope;
    if (socket?.readyState !== WebSocketClient.OPEN) {
      return Promise.reject(new BridgeError("TRANSPORT", `${agentId} is not connected to the bus`));
    }
    return new Promise<SendAnswer>((resolve, reject) => {
      pending.set(envelope.message_id, { resolve, reject });
      transmit(envelope);
    });
  };

  const contextOf = (envelope: MessageEnvelope): MessageContext => ({
    reply: (payload, replyOptions = {}) => {
      const taskId = envelope.metadata?.["task_id"];
      return send({
        recipient: { agent_id: envelope.sender.agent_id, framework: envelope.sender.framework },
        message_type: replyOptions.message_type ?? "task_response",
        priority: replyOptions.priority ?? envelope.priority,
        payload,
        metadata: { ...replyOptions.metadata, in_reply_to: envelope.message_id, ...(typeof taskId === "string" ? { task_id: taskId } : {}) },
        ...(envelope.sender.session_id === undefined ? {} : { session_id: envelope.sender.session_id }),
      });
    },
  });

  const receive = (data: WebSocket.RawData): void => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(frameText(data));
    } catch {
      reportError(new BridgeError("TRANSPORT", "The bus sent a frame that is not JSON"));
      return;
    }
    const incoming = classify(parsed);
    if (incoming.kind === "unreadable") {
      reportError(new BridgeError("TRANSPORT", `The bus sent a frame that is neither a message nor an answer: ${JSON.stringify(parsed).slice(0, 200)}`));
      return;
    }
    if (incoming.kind === "message") {
      const { envelope } = incoming;
      transmit({ type: "ack", message_id: envelope.message_id });
      // De-duplication is per sender, as on the bus: two senders may use the same id.
      if (!seen.add(messageKeyOf(envelope))) return;
      Promise.resolve()
        .then(() => onMessage(envelope, contextOf(envelope)))
        .catch((error: unknown) => reportError(new BridgeError("UPSTREAM", `onMessage failed for ${envelope.message_id}: ${String(error)}`)));
      return;
    }
    const frame = incoming.answer;
    const waiter = frame.message_id === undefined ? undefined : pending.get(frame.message_id);
    if (frame.message_id !== undefined) pending.delete(frame.message_id);
    if (frame.type === "accepted") waiter?.resolve({ message_id: frame.message_id, status: frame.status });
    else if (waiter !== undefined) waiter.reject(errorOf(frame));
    else reportError(errorOf(frame));
  };

  /** Schedules the next try, after the backoff. */
  const retryLater = (): number | undefined => {
    if (closed || reconnect === undefined) return undefined;
    const delayMs = Math.min(reconnect.maxDelayMs, reconnect.initialDelayMs * reconnect.factor ** failedTries);
    failedTries += 1;
    retryTimer = setTimeout(open, delayMs);
    return delayMs;
  };

  /** The bus does not know this agent: register it when we can, then connect again at once; else say so and try later. */
  const unknownToBus = (reason: string): void => {
    const registration = options.register;
    if (registration === undefined) {
      if (reconnect === undefined) {
        giveUp(
          new BridgeError(
            "NOT_FOUND",
            `The bus does not know ${agentId} (${reason}): register it with POST /agents/register, or give connectAgent its descriptor as \`register\``,
            { agentId },
          ),
        );
        return;
      }
      const delayMs = retryLater();
      reportError(
        new BridgeError(
          "NOT_FOUND",
          `The bus does not know ${agentId} (${reason}): register it with POST /agents/register, or give connectAgent its descriptor as \`register\`; trying again in ${delayMs} ms`,
          {
            agentId,
            retryable: true,
          },
        ),
      );
      return;
    }
    registering = true;
    void registerSelf(registration).then(
      () => {
        registering = false;
        failedTries = 0;
        if (!closed) open();
      },
      (error: BridgeError) => {
        registering = false;
        // A descriptor the bus refuses, or a token it does not take, will not get better by trying again.
        if (error.type === "CONFIG" || error.type === "AUTH") {
          giveUp(new BridgeError(error.type, `The bus refused to register ${agentId}: ${error.message}`, error.details));
          return;
        }
        const delayMs = retryLater();
        reportError(
          new BridgeError(
            error.type,
            `Registering ${agentId} failed: ${error.message}${delayMs === undefined ? "" : `; trying again in ${delayMs} ms`}`,
            error.details,
          ),
        );
      },
    );
  };

  const registerSelf = async (registration: AgentRegistration): Promise<void> => {
    let response: Response;
    try {
      response = await fetch(registerUrlOf(options.url), {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(apiKey === undefined ? {} : { [API_KEY_HEADER]: apiKey }),
          ...(token === undefined ? {} : { [AGENT_TOKEN_HEADER]: token }),
        },
        body: JSON.stringify({ ...registration, agent_id: agentId, ...(token === undefined ? {} : { agent_token: token }) }),
      });
    } catch (error) {
      throw new BridgeError("TRANSPORT", `the bus did not answer: ${String(error)}`);
    }
    const body: unknown = await response.json().catch(() => undefined);
    if (response.status !== 201) throw errorOfResponse(response.status, body);
    const answered = isRecord(body) ? body["agent_token"] : undefined;
    if (typeof answered === "string") token = answered;
  };

  const open = (): void => {
    const ws = new WebSocketClient(target, {
      headers: { ...(apiKey === undefined ? {} : { [API_KEY_HEADER]: apiKey }), ...(token === undefined ? {} : { [AGENT_TOKEN_HEADER]: token }) },
    });
    socket = ws;
    ws.on("open", () => {
      failedTries = 0;
      settleReady();
    });
    ws.on("message", receive);
    ws.on("unexpected-response", (_request, response) => {
      const status = response.statusCode ?? 0;
      response.resume();
      ws.terminate();
      // With agentAuth "token", a bus answers 401 to an agent it does not know: one that can register does.
      if (status === 401 && options.register !== undefined && !closed) {
        unknownToBus(`HTTP ${status}`);
        return;
      }
      // A wrong key or a bad agent id will not get better by trying again.
      if (status === 401 || status === 400 || status === 404)
        giveUp(new BridgeError(status === 401 ? "AUTH" : "CONFIG", `The bus refused ${agentId}: HTTP ${status}`));
    });
    // Every error is followed by 'close', which decides about reconnecting.
    ws.on("error", () => {});
    ws.on("close", (code, reason) => {
      for (const [messageId, waiter] of pending) {
        waiter.reject(new BridgeError("TRANSPORT", `Connection closed before the bus answered ${messageId}`));
      }
      pending.clear();
      if (closed || registering) return;
      const why = reason.toString();
      if (code === CLOSE_CODES.policy && why.startsWith(CLOSE_REASONS.notRegistered)) {
        unknownToBus(why);
        return;
      }
      if (code === CLOSE_CODES.policy) giveUp(new BridgeError("AUTH", `The bus closed ${agentId}: ${why || "policy violation"}`));
      if (code === CLOSE_CODES.replaced) closed = true;
      if (!closed) retryLater();
    });
  };

  open();

  return {
    agentId,
    get connected() {
      return socket?.readyState === WebSocketClient.OPEN;
    },
    ready: () => {
      if (socket?.readyState === WebSocketClient.OPEN) return Promise.resolve();
      if (closed) return Promise.reject(new BridgeError("TRANSPORT", `${agentId} is closed`));
      return new Promise<void>((resolve, reject) => {
        readyWaiters.push({ resolve, reject });
      });
    },
    send,
    close: async () => {
      closed = true;
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      settleReady(new BridgeError("TRANSPORT", `${agentId} was closed`));
      readyWaiters = [];
      const ws = socket;
      if (ws === undefined || ws.readyState === WebSocketClient.CLOSED) return;
      await new Promise<void>((resolve) => {
        ws.once("close", () => resolve());
        if (ws.readyState === WebSocketClient.CONNECTING) ws.terminate();
        else ws.close(CLOSE_CODES.normal, "Agent closing");
      });
    },
  };
}
