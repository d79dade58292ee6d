/**
 * The session machine: one bridge session, from creation until it is deleted.
 *
 * States are exactly `active` (created, nothing sent), `busy` (a prompt in flight), `idle` (ready) and
 * `failed` (unrecoverable). Closing or expiring a session is not a state: the session cancels what it still
 * holds and asks its parent to delete it (`SESSION.RELEASE`). The prompt itself runs in the `runPrompt`
 * actor that the runtime provides. A prompt's timeout is the session's own rule: accepting a prompt with a
 * `timeoutMs` raises a delayed `PROMPT.DEADLINE` to itself, cancelled when the prompt ends first. Time enters
 * only through events (`at`) and XState delays, so the machine stays pure and walkable by `@xstate/graph`.
 */
import { and, assign, emit, enqueueActions, fromPromise, sendParent, setup, type DoneActorEvent, type ErrorActorEvent } from "xstate";
import { jsonBytes, jsonBytesEnd } from "./text.js";

/** Why a session was deleted (or, for `failed`, why its agent was told it is over). */
export type SessionCloseReason = "closed" | "expired" | "shutdown" | "failed";

/** Why a pending prompt was cancelled. */
export type PromptCancelCause = "cancel" | "closed" | "expired" | "shutdown";

/** Token counts as the bridge reports them. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** One turn of the conversation the session keeps for its agent. */
export interface HistoryMessage {
  role: "user" | "assistant";
  content: string;
}

/** What an agent answers to one prompt. */
export interface PromptReply {
  text: string;
  stopReason: string;
  usage?: Usage;
}

/** A failure as the machine sees it: plain data, so that it can be emitted and persisted. */
export interface PromptError {
  type: string;
  message: string;
  retryable: boolean;
  sessionValid: boolean;
  details?: Record<string, unknown>;
}

/** A prompt accepted by the session, in flight or queued. */
export interface PendingPrompt {
  /** The client's handle for cancelling; unique among the session's pending prompts. */
  requestId: string;
  /** The runtime's handle of the call that sent it; every answer about this prompt carries it. */
  commandId: string;
  prompt: string;
  runtimeParams?: Record<string, unknown>;
  /** Fails the prompt with TIMEOUT this long after the session accepted it: time spent queued counts. */
  timeoutMs?: number;
}

/** The identity of a session, as handed to agents and hooks. */
export interface SessionInfo {
  sessionId: string;
  agentId: string;
  metadata: Record<string, unknown>;
}

/** What the runtime gives a new session. Times are epoch milliseconds; 0 disables an expiry. */
export interface SessionInput extends SessionInfo {
  shardId: string;
  createdAt: number;
  ttlMs: number;
  idleMs: number;
  maxQueuedPrompts: number;
  historyWindow: number;
}

/** The session's whole state besides its state value. */
export interface SessionContext extends SessionInput {
  lastActivityAt: number;
  inFlight: PendingPrompt | null;
  queue: PendingPrompt[];
  history: HistoryMessage[];
  usage: Usage;
  error: { type: string; message: string } | null;
  releaseReason: Exclude<SessionCloseReason, "failed"> | null;
}

/** Input of the `runPrompt` actor that the runtime provides. */
export interface RunPromptInput extends SessionInfo {
  request: PendingPrompt;
  history: HistoryMessage[];
}

/** Output of the `runPrompt` actor: the reply and when it arrived. */
export interface RunPromptOutput {
  reply: PromptReply;
  at: number;
}

/** The error the `runPrompt` actor rejects with. */
export interface RunPromptFailure extends PromptError {
  at: number;
}

/** Events a session accepts. */
export type SessionEvent =
  | { type: "PROMPT"; request: PendingPrompt; at: number }
  | { type: "CANCEL"; commandId: string; requestId?: string; at: number }
  | { type: "CLOSE"; reason: "closed" | "shutdown" }
  /** The agent's side of the session is gone (e.g. its worker process crashed): the session fails. */
  | { type: "FAIL"; error: PromptError; at: number }
  /** A prompt's timeout has passed (`at` is that moment). The session raises it to itself, delayed, on accepting the prompt. */
  | { type: "PROMPT.DEADLINE"; commandId: string; timeoutMs: number; at: number }
  | DoneActorEvent<RunPromptOutput, "prompt">
  | ErrorActorEvent<RunPromptFailure, "prompt">;

/** Events a session emits; the runtime turns them into answers and into the event stream. */
export type SessionEmitted =
  | { type: "prompt.started"; sessionId: string; requestId: string; commandId: string }
  | { type: "prompt.completed"; sessionId: string; requestId: string; commandId: string; reply: PromptReply }
  | { type: "prompt.failed"; sessionId: string; requestId: string; commandId: string; error: PromptError; started: boolean }
  | {
      type: "prompt.cancelled";
      sessionId: string;
      requestId: string;
      commandId: string;
      cause: PromptCancelCause;
      inFlight: boolean;
      /** The `CANCEL` command that caused it, if any. */
      cancelCommandId?: string;
    }
  | { type: "cancel.rejected"; sessionId: string; commandId: string; error: PromptError }
  | { type: "session.failed"; session: SessionInfo; error: PromptError };

/** The event a session sends its parent when it must be deleted. */
export interface SessionReleaseEvent {
  type: "SESSION.RELEASE";
  session: SessionInfo;
  reason: Exclude<SessionCloseReason, "failed">;
}

/** Largest delay a Node timer honours (about 24.8 days); longer ones would fire at once. */
export const MAX_TIMER_DELAY_MS = 2_147_483_647;

function rejection(type: string, message: string, sessionValid: boolean, retryable = false): PromptError {
  return { type, message, retryable, sessionValid };
}

/**
 * When a delay the session arms falls due, as an absolute time (epoch ms) read from its context: the TTL from
 * `createdAt`, the idle expiry from `lastActivityAt` (the moment it entered the state that armed it). A
 * session restored from the store resumes its delays from these, so a restart does not reset them.
 */
export function sessionDelayDueAt(context: Pick<SessionContext, "createdAt" | "ttlMs" | "lastActivityAt" | "idleMs">, delay: string | number): number {
  // The machine's only `after` delays are these two.
  return delay === "sessionTtl"
    ? context.createdAt + Math.min(context.ttlMs, MAX_TIMER_DELAY_MS)
    : context.lastActivityAt + Math.min(context.idleMs, MAX_TIMER_DELAY_MS);
}

/** The TIMEOUT a prompt fails with at its deadline: transient, the session stays valid. */
function timeoutError(timeoutMs: number): PromptError {
  return { type: "TIMEOUT", message: `Prompt timed out after ${timeoutMs} ms`, retryable: true, sessionValid: true, details: { timeoutMs } };
}

/** The `prompt.failed` of a prompt the session refused: it never started. */
function rejectPrompt(context: SessionContext, request: PendingPrompt, error: PromptError) {
  return {
    type: "prompt.failed" as const,
    sessionId: context.sessionId,
    requestId: request.requestId,
    commandId: request.commandId,
    started: false,
    error,
  };
}

/** The id of a prompt's delayed `PROMPT.DEADLINE`, unique per prompt so each one can be cancelled alone. */
function deadlineIdOf(request: PendingPrompt): string {
  return `deadline:${request.commandId}`;
}

/**
 * Cancels the deadlines of prompts that leave the session. A deadline that already fired is cancelled too:
 * that is a no-op for XState and lets the runtime's scheduler index forget its id.
 */
function disarmDeadlines(enqueue: { cancel(id: string): void }, requests: PendingPrompt[]): void {
  for (const request of requests) if (request.timeoutMs !== undefined) enqueue.cancel(deadlineIdOf(request));
}

/** Every prompt the session holds, the one in flight first. */
function pendingOf(context: SessionContext): PendingPrompt[] {
  return context.inFlight === null ? context.queue : [context.inFlight, ...context.queue];
}

function infoOf(context: SessionContext): SessionInfo {
  return { sessionId: context.sessionId, agentId: context.agentId, metadata: context.metadata };
}

function isPending(context: SessionContext, requestId: string): boolean {
  return pendingOf(context).some((pending) => pending.requestId === requestId);
}

/**
 * The most bytes of JSON a session's messages take in its history, whatever its window: past it, its oldest
 * messages go first, and a newest exchange larger than this alone keeps the first `MAX_HISTORY_BYTES / 2` bytes
 * of each message. A session's history is in its record, read at every restart and takeover: its size in bytes is
 * bounded, not only its length (a character can be 6 bytes of JSON: a control character's escape).
 */
export const MAX_HISTORY_BYTES = 4 * 1024 * 1024;

/** No character takes more bytes of JSON than this: a history of fewer characters than the bound over it is within it. */
const MAX_JSON_BYTES_PER_CHAR = 6;

function appendHistory(context: SessionContext, prompt: string, reply: PromptReply): HistoryMessage[] {
  const appended = [...context.history, { role: "user" as const, content: prompt }, { role: "assistant" as const, content: reply.text }];
  const history = appended.length > context.historyWindow ? appended.slice(appended.length - context.historyWindow) : appended;
  // Counted in bytes only when the characters could be past the bound: a history well within it costs nothing.
  const chars = history.reduce((sum, message) => sum + message.content.length, 0);
  if (chars * MAX_JSON_BYTES_PER_CHAR <= MAX_HISTORY_BYTES) return history;
  const sizes = history.map((message) => jsonBytes(message.content));
  let bytes = sizes.reduce((sum, size) => sum + size, 0);
  let start = 0;
  while (bytes > MAX_HISTORY_BYTES && start < history.length - 2) {
    bytes -= sizes[start]!;
    start += 1;
  }
  const kept = start === 0 ? history : history.slice(start);
  if (bytes <= MAX_HISTORY_BYTES) return kept;
  const each = Math.floor(MAX_HISTORY_BYTES / kept.length);
  return kept.map((message, index) =>
    sizes[start + index]! > each ? { ...message, content: message.content.slice(0, jsonBytesEnd(message.content, each).end) } : message,
  );
}

/**
 * The queue and usage of a session that has had no prompt: one of each for every session (an idle one holds
 * them for hours), frozen since assignments replace them rather than change them.
 */
const NO_PROMPTS: PendingPrompt[] = Object.freeze([]) as unknown as PendingPrompt[];
const NO_USAGE: Usage = Object.freeze({ inputTokens: 0, outputTokens: 0 });

/** What an expiry does: cancel what is pending, then ask to be deleted. */
const expire = [{ type: "release", params: { reason: "expired" } }, "askParentToDelete"] as const;

type PromptEvent = Extract<SessionEvent, { type: "PROMPT" }>;
type CancelEvent = Extract<SessionEvent, { type: "CANCEL" }>;
type DeadlineEvent = Extract<SessionEvent, { type: "PROMPT.DEADLINE" }>;

/** Params of the actions that take in or refuse a prompt. */
const promptOf = ({ event }: { event: PromptEvent }) => ({ request: event.request, at: event.at });
/** Params of the actions that answer a cancel. */
const cancelOf = ({ event }: { event: CancelEvent }) => ({ cancelCommandId: event.commandId, requestId: event.requestId, at: event.at });
/** Params of the actions that fail on a `FAIL`. */
const failureOf = ({ event }: { event: Extract<SessionEvent, { type: "FAIL" }> }): RunPromptFailure => ({ ...event.error, at: event.at });
/** Params of the actions that fail on a prompt's error: XState types it `unknown`, the runtime rejects only with this. */
const promptFailureOf = ({ event }: { event: { error: unknown } }) => event.error as RunPromptFailure;
/** Params of the actions that time a prompt out. */
const deadlineOf = ({ event }: { event: DeadlineEvent }) => ({ commandId: event.commandId, timeoutMs: event.timeoutMs, at: event.at });

/** The session machine. Provide `runPrompt` (a promise actor) before use. */
export const sessionMachine = setup({
  types: {
    context: {} as SessionContext,
    events: {} as SessionEvent,
    input: {} as SessionInput,
    emitted: {} as SessionEmitted,
  },
  actors: {
    // Replaced by the runtime through `provide`; this default never settles, so the bare machine does no I/O.
    runPrompt: fromPromise<RunPromptOutput, RunPromptInput>(() => new Promise<never>(() => {})),
  },
  delays: {
    sessionTtl: ({ context }) => Math.min(context.ttlMs, MAX_TIMER_DELAY_MS),
    sessionIdle: ({ context }) => Math.min(context.idleMs, MAX_TIMER_DELAY_MS),
  },
  // Guards read the event the transition narrowed: `and([...])` does not type parameterized guards (xstate 5.33).
  guards: {
    ttlEnabled: ({ context }) => context.ttlMs > 0,
    idleEnabled: ({ context }) => context.idleMs > 0,
    hasQueued: ({ context }) => context.queue.length > 0,
    isDuplicateRequest: ({ context, event }) => event.type === "PROMPT" && isPending(context, event.request.requestId),
    queueFull: ({ context }) => context.queue.length >= context.maxQueuedPrompts,
    targetsInFlight: ({ context, event }) => event.type === "CANCEL" && (event.requestId === undefined || event.requestId === context.inFlight?.requestId),
    targetsQueued: ({ context, event }) => event.type === "CANCEL" && context.queue.some((queued) => queued.requestId === event.requestId),
    isUnrecoverable: ({ event }) => event.type === "xstate.error.actor.prompt" && event.error.sessionValid === false,
    inFlightIsDue: ({ context, event }) => event.type === "PROMPT.DEADLINE" && event.commandId === context.inFlight?.commandId,
    queuedIsDue: ({ context, event }) => event.type === "PROMPT.DEADLINE" && context.queue.some((queued) => queued.commandId === event.commandId),
  },
  actions: {
    accept: assign((_, { request, at }: { request: PendingPrompt; at: number }) => ({ inFlight: request, lastActivityAt: at })),
    enqueue: assign(({ context }, { request, at }: { request: PendingPrompt; at: number }) => ({
      queue: [...context.queue, request],
      lastActivityAt: at,
    })),
    armDeadline: enqueueActions(({ enqueue }, { request, at }: { request: PendingPrompt; at: number }) => {
      const { commandId, timeoutMs } = request;
      if (timeoutMs === undefined) return;
      enqueue.raise({ type: "PROMPT.DEADLINE", commandId, timeoutMs, at: at + timeoutMs }, { id: deadlineIdOf(request), delay: timeoutMs });
    }),
    startNext: assign(({ context }) => ({ inFlight: context.queue[0] ?? null, queue: context.queue.slice(1) })),
    announceStart: emit(({ context }) => ({
      type: "prompt.started" as const,
      sessionId: context.sessionId,
      requestId: context.inFlight?.requestId ?? "",
      commandId: context.inFlight?.commandId ?? "",
    })),
    complete: enqueueActions(({ context, enqueue }, { reply, at }: RunPromptOutput) => {
      if (context.inFlight === null) return;
      const { requestId, commandId, prompt } = context.inFlight;
      enqueue.emit({ type: "prompt.completed", sessionId: context.sessionId, requestId, commandId, reply });
      disarmDeadlines(enqueue, [context.inFlight]);
      enqueue.assign({
        history: appendHistory(context, prompt, reply),
        usage: {
          inputTokens: context.usage.inputTokens + (reply.usage?.inputTokens ?? 0),
          outputTokens: context.usage.outputTokens + (reply.usage?.outputTokens ?? 0),
        },
        lastActivityAt: at,
        inFlight: null,
      });
    }),
    failTransiently: enqueueActions(({ context, enqueue }, { at, ...error }: RunPromptFailure) => {
      if (context.inFlight === null) return;
      const { requestId, commandId } = context.inFlight;
      enqueue.emit({ type: "prompt.failed", sessionId: context.sessionId, requestId, commandId, error, started: true });
      disarmDeadlines(enqueue, [context.inFlight]);
      enqueue.assign({ lastActivityAt: at, inFlight: null });
    }),
    failSession: enqueueActions(({ context, enqueue }, { at, ...error }: RunPromptFailure) => {
      const pending = pendingOf(context);
      pending.forEach(({ requestId, commandId }, index) =>
        enqueue.emit({
          type: "prompt.failed",
          sessionId: context.sessionId,
          requestId,
          commandId,
          error,
          started: index === 0 && context.inFlight !== null,
        }),
      );
      enqueue.emit({ type: "session.failed", session: infoOf(context), error });
      disarmDeadlines(enqueue, pending);
      enqueue.assign({
        lastActivityAt: at,
        inFlight: null,
        queue: [],
        error: { type: error.type, message: error.message },
      });
    }),
    timeOutInFlight: enqueueActions(({ context, enqueue }, { timeoutMs, at }: { commandId: string; timeoutMs: number; at: number }) => {
      if (context.inFlight === null) return;
      const { requestId, commandId } = context.inFlight;
      enqueue.emit({ type: "prompt.failed", sessionId: context.sessionId, requestId, commandId, error: timeoutError(timeoutMs), started: true });
      disarmDeadlines(enqueue, [context.inFlight]);
      enqueue.assign({ lastActivityAt: at, inFlight: null });
    }),
    timeOutQueued: enqueueActions(({ context, enqueue }, { commandId, timeoutMs }: { commandId: string; timeoutMs: number; at: number }) => {
      const due = context.queue.find((queued) => queued.commandId === commandId);
      if (due === undefined) return;
      enqueue.emit({
        type: "prompt.failed",
        sessionId: context.sessionId,
        requestId: due.requestId,
        commandId,
        error: timeoutError(timeoutMs),
        started: false,
      });
      disarmDeadlines(enqueue, [due]);
      enqueue.assign({ queue: context.queue.filter((queued) => queued !== due) });
    }),
    rejectDuplicate: emit(({ context }, { request }: { request: PendingPrompt }) =>
      rejectPrompt(context, request, rejection("CONFIG", `requestId: ${request.requestId} is already pending in this session`, true)),
    ),
    rejectBusy: emit(({ context }, { request }: { request: PendingPrompt }) =>
      rejectPrompt(context, request, rejection("BUSY", `Session is busy: ${context.maxQueuedPrompts} prompts already queued`, true, true)),
    ),
    rejectOnFailedSession: emit(({ context }, { request }: { request: PendingPrompt }) =>
      rejectPrompt(context, request, rejection(context.error?.type ?? "INTERNAL", context.error?.message ?? "Session failed", false)),
    ),
    cancelInFlight: enqueueActions(({ context, enqueue }, { cancelCommandId, at }: { cancelCommandId: string; at: number }) => {
      if (context.inFlight === null) return;
      enqueue.emit({
        type: "prompt.cancelled",
        sessionId: context.sessionId,
        requestId: context.inFlight.requestId,
        commandId: context.inFlight.commandId,
        cause: "cancel",
        inFlight: true,
        cancelCommandId,
      });
      disarmDeadlines(enqueue, [context.inFlight]);
      enqueue.assign({ inFlight: null, lastActivityAt: at });
    }),
    cancelQueued: enqueueActions(({ context, enqueue }, { cancelCommandId, requestId }: { cancelCommandId: string; requestId?: string }) => {
      const cancelled = context.queue.find((queued) => queued.requestId === requestId);
      if (cancelled === undefined) return;
      enqueue.emit({
        type: "prompt.cancelled",
        sessionId: context.sessionId,
        requestId: cancelled.requestId,
        commandId: cancelled.commandId,
        cause: "cancel",
        inFlight: false,
        cancelCommandId,
      });
      disarmDeadlines(enqueue, [cancelled]);
      enqueue.assign({ queue: context.queue.filter((queued) => queued !== cancelled) });
    }),
    rejectCancel: emit(({ context }, { cancelCommandId, requestId }: { cancelCommandId: string; requestId?: string }) => ({
      type: "cancel.rejected" as const,
      sessionId: context.sessionId,
      commandId: cancelCommandId,
      error: rejection("NOT_FOUND", requestId === undefined ? "No prompt in flight" : `Request not found: ${requestId}`, context.error === null),
    })),
    release: enqueueActions(({ context, enqueue }, params: { reason: Exclude<SessionCloseReason, "failed"> }) => {
      const cause = params.reason;
      const pending = pendingOf(context);
      pending.forEach((request, index) =>
        enqueue.emit({
          type: "prompt.cancelled",
          sessionId: context.sessionId,
          requestId: request.requestId,
          commandId: request.commandId,
          cause,
          inFlight: index === 0 && context.inFlight !== null,
        }),
      );
      disarmDeadlines(enqueue, pending);
      enqueue.assign({ inFlight: null, queue: [], releaseReason: params.reason });
    }),
    // Separate from `release` and named, so that a graph traversal without a parent can provide a no-op.
    askParentToDelete: sendParent(
      ({ context }) =>
        ({
          type: "SESSION.RELEASE" as const,
          session: infoOf(context),
          reason: context.releaseReason ?? "closed",
        }) satisfies SessionReleaseEvent,
    ),
  },
}).createMachine({
  id: "session",
  // Every field named, none spread: V8 then keeps them all inside the object (a spread put most of them in a
  // second array), and a literal that starts with a spread is slow to build (about 10 µs here).
  context: ({ input }) => ({
    sessionId: input.sessionId,
    agentId: input.agentId,
    metadata: input.metadata,
    shardId: input.shardId,
    createdAt: input.createdAt,
    ttlMs: input.ttlMs,
    idleMs: input.idleMs,
    maxQueuedPrompts: input.maxQueuedPrompts,
    historyWindow: input.historyWindow,
    lastActivityAt: input.createdAt,
    inFlight: null,
    queue: NO_PROMPTS,
    history: [],
    usage: NO_USAGE,
    error: null,
    releaseReason: null,
  }),
  initial: "active",
  on: {
    CLOSE: { actions: [{ type: "release", params: ({ event }) => ({ reason: event.reason }) }, "askParentToDelete"] },
  },
  after: {
    sessionTtl: { guard: "ttlEnabled", actions: expire },
  },
  states: {
    active: {
      description: "Created; no prompt sent yet.",
      on: {
        PROMPT: {
          target: "busy",
          actions: [
            { type: "accept", params: promptOf },
            { type: "armDeadline", params: promptOf },
          ],
        },
        CANCEL: { actions: { type: "rejectCancel", params: cancelOf } },
        FAIL: { target: "failed", actions: { type: "failSession", params: failureOf } },
      },
      after: {
        sessionIdle: { guard: "idleEnabled", actions: expire },
      },
    },
    busy: {
      description: "A prompt is in flight; more prompts queue up. A prompt whose deadline comes fails with TIMEOUT.",
      entry: "announceStart",
      invoke: {
        id: "prompt",
        src: "runPrompt",
        // Fields named rather than spread: V8 gives a literal that adds fields after a spread a hidden class of its own.
        input: ({ context }) => ({
          sessionId: context.sessionId,
          agentId: context.agentId,
          metadata: context.metadata,
          request: context.inFlight ?? { requestId: "", commandId: "", prompt: "" },
          history: context.history,
        }),
        onDone: [
          { guard: "hasQueued", target: "busy", reenter: true, actions: [{ type: "complete", params: ({ event }) => event.output }, "startNext"] },
          { target: "idle", actions: { type: "complete", params: ({ event }) => event.output } },
        ],
        onError: [
          { guard: "isUnrecoverable", target: "failed", actions: { type: "failSession", params: promptFailureOf } },
          {
            guard: "hasQueued",
            target: "busy",
            reenter: true,
            actions: [{ type: "failTransiently", params: promptFailureOf }, "startNext"],
          },
          { target: "idle", actions: { type: "failTransiently", params: promptFailureOf } },
        ],
      },
      on: {
        PROMPT: [
          { guard: "isDuplicateRequest", actions: { type: "rejectDuplicate", params: promptOf } },
          { guard: "queueFull", actions: { type: "rejectBusy", params: promptOf } },
          {
            actions: [
              { type: "enqueue", params: promptOf },
              { type: "armDeadline", params: promptOf },
            ],
          },
        ],
        CANCEL: [
          {
            guard: and(["targetsInFlight", "hasQueued"]),
            target: "busy",
            reenter: true,
            actions: [{ type: "cancelInFlight", params: cancelOf }, "startNext"],
          },
          { guard: "targetsInFlight", target: "idle", actions: { type: "cancelInFlight", params: cancelOf } },
          { guard: "targetsQueued", actions: { type: "cancelQueued", params: cancelOf } },
          { actions: { type: "rejectCancel", params: cancelOf } },
        ],
        // Leaving `busy` stops the invoked prompt, whose signal aborts: the agent stops, and its answer is dropped.
        "PROMPT.DEADLINE": [
          {
            guard: and(["inFlightIsDue", "hasQueued"]),
            target: "busy",
            reenter: true,
            actions: [{ type: "timeOutInFlight", params: deadlineOf }, "startNext"],
          },
          { guard: "inFlightIsDue", target: "idle", actions: { type: "timeOutInFlight", params: deadlineOf } },
          { guard: "queuedIsDue", actions: { type: "timeOutQueued", params: deadlineOf } },
        ],
        FAIL: { target: "failed", actions: { type: "failSession", params: failureOf } },
      },
    },
    idle: {
      description: "The last prompt is done; ready for the next.",
      on: {
        PROMPT: {
          target: "busy",
          actions: [
            { type: "accept", params: promptOf },
            { type: "armDeadline", params: promptOf },
          ],
        },
        CANCEL: { actions: { type: "rejectCancel", params: cancelOf } },
        FAIL: { target: "failed", actions: { type: "failSession", params: failureOf } },
      },
      after: {
        sessionIdle: { guard: "idleEnabled", actions: expire },
      },
    },
    failed: {
      description: "An unrecoverable error; every prompt fails with it until the session is closed.",
      on: {
        PROMPT: { actions: { type: "rejectOnFailedSession", params: promptOf } },
        CANCEL: { actions: { type: "rejectCancel", params: cancelOf } },
      },
      after: {
        sessionIdle: { guard: "idleEnabled", actions: expire },
      },
    },
  },
});

/** The state values of a session. */
export type SessionStatus = "active" | "busy" | "idle" | "failed";
