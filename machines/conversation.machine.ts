/**
 * The conversation machine: one conversation between a user and an agent (SPEC §4), from its first message
 * until it ends.
 *
 * A conversation drives one bridge session, which keeps the rolling history the agent's model sees. It opens
 * the session (`opening`), then answers the user's turns one at a time in the order they came (`answering`,
 * queued behind the turn in flight, at most `maxQueuedTurns`), and waits in `ready` between them. A turn whose
 * error says the session is lost (`sessionValid: false`) ends it; idle for `idleTimeoutMs` in `ready`, it ends
 * too: it closes its session (`closing`) and reaches `ended`. A turn that arrives while it closes is kept, and
 * the conversation opens a fresh session for it instead of ending.
 *
 * It also keeps what the threads of its user did with it (the last turn of each, for thread follow-ups) and the
 * state of the agent's multi-step capabilities (`capabilityState`), which the model's tools write while a turn
 * is answered. Opening, answering and closing are actors the runtime provides (`openSession`, `runTurn`,
 * `closeSession`); time enters only through events (`at`) and the `idleTimeout` delay.
 */
import { assign, enqueueActions, fromPromise, setup, type DoneActorEvent, type ErrorActorEvent } from "xstate";
import { MAX_TIMER_DELAY_MS, type PromptError } from "./session.machine.js";

/** How conversations with an agent are kept apart: one per user (`shared`), or one per user and thread. */
export type ConversationIsolation = "shared" | "per_thread";

/** Why a conversation ended: idle too long, or its session was lost (it failed, or could not be opened). */
export type ConversationEndReason = "idle" | "failed";

/** One message of the user, to be answered. */
export interface ConversationTurn {
  /** The runtime's handle of the call that sent it; every answer about the turn carries it. */
  turnId: string;
  /** Turns are numbered in the order the runtime took them, across conversations (time may not move between two). */
  sequence: number;
  threadId: string;
  text: string;
}

/** The last turn a thread sent this conversation: a thread follows up with the conversation that took its latest turn. */
export interface ThreadActivity {
  threadId: string;
  sequence: number;
}

/** What the runtime gives a new conversation. Times are epoch milliseconds. */
export interface ConversationInput {
  /** Its id and system id: `conversation:<agent>:<user>` (and `:<thread>` for `per_thread`). */
  conversationId: string;
  userId: string;
  agentId: string;
  isolation: ConversationIsolation;
  /** The thread of a `per_thread` conversation; null when shared. */
  threadId: string | null;
  /** Ends the conversation after this long in `ready`; 0 never does. */
  idleTimeoutMs: number;
  /** Messages of history its session keeps for the model. */
  historyWindow: number;
  /** Turns waiting behind the one being answered; past it a turn is refused with BUSY. */
  maxQueuedTurns: number;
  /** Threads it remembers (the oldest is forgotten past it). */
  maxThreads: number;
  /** The turn that started it: in flight while the session opens. */
  firstTurn: ConversationTurn;
  createdAt: number;
}

/** The conversation's whole state besides its state value. */
export interface ConversationContext extends Omit<ConversationInput, "firstTurn"> {
  /** Its bridge session, once opened. */
  sessionId: string | null;
  inFlight: ConversationTurn | null;
  queue: ConversationTurn[];
  /** The threads that sent it turns, the most recent last (at most `maxThreads`). */
  threads: ThreadActivity[];
  /** Each capability's state (JSON), written by the model's tools during a turn. */
  capabilityState: Record<string, unknown>;
  lastActivityAt: number;
  endReason: ConversationEndReason | null;
}

/** Input of the `openSession` actor. */
export interface OpenSessionInput {
  conversationId: string;
  userId: string;
  agentId: string;
  threadId: string | null;
  historyWindow: number;
}

/** Output of the `openSession` actor. */
export interface OpenedSession {
  sessionId: string;
  at: number;
}

/** Input of the `runTurn` actor. */
export interface RunTurnInput {
  conversationId: string;
  sessionId: string;
  turn: ConversationTurn;
}

/** Output of the `runTurn` actor: the answer, and the agents it was handed to on the way. */
export interface TurnAnswer {
  text: string;
  handoffs: string[];
  at: number;
}

/** The error `openSession` and `runTurn` reject with. */
export interface TurnFailure extends PromptError {
  at: number;
}

/** Events a conversation accepts. */
export type ConversationEvent =
  | { type: "TURN"; turn: ConversationTurn; at: number }
  /** A tool of the turn being answered sets a capability's state; `state: null` removes it. */
  | { type: "CAPABILITY.SET"; capability: string; state: unknown }
  | DoneActorEvent<OpenedSession, "open">
  | ErrorActorEvent<TurnFailure, "open">
  | DoneActorEvent<TurnAnswer, "turn">
  | ErrorActorEvent<TurnFailure, "turn">
  | DoneActorEvent<void, "close">;

/** Events a conversation emits; the runtime turns them into the answers of `converse`. */
export type ConversationEmitted =
  | { type: "turn.answered"; conversationId: string; agentId: string; turnId: string; sessionId: string; text: string; handoffs: string[] }
  | { type: "turn.failed"; conversationId: string; turnId: string; error: PromptError };

/** What an ended conversation leaves behind. */
export interface ConversationOutput {
  reason: ConversationEndReason;
}

/** The BUSY a turn gets when `maxQueuedTurns` turns already wait. */
function busyError(maxQueuedTurns: number): PromptError {
  return {
    type: "BUSY",
    message: `Conversation is busy: ${maxQueuedTurns} turns already queued`,
    retryable: true,
    sessionValid: true,
    details: { maxQueuedTurns },
  };
}

function withThread(context: ConversationContext, turn: ConversationTurn): ThreadActivity[] {
  const { threadId, sequence } = turn;
  const threads = [...context.threads.filter((thread) => thread.threadId !== threadId), { threadId, sequence }];
  return threads.length > context.maxThreads ? threads.slice(threads.length - context.maxThreads) : threads;
}

function failTurns(enqueue: { emit(event: ConversationEmitted): void }, context: ConversationContext, turns: ConversationTurn[], error: PromptError): void {
  for (const turn of turns) enqueue.emit({ type: "turn.failed", conversationId: context.conversationId, turnId: turn.turnId, error });
}

type TurnEvent = Extract<ConversationEvent, { type: "TURN" }>;

/** Params of the actions that take in or refuse a turn. */
const turnOf = ({ event }: { event: TurnEvent }) => ({ turn: event.turn, at: event.at });
/** Params of the actions that fail on an actor's error: XState types it `unknown`, the runtime rejects only with this. */
const failureOf = ({ event }: { event: { error: unknown } }) => event.error as TurnFailure;

/** What a turn arriving while one is answered (or the session opens or closes) does: wait in the queue, or BUSY. */
const queueTurn = [{ guard: "queueFull", actions: { type: "refuseBusy", params: turnOf } }, { actions: { type: "enqueue", params: turnOf } }] as const;

/** The conversation machine. Provide `openSession`, `runTurn` and `closeSession` (promise actors) before use. */
export const conversationMachine = setup({
  types: {
    context: {} as ConversationContext,
    events: {} as ConversationEvent,
    input: {} as ConversationInput,
    emitted: {} as ConversationEmitted,
    output: {} as ConversationOutput,
  },
  actors: {
    // Replaced by the runtime through `provide`; these defaults never settle, so the bare machine does no I/O.
    openSession: fromPromise<OpenedSession, OpenSessionInput>(() => new Promise<never>(() => {})),
    runTurn: fromPromise<TurnAnswer, RunTurnInput>(() => new Promise<never>(() => {})),
    closeSession: fromPromise<void, { sessionId: string | null }>(() => new Promise<never>(() => {})),
  },
  delays: {
    idleTimeout: ({ context }) => Math.min(context.idleTimeoutMs, MAX_TIMER_DELAY_MS),
  },
  guards: {
    idleEnabled: ({ context }) => context.idleTimeoutMs > 0,
    hasQueued: ({ context }) => context.queue.length > 0,
    queueFull: ({ context }) => context.queue.length >= context.maxQueuedTurns,
    losesSession: (_, params: TurnFailure) => params.sessionValid === false,
  },
  actions: {
    accept: assign(({ context }, { turn, at }: { turn: ConversationTurn; at: number }) => ({
      inFlight: turn,
      threads: withThread(context, turn),
      lastActivityAt: at,
    })),
    enqueue: assign(({ context }, { turn }: { turn: ConversationTurn; at: number }) => ({
      queue: [...context.queue, turn],
      threads: withThread(context, turn),
    })),
    refuseBusy: enqueueActions(({ context, enqueue }, { turn }: { turn: ConversationTurn; at: number }) => {
      failTurns(enqueue, context, [turn], busyError(context.maxQueuedTurns));
    }),
    startNext: assign(({ context }) => ({ inFlight: context.queue[0] ?? null, queue: context.queue.slice(1) })),
    recordSession: assign((_, { sessionId, at }: OpenedSession) => ({ sessionId, lastActivityAt: at })),
    answer: enqueueActions(({ context, enqueue }, { text, handoffs, at }: TurnAnswer) => {
      const { inFlight, sessionId } = context;
      if (inFlight === null || sessionId === null) return;
      enqueue.emit({
        type: "turn.answered",
        conversationId: context.conversationId,
        agentId: context.agentId,
        turnId: inFlight.turnId,
        sessionId,
        text,
        handoffs,
      });
      enqueue.assign({ inFlight: null, lastActivityAt: at });
    }),
    failTurn: enqueueActions(({ context, enqueue }, { at, ...error }: TurnFailure) => {
      if (context.inFlight === null) return;
      failTurns(enqueue, context, [context.inFlight], error);
      enqueue.assign({ inFlight: null, lastActivityAt: at });
    }),
    /** The session is lost (or never opened): every turn it holds fails with the error, and the conversation ends. */
    failAll: enqueueActions(({ context, enqueue }, { at, ...error }: TurnFailure) => {
      failTurns(enqueue, context, context.inFlight === null ? context.queue : [context.inFlight, ...context.queue], error);
      enqueue.assign({ inFlight: null, queue: [], lastActivityAt: at, endReason: "failed" });
    }),
    endIdle: assign({ endReason: "idle" as const }),
    /** A turn came while the session closed: the conversation starts over with a fresh session and no capability state. */
    startOver: assign({ sessionId: null, capabilityState: {}, endReason: null }),
    setCapability: assign(({ context }, { capability, state }: { capability: string; state: unknown }) => {
      const { [capability]: _previous, ...others } = context.capabilityState;
      return { capabilityState: state === null ? others : { ...others, [capability]: state } };
    }),
  },
}).createMachine({
  id: "conversation",
  // The input is spread first here: `firstTurn` is not context, it is the turn in flight.
  context: ({ input: { firstTurn, ...input } }) => ({
    ...input,
    sessionId: null,
    // The turn the session is opened for is the one in flight: `queue` holds only turns waiting behind it.
    inFlight: firstTurn,
    queue: [],
    threads: [{ threadId: firstTurn.threadId, sequence: firstTurn.sequence }],
    capabilityState: {},
    lastActivityAt: input.createdAt,
    endReason: null,
  }),
  initial: "opening",
  output: ({ context }) => ({ reason: context.endReason ?? "idle" }),
  states: {
    opening: {
      description: "Opens the bridge session the conversation talks through, for the turn in flight; later turns queue up.",
      invoke: {
        id: "open",
        src: "openSession",
        input: ({ context }) => ({
          conversationId: context.conversationId,
          userId: context.userId,
          agentId: context.agentId,
          threadId: context.threadId,
          historyWindow: context.historyWindow,
        }),
        onDone: { target: "answering", actions: { type: "recordSession", params: ({ event }) => event.output } },
        onError: { target: "ended", actions: { type: "failAll", params: failureOf } },
      },
      on: { TURN: queueTurn },
    },
    answering: {
      description: "The agent answers the turn in flight through the session; later turns queue up; tools may set capability state.",
      invoke: {
        id: "turn",
        src: "runTurn",
        input: ({ context }) => ({
          conversationId: context.conversationId,
          sessionId: context.sessionId ?? "",
          turn: context.inFlight ?? { turnId: "", sequence: 0, threadId: "", text: "" },
        }),
        onDone: [
          { guard: "hasQueued", target: "answering", reenter: true, actions: [{ type: "answer", params: ({ event }) => event.output }, "startNext"] },
          { target: "ready", actions: { type: "answer", params: ({ event }) => event.output } },
        ],
        onError: [
          { guard: { type: "losesSession", params: failureOf }, target: "closing", actions: { type: "failAll", params: failureOf } },
          { guard: "hasQueued", target: "answering", reenter: true, actions: [{ type: "failTurn", params: failureOf }, "startNext"] },
          { target: "ready", actions: { type: "failTurn", params: failureOf } },
        ],
      },
      on: {
        TURN: queueTurn,
        "CAPABILITY.SET": { actions: { type: "setCapability", params: ({ event }) => ({ capability: event.capability, state: event.state }) } },
      },
    },
    ready: {
      description: "Waits for the user's next turn; idle for idleTimeoutMs, it ends.",
      on: {
        TURN: { target: "answering", actions: { type: "accept", params: turnOf } },
      },
      after: {
        idleTimeout: { guard: "idleEnabled", target: "closing", actions: "endIdle" },
      },
    },
    closing: {
      description: "Closes its session. A turn that arrives meanwhile waits, and a fresh session is opened for it.",
      invoke: {
        id: "close",
        src: "closeSession",
        input: ({ context }) => ({ sessionId: context.sessionId }),
        onDone: [{ guard: "hasQueued", target: "opening", actions: ["startOver", "startNext"] }, { target: "ended" }],
      },
      on: { TURN: queueTurn },
    },
    ended: {
      description: "Over: its session is closed (or was never opened); its shard reaps it.",
      type: "final",
    },
  },
});

/** The state values of a conversation. */
export type ConversationStatus = "opening" | "answering" | "ready" | "closing" | "ended";
