/**
 * The session machine: one bridge session, from creation until it is deleted.
 *
 * States are exactly `active` (created, nothing sent), `busy` (a prompt in flight), `idle` (ready) and
 * `failed` (unrecoverable). Closing or expiring a session is not a state: the session cancels what it still
 * holds and asks its parent to delete it (`SESSION.RELEASE`). The prompt itself runs in the `runPrompt`
 * actor that the runtime provides; time enters only through events (`at`) and XState delays, so the machine
 * stays pure and walkable by `@xstate/graph`.
 */
import { and, assign, emit, enqueueActions, fromPromise, sendParent, setup, type DoneActorEvent, type ErrorActorEvent } from "xstate";

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
  timeoutMs?: number;
  /** When the prompt times out (epoch ms), counted from its acceptance: time spent queued counts. */
  deadlineAt?: number;
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

/** The unrecoverable failure an event carries: a prompt's error, or a `FAIL` from the runtime. */
function failureOf(event: SessionEvent): RunPromptFailure | undefined {
  if (event.type === "xstate.error.actor.prompt") return event.error;
  if (event.type === "FAIL") return { ...event.error, at: event.at };
  return undefined;
}

function requestIdOf(event: SessionEvent): string {
  return event.type === "PROMPT" ? event.request.requestId : "";
}

function rejectPrompt(context: SessionContext, event: SessionEvent, error: PromptError) {
  return {
    type: "prompt.failed" as const,
    sessionId: context.sessionId,
    requestId: requestIdOf(event),
    commandId: event.type === "PROMPT" ? event.request.commandId : "",
    started: false,
    error,
  };
}

function infoOf(context: SessionContext): SessionInfo {
  return { sessionId: context.sessionId, agentId: context.agentId, metadata: context.metadata };
}

function isPending(context: SessionContext, requestId: string): boolean {
  return context.inFlight?.requestId === requestId || context.queue.some((queued) => queued.requestId === requestId);
}

function appendHistory(context: SessionContext, reply: PromptReply): HistoryMessage[] {
  const prompt = context.inFlight?.prompt ?? "";
  const history = [...context.history, { role: "user" as const, content: prompt }, { role: "assistant" as const, content: reply.text }];
  return history.length > context.historyWindow ? history.slice(history.length - context.historyWindow) : history;
}

/** What an expiry does: cancel what is pending, then ask to be deleted. */
const expire = [{ type: "release", params: { reason: "expired" } }, "askParentToDelete"] as const;

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
  guards: {
    ttlEnabled: ({ context }) => context.ttlMs > 0,
    idleEnabled: ({ context }) => context.idleMs > 0,
    hasQueued: ({ context }) => context.queue.length > 0,
    isDuplicateRequest: ({ context, event }) => event.type === "PROMPT" && isPending(context, event.request.requestId),
    queueFull: ({ context }) => context.queue.length >= context.maxQueuedPrompts,
    targetsInFlight: ({ context, event }) =>
      event.type === "CANCEL" && (event.requestId === undefined || event.requestId === context.inFlight?.requestId),
    targetsQueued: ({ context, event }) =>
      event.type === "CANCEL" && context.queue.some((queued) => queued.requestId === event.requestId),
    isUnrecoverable: ({ event }) => event.type === "xstate.error.actor.prompt" && event.error.sessionValid === false,
  },
  actions: {
    accept: assign(({ event }) => {
      if (event.type !== "PROMPT") return {};
      return { inFlight: event.request, lastActivityAt: event.at };
    }),
    enqueue: assign(({ context, event }) => {
      if (event.type !== "PROMPT") return {};
      return { queue: [...context.queue, event.request], lastActivityAt: event.at };
    }),
    startNext: assign(({ context }) => ({ inFlight: context.queue[0] ?? null, queue: context.queue.slice(1) })),
    announceStart: emit(({ context }) => ({
      type: "prompt.started" as const,
      sessionId: context.sessionId,
      requestId: context.inFlight?.requestId ?? "",
      commandId: context.inFlight?.commandId ?? "",
    })),
    complete: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "xstate.done.actor.prompt" || context.inFlight === null) return;
      const { reply, at } = event.output;
      const { requestId, commandId } = context.inFlight;
      enqueue.emit({ type: "prompt.completed", sessionId: context.sessionId, requestId, commandId, reply });
      enqueue.assign({
        history: appendHistory(context, reply),
        usage: {
          inputTokens: context.usage.inputTokens + (reply.usage?.inputTokens ?? 0),
          outputTokens: context.usage.outputTokens + (reply.usage?.outputTokens ?? 0),
        },
        lastActivityAt: at,
        inFlight: null,
      });
    }),
    failTransiently: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "xstate.error.actor.prompt" || context.inFlight === null) return;
      const { at, ...error } = event.error;
      const { requestId, commandId } = context.inFlight;
      enqueue.emit({ type: "prompt.failed", sessionId: context.sessionId, requestId, commandId, error, started: true });
      enqueue.assign({ lastActivityAt: at, inFlight: null });
    }),
    failSession: enqueueActions(({ context, event, enqueue }) => {
      const failure = failureOf(event);
      if (failure === undefined) return;
      const { at, ...error } = failure;
      const pending = context.inFlight === null ? context.queue : [context.inFlight, ...context.queue];
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
      enqueue.assign({
        lastActivityAt: at,
        inFlight: null,
        queue: [],
        error: { type: error.type, message: error.message },
      });
    }),
    rejectDuplicate: emit(({ context, event }) => rejectPrompt(context, event, rejection("CONFIG", `requestId: ${requestIdOf(event)} is already pending in this session`, true))),
    rejectBusy: emit(({ context, event }) =>
      rejectPrompt(context, event, rejection("BUSY", `Session is busy: ${context.maxQueuedPrompts} prompts already queued`, true, true)),
    ),
    rejectOnFailedSession: emit(({ context, event }) =>
      rejectPrompt(context, event, rejection(context.error?.type ?? "INTERNAL", context.error?.message ?? "Session failed", false)),
    ),
    cancelInFlight: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "CANCEL" || context.inFlight === null) return;
      enqueue.emit({
        type: "prompt.cancelled",
        sessionId: context.sessionId,
        requestId: context.inFlight.requestId,
        commandId: context.inFlight.commandId,
        cause: "cancel",
        inFlight: true,
        cancelCommandId: event.commandId,
      });
      enqueue.assign({ inFlight: null, lastActivityAt: event.at });
    }),
    cancelQueued: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "CANCEL" || event.requestId === undefined) return;
      const cancelled = context.queue.find((queued) => queued.requestId === event.requestId);
      if (cancelled === undefined) return;
      enqueue.emit({
        type: "prompt.cancelled",
        sessionId: context.sessionId,
        requestId: cancelled.requestId,
        commandId: cancelled.commandId,
        cause: "cancel",
        inFlight: false,
        cancelCommandId: event.commandId,
      });
      enqueue.assign({ queue: context.queue.filter((queued) => queued !== cancelled) });
    }),
    rejectCancel: emit(({ context, event }) => {
      const cancel = event.type === "CANCEL" ? event : { commandId: "", requestId: undefined };
      const message =
        cancel.requestId === undefined ? "No prompt in flight" : `Request not found: ${cancel.requestId}`;
      return {
        type: "cancel.rejected" as const,
        sessionId: context.sessionId,
        commandId: cancel.commandId,
        error: rejection("NOT_FOUND", message, context.error === null),
      };
    }),
    release: enqueueActions(({ context, enqueue }, params: { reason: Exclude<SessionCloseReason, "failed"> }) => {
      const cause = params.reason;
      const pending = context.inFlight === null ? context.queue : [context.inFlight, ...context.queue];
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
      enqueue.assign({ inFlight: null, queue: [], releaseReason: params.reason });
    }),
    // Separate from `release` and named, so that a graph traversal without a parent can provide a no-op.
    askParentToDelete: sendParent(({ context }) => ({
      type: "SESSION.RELEASE" as const,
      session: infoOf(context),
      reason: context.releaseReason ?? "closed",
    }) satisfies SessionReleaseEvent),
  },
}).createMachine({
  id: "session",
  context: ({ input }) => ({
    ...input,
    lastActivityAt: input.createdAt,
    inFlight: null,
    queue: [],
    history: [],
    usage: { inputTokens: 0, outputTokens: 0 },
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
        PROMPT: { target: "busy", actions: "accept" },
        CANCEL: { actions: "rejectCancel" },
        FAIL: { target: "failed", actions: "failSession" },
      },
      after: {
        sessionIdle: { guard: "idleEnabled", actions: expire },
      },
    },
    busy: {
      description: "A prompt is in flight; more prompts queue up.",
      entry: "announceStart",
      invoke: {
        id: "prompt",
        src: "runPrompt",
        input: ({ context }) => ({
          ...infoOf(context),
          request: context.inFlight ?? { requestId: "", commandId: "", prompt: "" },
          history: context.history,
        }),
        onDone: [
          { guard: "hasQueued", target: "busy", reenter: true, actions: ["complete", "startNext"] },
          { target: "idle", actions: "complete" },
        ],
        onError: [
          { guard: "isUnrecoverable", target: "failed", actions: "failSession" },
          { guard: "hasQueued", target: "busy", reenter: true, actions: ["failTransiently", "startNext"] },
          { target: "idle", actions: "failTransiently" },
        ],
      },
      on: {
        PROMPT: [
          { guard: "isDuplicateRequest", actions: "rejectDuplicate" },
          { guard: "queueFull", actions: "rejectBusy" },
          { actions: "enqueue" },
        ],
        CANCEL: [
          { guard: and(["targetsInFlight", "hasQueued"]), target: "busy", reenter: true, actions: ["cancelInFlight", "startNext"] },
          { guard: "targetsInFlight", target: "idle", actions: "cancelInFlight" },
          { guard: "targetsQueued", actions: "cancelQueued" },
          { actions: "rejectCancel" },
        ],
        FAIL: { target: "failed", actions: "failSession" },
      },
    },
    idle: {
      description: "The last prompt is done; ready for the next.",
      on: {
        PROMPT: { target: "busy", actions: "accept" },
        CANCEL: { actions: "rejectCancel" },
        FAIL: { target: "failed", actions: "failSession" },
      },
      after: {
        sessionIdle: { guard: "idleEnabled", actions: expire },
      },
    },
    failed: {
      description: "An unrecoverable error; every prompt fails with it until the session is closed.",
      on: {
        PROMPT: { actions: "rejectOnFailedSession" },
        CANCEL: { actions: "rejectCancel" },
      },
      after: {
        sessionIdle: { guard: "idleEnabled", actions: expire },
      },
    },
  },
});

/** The state values of a session. */
export type SessionStatus = "active" | "busy" | "idle" | "failed";
