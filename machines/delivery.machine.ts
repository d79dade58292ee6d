/**
 * The delivery machine: one bus message at a time, from its acceptance until it is acknowledged or dead.
 *
 * `accepted` asks the bus to hand the message to its current target (the `dispatch` action, provided by the
 * bus); the bus answers `SENT` (written to the target's socket) or `QUEUED` (the target is offline or its
 * window is full). A `SENT` message waits for the agent's `ACK`. No ack within `ackTimeoutMs`, or the socket
 * closing first (`SEND_FAILED`), fails the attempt: the message is retried after a linear or exponential
 * backoff, then handed to each fallback agent in turn, and is `dead` when every target has used its retries.
 * Whatever happens, it is `dead` once `timeoutMs` has passed since it was accepted. An `ACK` counts only once
 * the bus has made it durable (`acknowledging`, then `ACK_DURABLE`): a message acknowledged is never
 * delivered again, even after a crash. A bus that keeps nothing across restarts (`commitsAcks: false`) has
 * nothing to make durable: there an `ACK` counts at once. Time enters only through XState delays, so
 * `@xstate/graph` can walk the machine.
 *
 * A delivery actor carries the messages it is handed one after the other: it starts `idle`, takes a message
 * with `DELIVER`, and once that message is acknowledged or dead it releases the envelope and waits `idle`
 * again for the next one. The bus reuses idle actors instead of spawning one per message, which cost more
 * than the rest of a message's way through the bus; an idle actor it does not keep is `RETIRE`d: it ends,
 * and its pool shard reaps it. The message timeout runs from each message's `DELIVER` (a delayed
 * `MESSAGE_TIMEOUT`, cancelled when the message ends), not from the actor's start. It is spawned without
 * input: XState keeps an actor's input as long as the actor, and no message may outlive its delivery.
 *
 * A message restored after a restart (`DELIVER` with a `resume`) is taken into the state it was stored in, with
 * its counters, and its delays resume with what was left of them: the machine is restored from data, never
 * from an XState snapshot, so no `after` delay and no spawned child depends on XState's own restore.
 */
import { and, assign, cancel, emit, or, raise, setup, stateIn } from "xstate";

/** How the wait between two attempts grows. */
export type BackoffKind = "linear" | "exponential";

/** The states of a delivery; `GET /messages/:id` reports them as `status`. */
export type DeliveryStatus = "accepted" | "queued" | "delivered" | "acknowledging" | "acknowledged" | "retrying" | "dead";

/** The states of a delivery actor: its message's, and `idle` and `retired` between messages. */
export type DeliveryActorState = DeliveryStatus | "idle" | "retired";

/**
 * Where a delivery restored after a restart resumes: the state it was stored in, its counters, and what was
 * left of its delays (the bus computes them from the absolute deadlines it stored and its clock).
 */
export interface DeliveryResume {
  /** `accepted` (stored `accepted` or `queued`) is dispatched again; the others wait where they were. */
  status: "accepted" | "delivered" | "retrying";
  targetIndex: number;
  retries: number;
  attempts: number;
  lastError: string | null;
  /** What was left of the message's timeout (0: it passed while the bus was down; it dies at once). */
  timeoutLeftMs: number;
  /** What was left of the ack timeout (`delivered`) or of the backoff (`retrying`); 0 for `accepted`. */
  phaseLeftMs: number;
}

/** A message as the bus hands it to a delivery (`DELIVER`). Durations are milliseconds. */
export interface DeliveryInput {
  messageId: string;
  /** What the bus names the message by (its sender and `message_id`): its queues, windows and records hold it. */
  key: string;
  /** The envelope itself: it lives (and is released) with the delivery. The machine never looks inside. */
  envelope: unknown;
  /** The envelope as the JSON text frame written to sockets, serialized once. */
  frame: string;
  /** The frame's size in UTF-8 bytes, measured once: what it takes of `maxQueuedBytes` and of a socket's buffer. */
  frameBytes: number;
  /** When the bus accepted the message (epoch ms). */
  acceptedAt: number;
  /** The recipient, then each fallback agent, in the order they are tried. */
  targets: string[];
  /** Retries per target after its first attempt. */
  maxRetries: number;
  backoff: BackoffKind;
  /** The first retry waits this long; linear backoff adds it per retry, exponential doubles it. */
  retryBaseMs: number;
  /** How long a written message may wait for its ack before the attempt counts as failed. */
  ackTimeoutMs: number;
  /**
   * Whether an ack waits in `acknowledging` for the bus's store to commit it before it counts; false when the
   * bus keeps nothing across restarts, so that an ack counts at once.
   */
  commitsAcks: boolean;
  /** From acceptance until the message is dead, whatever else happens. */
  timeoutMs: number;
  /** A delivery restored after a restart: where it resumes. Absent for a new message. */
  resume?: DeliveryResume;
}

/** The delivery's whole state besides its state value. */
export interface DeliveryContext extends DeliveryInput {
  /** Index in `targets` of the agent being tried. */
  targetIndex: number;
  /** Retries used on the current target. */
  retries: number;
  /** Times the message was written to a socket, over every target. */
  attempts: number;
  lastError: string | null;
}

/** Events a delivery accepts. */
export type DeliveryEvent =
  /** The target cannot take the message now; it waits in the target's queue. */
  | { type: "QUEUED" }
  /** The message was written to the target's socket. */
  | { type: "SENT"; agentId: string }
  /** The agent acknowledged the message. */
  | { type: "ACK"; agentId: string }
  /** The bus has made the ack durable: the message counts as acknowledged. */
  | { type: "ACK_DURABLE" }
  /** The socket closed before the ack came. */
  | { type: "SEND_FAILED"; error: string }
  /** Raised by the delivery itself `timeoutMs` after it took its message. */
  | { type: "MESSAGE_TIMEOUT" }
  /** An idle delivery takes the next message. */
  | { type: "DELIVER"; message: DeliveryInput }
  /** An idle delivery the bus does not keep ends. */
  | { type: "RETIRE" };

/** Why a message is dead: its `timeoutMs` passed, or every target used its retries. */
export type DeadCause = "timeout" | "exhausted";

/** Events a delivery emits; the bus turns them into status, metrics and the event stream. */
export type DeliveryEmitted =
  | { type: "message.accepted"; messageId: string; target: string }
  | { type: "message.queued"; messageId: string; target: string }
  | { type: "message.delivered"; messageId: string; target: string; attempts: number }
  | { type: "message.acknowledged"; messageId: string; target: string; attempts: number }
  | { type: "message.retrying"; messageId: string; target: string; retries: number; delayMs: number; error: string }
  | { type: "message.dead"; messageId: string; attempts: number; error: string; cause: DeadCause };

/** The wait before retry number `retry` (1-based). */
export function retryDelayMs(backoff: BackoffKind, retryBaseMs: number, retry: number): number {
  return backoff === "linear" ? retryBaseMs * retry : retryBaseMs * 2 ** (retry - 1);
}

function targetOf(context: DeliveryContext): string {
  return context.targets[context.targetIndex] ?? "";
}

/**
 * What is left of the delay of the state a restored delivery resumed in, while it is still in that state's
 * first visit: the counters change with every attempt, retry and target, so a later visit of the same state
 * has other counters and gets its full delay. Undefined for a new delivery and for any later visit.
 */
export function resumedDelayMs(context: DeliveryContext, status: "delivered" | "retrying"): number | undefined {
  const { resume } = context;
  if (resume === undefined || resume.status !== status) return undefined;
  const samePhase = resume.attempts === context.attempts && resume.retries === context.retries && resume.targetIndex === context.targetIndex;
  return samePhase ? resume.phaseLeftMs : undefined;
}

/** The backoff of the retry the delivery waits for in `retrying`. */
function backoffMs(context: DeliveryContext): number {
  return resumedDelayMs(context, "retrying") ?? retryDelayMs(context.backoff, context.retryBaseMs, context.retries);
}

/** What an actor holds before its first message: no message, no payload. */
const NO_MESSAGE: DeliveryContext = {
  messageId: "",
  key: "",
  envelope: null,
  frame: "",
  frameBytes: 0,
  acceptedAt: 0,
  targets: [],
  maxRetries: 0,
  backoff: "linear",
  retryBaseMs: 0,
  ackTimeoutMs: 0,
  commitsAcks: false,
  timeoutMs: 0,
  targetIndex: 0,
  retries: 0,
  attempts: 0,
  lastError: null,
};

/** A new delivery starts with its counters at zero; a restored one with those it was stored with. */
function initialContext(input: DeliveryInput): DeliveryContext {
  const { resume } = input;
  // The input is spread last: V8 makes a literal that starts with a spread slow to build (about 6 µs here).
  if (resume === undefined) return { targetIndex: 0, retries: 0, attempts: 0, lastError: null, ...input };
  return { ...input, targetIndex: resume.targetIndex, retries: resume.retries, attempts: resume.attempts, lastError: resume.lastError };
}

type SendFailedEvent = Extract<DeliveryEvent, { type: "SEND_FAILED" }>;
type DeliverEvent = Extract<DeliveryEvent, { type: "DELIVER" }>;

/** Taking a message: its context, then its timeout, which runs from now. */
const takeMessage = [{ type: "takeMessage", params: ({ event }: { event: DeliverEvent }) => ({ message: event.message }) }, "startTimeout"] as const;

/** The id of the delayed `MESSAGE_TIMEOUT` of the message a delivery carries. */
const MESSAGE_TIMEOUT_ID = "messageTimeout";

/** The states in which a message waits for something its timeout may cut short: not a durable ack's commit. */
const TIMED_OUT_IN = ["#delivery.accepted", "#delivery.queued", "#delivery.delivered", "#delivery.retrying"] as const;

/** What a failed attempt leads to: a retry, the next fallback agent, or the end. `failure` records why it failed. */
function failAttempt<const TFailure>(failure: TFailure) {
  return [
    { guard: "canRetry", target: "retrying", actions: [failure, "countRetry"] },
    { guard: "hasFallback", target: "accepted", actions: [failure, "nextTarget"] },
    { target: "dead", actions: [failure, "recordExhausted", { type: "announceDead", params: { cause: "exhausted" } }] },
  ] as const;
}

/** The delivery machine. Provide `dispatch` (hand the message to `targets[targetIndex]`) before use. */
export const deliveryMachine = setup({
  types: {
    context: {} as DeliveryContext,
    events: {} as DeliveryEvent,
    emitted: {} as DeliveryEmitted,
  },
  delays: {
    ackTimeout: ({ context }) => resumedDelayMs(context, "delivered") ?? context.ackTimeoutMs,
    retryDelay: ({ context }) => backoffMs(context),
    messageTimeout: ({ context }) => context.resume?.timeoutLeftMs ?? context.timeoutMs,
  },
  guards: {
    /** A message restored after a restart resumes where it was stored: waiting for its ack, or its backoff. */
    resumesDelivered: ({ event }) => event.type === "DELIVER" && event.message.resume?.status === "delivered",
    resumesRetrying: ({ event }) => event.type === "DELIVER" && event.message.resume?.status === "retrying",
    /** Whatever happens, a message is dead once its timeout passed; a durable ack's commit is not cut short. */
    mayTimeOut: or(TIMED_OUT_IN.map((state) => stateIn(state))),
    canRetry: ({ context }) => context.retries < context.maxRetries,
    hasFallback: ({ context }) => context.targetIndex + 1 < context.targets.length,
    /** An ack counts only from the agent the message was given to: no agent acknowledges another's message. */
    isFromTarget: ({ context, event }) => event.type === "ACK" && event.agentId === context.targets[context.targetIndex],
    /** The bus's store commits acks: an ack waits for that before it counts. */
    commitsAcks: ({ context }) => context.commitsAcks,
  },
  actions: {
    // Replaced by the bus through `provide`: it queues or writes the message, then sends QUEUED or SENT.
    dispatch: () => {},
    countAttempt: assign({ attempts: ({ context }) => context.attempts + 1 }),
    // `assign` merges: a message without `resume` must not inherit the previous message's.
    takeMessage: assign((_, { message }: { message: DeliveryInput }) => ({ resume: undefined, ...initialContext(message) })),
    /** The envelope and its frame go with the message: an idle delivery holds no payload. */
    releaseMessage: assign({ envelope: null, frame: "", frameBytes: 0 }),
    startTimeout: raise({ type: "MESSAGE_TIMEOUT" }, { id: MESSAGE_TIMEOUT_ID, delay: "messageTimeout" }),
    stopTimeout: cancel(MESSAGE_TIMEOUT_ID),
    recordSendFailure: assign((_, { error }: { error: string }) => ({ lastError: error })),
    recordAckTimeout: assign({ lastError: ({ context }) => `No ack from ${targetOf(context)} within ${context.ackTimeoutMs} ms` }),
    recordExhausted: assign({
      lastError: ({ context }) => `Retries exhausted on ${context.targets.join(", ")}: ${context.lastError ?? "no ack"}`,
    }),
    recordTimeout: assign({
      lastError: ({ context }) => `Not acknowledged within ${context.timeoutMs} ms${context.lastError ? ` (last error: ${context.lastError})` : ""}`,
    }),
    countRetry: assign({ retries: ({ context }) => context.retries + 1 }),
    nextTarget: assign({ targetIndex: ({ context }) => context.targetIndex + 1, retries: 0 }),
    announceAccepted: emit(({ context }) => ({ type: "message.accepted" as const, messageId: context.messageId, target: targetOf(context) })),
    announceQueued: emit(({ context }) => ({ type: "message.queued" as const, messageId: context.messageId, target: targetOf(context) })),
    announceDelivered: emit(({ context }) => ({
      type: "message.delivered" as const,
      messageId: context.messageId,
      target: targetOf(context),
      attempts: context.attempts,
    })),
    announceAcknowledged: emit(({ context }) => ({
      type: "message.acknowledged" as const,
      messageId: context.messageId,
      target: targetOf(context),
      attempts: context.attempts,
    })),
    announceRetrying: emit(({ context }) => ({
      type: "message.retrying" as const,
      messageId: context.messageId,
      target: targetOf(context),
      retries: context.retries,
      delayMs: backoffMs(context),
      error: context.lastError ?? "",
    })),
    announceDead: emit(({ context }, { cause }: { cause: DeadCause }) => ({
      type: "message.dead" as const,
      messageId: context.messageId,
      attempts: context.attempts,
      error: context.lastError ?? "",
      cause,
    })),
  },
}).createMachine({
  id: "delivery",
  context: NO_MESSAGE,
  initial: "idle",
  on: {
    MESSAGE_TIMEOUT: {
      guard: "mayTimeOut",
      target: ".dead",
      actions: ["recordTimeout", { type: "announceDead", params: { cause: "timeout" } }],
    },
  },
  states: {
    accepted: {
      description: "Handed to the current target's queue; the bus answers SENT or QUEUED.",
      entry: ["announceAccepted", "dispatch"],
      on: {
        SENT: { target: "delivered", actions: "countAttempt" },
        QUEUED: { target: "queued" },
      },
    },
    queued: {
      description: "Waiting for the target to connect or to make room in its window.",
      entry: "announceQueued",
      on: {
        SENT: { target: "delivered", actions: "countAttempt" },
      },
    },
    delivered: {
      description: "Written to the target's socket; waiting for its ack.",
      entry: "announceDelivered",
      on: {
        ACK: [
          { guard: and(["isFromTarget", "commitsAcks"]), target: "acknowledging" },
          { guard: "isFromTarget", target: "acknowledged" },
        ],
        SEND_FAILED: [...failAttempt({ type: "recordSendFailure", params: ({ event }: { event: SendFailedEvent }) => ({ error: event.error }) })],
      },
      after: {
        ackTimeout: [...failAttempt("recordAckTimeout")],
      },
    },
    retrying: {
      description: "The attempt failed; waiting out the backoff. A late ack still counts.",
      entry: "announceRetrying",
      on: {
        ACK: [
          { guard: and(["isFromTarget", "commitsAcks"]), target: "acknowledging" },
          { guard: "isFromTarget", target: "acknowledged" },
        ],
      },
      after: {
        retryDelay: { target: "accepted" },
      },
    },
    acknowledging: {
      description: "The target acknowledged; the bus writes that to its store and answers ACK_DURABLE once it is durable.",
      on: {
        ACK_DURABLE: { target: "acknowledged" },
      },
    },
    acknowledged: {
      description: "The agent has it, and the bus will not deliver it again, even after a crash.",
      entry: ["announceAcknowledged", "stopTimeout"],
      always: { target: "idle", actions: "releaseMessage" },
    },
    dead: {
      // `message.dead` is emitted by the transitions that lead here: each knows the cause.
      description: "Every target failed, or the timeout passed; the sender gets a DELIVERY_FAILED error.",
      entry: "stopTimeout",
      always: { target: "idle", actions: "releaseMessage" },
    },
    idle: {
      description: "Before and between messages, without a payload: the bus hands it the next message, or retires it.",
      on: {
        // A new message is dispatched; one restored after a restart resumes in the state it was stored in.
        DELIVER: [
          { guard: "resumesDelivered", target: "delivered", actions: takeMessage },
          { guard: "resumesRetrying", target: "retrying", actions: takeMessage },
          { target: "accepted", actions: takeMessage },
        ],
        RETIRE: { target: "retired" },
      },
    },
    retired: {
      description: "The bus keeps enough idle deliveries: this one ends, and its shard reaps it.",
      type: "final",
    },
  },
});
