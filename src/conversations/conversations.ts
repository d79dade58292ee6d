/**
 * Conversations (SPEC §4): `runtime.converse({ userId, threadId, text })` routes a user's message to an agent
 * and answers through that agent's conversation, an actor of `machines/conversation.machine.ts` in the
 * supervisor's `pool:conversation`. This module is the owner of those actors: it decides which agent and which
 * conversation take a message, spawns conversations, performs their effects (a bridge session opened,
 * prompted and closed through the runtime) and turns what they emit into the answers of `converse`.
 *
 * Which agent answers (docs/conversations.md):
 * 1. the first agent the message mentions as `@<agentId>` (an inlined agent's mention is the agent it is in);
 * 2. else the conversation of this user that took the thread's latest turn, while it lives (a follow-up);
 * 3. else the first agent whose trigger is `always`: the default agent first (its trigger defaults to
 *    `always`), then the others in the runtime's order; with none, NOT_FOUND.
 * Which conversation: one per user and agent (`isolation: shared`), or per user, agent and thread
 * (`per_thread`); its system id says which (`conversation:<agent>:<user>[:<thread>]`), so nothing outside the
 * actors indexes them.
 */
import { randomUUID } from "node:crypto";
import { fromPromise, type ActorRefFrom, type AnyActorRef } from "xstate";
import { z } from "zod";
import {
  conversationMachine,
  type ConversationEmitted,
  type ConversationEvent,
  type ConversationInput,
  type ConversationStatus,
  type ConversationTurn,
  type OpenedSession,
  type OpenSessionInput,
  type RunTurnInput,
  type TurnAnswer,
} from "../../machines/conversation.machine.js";
import type { PoolChildEnding } from "../../machines/pool-shard.machine.js";
import type { SessionInfo } from "../../machines/session.machine.js";
import type { ConversationSettings } from "../agents/agent.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { bridgeErrorOf, failure } from "../runtime/prompt-errors.js";
import type { CapabilityStates } from "../runtime/prompt-scope.js";
import { Replies } from "../runtime/replies.js";
import type { PoolHost, RestoredSession, Runtime } from "../runtime/runtime.js";
import { DISGUISING_CHARACTERS } from "../protocol/envelope.js";
import { parseWith } from "../validation.js";
import { firstMention } from "./mentions.js";
import { resolveSettings, type ResolvedConversationSettings } from "./settings.js";

/** Longest user or thread id. */
const MAX_ID_LENGTH = 256;
/** Threads one conversation remembers for follow-ups (a shared one may be reached from many). */
const MAX_THREADS_PER_CONVERSATION = 64;
/** Largest capability state of one conversation, as JSON in UTF-8 bytes. */
const MAX_CAPABILITY_STATE_BYTES = 64 * 1024;
/** The thread of a message that names none. */
export const DEFAULT_THREAD_ID = "default";

// Like every other id: control characters and bidirectional overrides would disguise one user as another in
// listings, logs and the memory tools (which key on userId).
const userOrThreadId = z
  .string()
  .min(1)
  .max(MAX_ID_LENGTH)
  .refine((value) => !DISGUISING_CHARACTERS.test(value), "must not contain control characters or bidirectional overrides");

/** What `converse` takes (validated: CONFIG naming the field). */
export const converseRequestSchema = z.strictObject({
  userId: userOrThreadId.describe("Who writes: memory and shared conversations are per user"),
  threadId: userOrThreadId.optional().describe(`The thread the message is in; default "${DEFAULT_THREAD_ID}"`),
  text: z.string().min(1).describe("The message; `@<agentId>` addresses an agent"),
});

/** A user's message to the runtime's agents. */
export type ConverseRequest = z.input<typeof converseRequestSchema>;

/** The answer to a message: the agent that answered, its bridge session, its text, and the agents it handed work to. */
export interface ConverseResult {
  agentId: string;
  sessionId: string;
  text: string;
  /**
   * The agents the answering agent handed work to while it answered, in the order of their first answer: every
   * `ctx.ask` of its prompt that was answered (the built-in `delegate_to_agent` tool asks through it).
   */
  handoffs: string[];
}

/** How a server bounds the conversations one client starts (`POST /converse`). */
export interface ConversationOwner {
  /** Throws (CAPACITY) when the client may start no more conversations; called only before a new one starts. */
  mayStart(): void;
  /** A conversation the client started. */
  started(conversationId: string): void;
}

/** Options of `converse` for servers. */
export interface ConverseOptions {
  owner?: ConversationOwner;
}

/** A conversation as `runtime.conversation(sessionId)` shows it. */
export interface ConversationView {
  conversationId: string;
  userId: string;
  agentId: string;
  isolation: ResolvedConversationSettings["isolation"];
  /** The thread of a `per_thread` conversation. */
  threadId?: string;
  status: ConversationStatus;
  sessionId: string | null;
  /** The threads it took turns from, the most recent last. */
  threads: string[];
  /** Turns waiting behind the one being answered. */
  queued: number;
  /** Each capability's state, as the model's tools wrote it (`capability_state_set`). */
  capabilityState: Record<string, unknown>;
  lastActivityAt: number;
  /** When it ends unless a turn comes first (while `ready`). */
  expiresAt?: number;
}

type ConversationActor = ActorRefFrom<typeof conversationMachine>;

/** The system id of a conversation: per agent and user, and per thread when `threadId` is given (`per_thread`). */
export function conversationIdOf(agentId: string, userId: string, threadId: string | null): string {
  const parts = [agentId, userId, ...(threadId === null ? [] : [threadId])];
  return `conversation:${parts.map(encodeURIComponent).join(":")}`;
}

/** The conversation id a bridge session was opened for, from its metadata. */
function conversationIdOfSession(session: Pick<SessionInfo, "metadata">): string | undefined {
  const { conversationId: id } = session.metadata;
  return typeof id === "string" ? id : undefined;
}

/** What the runtime tells its conversations. */
export interface ConversationsOptions {
  /** Each in-process agent's checked settings (agents without settings use the defaults). */
  settings: ReadonlyMap<string, ConversationSettings>;
  /** Every agent of the runtime, in its order (in-process ones first). */
  agentIds(): string[];
  /** The agent each inlined agent is merged into (`Agent.inlined`): a mention of one addresses that agent. */
  inlinedInto: ReadonlyMap<string, string>;
  /** A live bridge session's metadata. */
  sessionMetadata(sessionId: string): Record<string, unknown> | undefined;
}

/** The owner of a runtime's conversations. */
export class Conversations implements PoolHost, CapabilityStates {
  /** The conversation machine with its effects: what the pool spawns. */
  readonly logic: typeof conversationMachine;
  private readonly replies = new Replies();
  /** The agents each turn in flight was handed to, by its request id (the turn's id). */
  private readonly handoffs = new Map<string, string[]>();
  private turns = 0;

  constructor(
    private readonly runtime: Runtime,
    private readonly options: ConversationsOptions,
  ) {
    this.logic = conversationMachine.provide({
      actors: {
        openSession: fromPromise<OpenedSession, OpenSessionInput>(({ input }) => this.openSession(input)),
        runTurn: fromPromise<TurnAnswer, RunTurnInput>(({ input, signal }) => this.runTurn(input, signal)),
        closeSession: fromPromise<void, { sessionId: string | null }>(({ input }) => this.closeSession(input.sessionId)),
      },
    });
  }

  /** `runtime.converse`: routes the message, hands it to its conversation, and resolves with the answer. */
  async converse(request: ConverseRequest, options: ConverseOptions = {}): Promise<ConverseResult> {
    const { userId, threadId = DEFAULT_THREAD_ID, text } = parseWith(converseRequestSchema, request, "(arguments)");
    const { maxPromptBytes } = this.runtime.limits;
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes > maxPromptBytes) {
      throw new BridgeError("CONFIG", `text: ${bytes} bytes exceeds maxPromptBytes ${maxPromptBytes}`, {
        field: "text",
        limitBytes: maxPromptBytes,
        actualBytes: bytes,
      });
    }
    const agentId = this.route(userId, threadId, text);
    const settings = this.settingsOf(agentId);
    const id = conversationIdOf(agentId, userId, settings.isolation === "per_thread" ? threadId : null);
    this.turns += 1;
    const turn: ConversationTurn = { turnId: randomUUID(), sequence: this.turns, threadId, text };
    // Registered first: a refusal (BUSY) is emitted while the turn is sent.
    const answer = this.replies.wait<ConverseResult>(turn.turnId, id);
    try {
      const live = this.live(id);
      if (live !== undefined) {
        live.send({ type: "TURN", turn, at: this.runtime.clock.now() } satisfies ConversationEvent);
      } else {
        options.owner?.mayStart();
        this.start(id, userId, agentId, settings, threadId, turn);
        options.owner?.started(id);
      }
    } catch (error) {
      this.replies.reject(turn.turnId, toBridgeError(error));
    }
    return answer;
  }

  /** The conversation a bridge session belongs to, while it lives. */
  view(sessionId: string): ConversationView | undefined {
    const metadata = this.options.sessionMetadata(sessionId);
    const id = metadata === undefined ? undefined : conversationIdOfSession({ metadata });
    const snapshot = id === undefined ? undefined : this.live(id)?.getSnapshot();
    if (snapshot === undefined) return undefined;
    const { context } = snapshot;
    const status = snapshot.value;
    return {
      conversationId: context.conversationId,
      userId: context.userId,
      agentId: context.agentId,
      isolation: context.isolation,
      ...(context.threadId === null ? {} : { threadId: context.threadId }),
      status,
      sessionId: context.sessionId,
      threads: context.threads.map((thread) => thread.threadId),
      queued: context.queue.length,
      capabilityState: context.capabilityState,
      lastActivityAt: context.lastActivityAt,
      ...(status === "ready" && context.idleTimeoutMs > 0 ? { expiresAt: context.lastActivityAt + context.idleTimeoutMs } : {}),
    };
  }

  /** Whether a conversation is alive. */
  has(conversationId: string): boolean {
    return this.live(conversationId) !== undefined;
  }

  read(session: SessionInfo): Record<string, unknown> {
    return this.conversationOf(session, "capability state").getSnapshot().context.capabilityState;
  }

  write(session: SessionInfo, capability: string, state: unknown): Record<string, unknown> {
    if (typeof capability !== "string" || capability.length === 0 || capability.length > 64) {
      throw new BridgeError("CONFIG", "capability: a name of 1 to 64 characters", { field: "capability" });
    }
    const conversation = this.conversationOf(session, "capability state");
    const snapshot = conversation.getSnapshot();
    if (snapshot.value !== "answering") {
      throw new BridgeError("CONFIG", `Capability state is written while the conversation answers a turn; it is ${snapshot.value}`, { capability });
    }
    const { [capability]: _previous, ...others } = snapshot.context.capabilityState;
    const next = state === null ? others : { ...others, [capability]: state };
    const bytes = Buffer.byteLength(JSON.stringify(next), "utf8");
    if (bytes > MAX_CAPABILITY_STATE_BYTES) {
      throw new BridgeError("CONFIG", `state: the conversation's capability state would be ${bytes} bytes, over ${MAX_CAPABILITY_STATE_BYTES}`, {
        field: "state",
        limitBytes: MAX_CAPABILITY_STATE_BYTES,
        actualBytes: bytes,
      });
    }
    conversation.send({ type: "CAPABILITY.SET", capability, state } satisfies ConversationEvent);
    return conversation.getSnapshot().context.capabilityState;
  }

  /** The runtime's `ctx.ask` of a prompt was answered: a turn in flight records whom it handed work to. */
  answeredAsk(requestId: string, agentId: string): void {
    const handoffs = this.handoffs.get(requestId);
    if (handoffs === undefined) return;
    const resolved = this.runtime.agentIdOfBusAgent(agentId) ?? agentId;
    if (!handoffs.includes(resolved)) handoffs.push(resolved);
  }

  /**
   * Conversations do not outlive the process (docs/conversations.md): the bridge sessions of conversations that a
   * restart brought back from the store belong to none any more, and are closed.
   */
  async closeRestored(restored: readonly RestoredSession[]): Promise<void> {
    const orphans = restored.filter((session) => conversationIdOfSession(session) !== undefined);
    await Promise.all(orphans.map((session) => this.runtime.closeSession(session.sessionId).catch(() => undefined)));
  }

  /** The runtime stops: turns still waiting are cancelled. */
  stop(): void {
    this.replies.rejectAll(new BridgeError("CANCELLED", "Runtime stopped"));
  }

  // ---- PoolHost: the pool tells its owner what its conversations emit and when one is reaped ----

  emitted(_child: AnyActorRef, event: { type: string }): void {
    const emitted = event as ConversationEmitted;
    if (emitted.type === "turn.answered") {
      const { agentId, sessionId, text, handoffs } = emitted;
      this.replies.resolve(emitted.turnId, { agentId, sessionId, text, handoffs } satisfies ConverseResult);
    } else if (emitted.type === "turn.failed") {
      this.replies.reject(emitted.turnId, bridgeErrorOf(emitted.error));
    }
  }

  released(conversationId: string, ending: PoolChildEnding): void {
    // Every turn is answered before a conversation ends; one that failed takes what is left with it.
    const cause = ending.status === "error" ? `: ${toBridgeError(ending.error).message}` : "";
    this.replies.rejectGroup(
      conversationId,
      new BridgeError(ending.status === "error" ? "INTERNAL" : "CANCELLED", `Conversation ended${cause}`, { conversationId }),
    );
  }

  // ---- routing ----

  private route(userId: string, threadId: string, text: string): string {
    const agentIds = this.options.agentIds();
    const { inlinedInto } = this.options;
    const mentioned = firstMention(text, [...agentIds, ...[...inlinedInto.keys()].filter((id) => !agentIds.includes(id))]);
    if (mentioned !== undefined) return agentIds.includes(mentioned) ? mentioned : inlinedInto.get(mentioned)!;
    const followUp = this.threadOwner(userId, threadId, agentIds);
    if (followUp !== undefined) return followUp;
    const { defaultAgentId } = this.runtime.limits;
    const candidates = defaultAgentId === undefined ? agentIds : [defaultAgentId, ...agentIds.filter((id) => id !== defaultAgentId)];
    const taker = candidates.find((agentId) => this.settingsOf(agentId).trigger === "always");
    if (taker !== undefined) return taker;
    throw new BridgeError("NOT_FOUND", 'No agent takes this message: mention one as @<agentId> (no agent\'s conversation trigger is "always")', {
      field: "text",
    });
  }

  /** The agent of the user's live conversation that took the thread's latest turn. */
  private threadOwner(userId: string, threadId: string, agentIds: string[]): string | undefined {
    let owner: { agentId: string; sequence: number } | undefined;
    for (const agentId of agentIds) {
      const id = conversationIdOf(agentId, userId, this.settingsOf(agentId).isolation === "per_thread" ? threadId : null);
      const thread = this.live(id)
        ?.getSnapshot()
        .context.threads.find((each) => each.threadId === threadId);
      if (thread !== undefined && (owner === undefined || thread.sequence > owner.sequence)) owner = { agentId, sequence: thread.sequence };
    }
    return owner?.agentId;
  }

  private settingsOf(agentId: string): ResolvedConversationSettings {
    return resolveSettings(this.options.settings.get(agentId), agentId === this.runtime.limits.defaultAgentId);
  }

  // ---- the conversation actors ----

  private live(id: string): ConversationActor | undefined {
    const actor = this.runtime.pooledChild(id) as ConversationActor | undefined;
    // An ended conversation is reaped by its shard in the same step as it ends; until then it takes no turn.
    return actor?.getSnapshot().status === "active" ? actor : undefined;
  }

  private start(id: string, userId: string, agentId: string, settings: ResolvedConversationSettings, threadId: string, firstTurn: ConversationTurn): void {
    const input: ConversationInput = {
      conversationId: id,
      userId,
      agentId,
      isolation: settings.isolation,
      threadId: settings.isolation === "per_thread" ? threadId : null,
      idleTimeoutMs: settings.idleTimeoutMs,
      historyWindow: settings.historyWindow,
      maxQueuedTurns: this.runtime.limits.maxQueuedPrompts,
      maxThreads: MAX_THREADS_PER_CONVERSATION,
      firstTurn,
      createdAt: this.runtime.clock.now(),
    };
    this.runtime.spawnPooled("conversation", id, this.logic, input);
  }

  /** The conversation of a session whose tool asks for it; CONFIG when the session belongs to none. */
  private conversationOf(session: SessionInfo, what: string): ConversationActor {
    const id = conversationIdOfSession(session);
    const conversation = id === undefined ? undefined : this.live(id);
    if (conversation === undefined || conversation.getSnapshot().context.sessionId !== session.sessionId) {
      throw new BridgeError("CONFIG", `Session ${session.sessionId} belongs to no conversation: ${what} is kept by conversations (runtime.converse)`, {
        sessionId: session.sessionId,
      });
    }
    return conversation;
  }

  /**
   * Opens the conversation's bridge session. It neither expires nor idles out by itself: the conversation ends
   * it. Its metadata names the user (what the memory tools read) and the conversation.
   */
  private async openSession(input: OpenSessionInput): Promise<OpenedSession> {
    const metadata = { userId: input.userId, conversationId: input.conversationId, ...(input.threadId === null ? {} : { threadId: input.threadId }) };
    try {
      const { sessionId } = await this.runtime.createSession(input.agentId, metadata, { ttlMs: 0, idleMs: 0, historyWindow: input.historyWindow });
      return { sessionId, at: this.runtime.clock.now() };
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- the machine's xstate.error event carries this plain, serializable failure (it is kept in snapshots)
      throw failure(toBridgeError(error), this.runtime.clock.now());
    }
  }

  /** Prompts the session with the turn (its id is the prompt's request id), recording the agents the answer was handed to. */
  private async runTurn({ sessionId, turn }: RunTurnInput, signal: AbortSignal): Promise<TurnAnswer> {
    const requestId = turn.turnId;
    const handoffs: string[] = [];
    this.handoffs.set(requestId, handoffs);
    // The conversation stopped (the runtime stops): the prompt is cancelled with it.
    const cancel = (): void => void this.runtime.cancelPrompt(sessionId, requestId).catch(() => undefined);
    signal.addEventListener("abort", cancel, { once: true });
    try {
      // The prompt starts once the step of the conversation that started it is over (it would start inside it,
      // synchronously): its tools then read and write the conversation's capability state at once, in order.
      await Promise.resolve();
      const { text } = await this.runtime.promptSession(sessionId, { prompt: turn.text, requestId });
      return { text, handoffs: [...handoffs], at: this.runtime.clock.now() };
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- the machine's xstate.error event carries this plain, serializable failure (it is kept in snapshots)
      throw failure(toBridgeError(error), this.runtime.clock.now());
    } finally {
      signal.removeEventListener("abort", cancel);
      this.handoffs.delete(requestId);
    }
  }

  /** Closes the conversation's session; one already gone (closed by a client, or never opened) counts as closed. */
  private async closeSession(sessionId: string | null): Promise<void> {
    if (sessionId === null) return;
    await this.runtime.closeSession(sessionId).catch(() => undefined);
  }
}
