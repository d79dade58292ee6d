/**
 * Model-based tests of the conversation machine: @xstate/graph walks the bare machine; every path is then
 * driven through `runtime.converse` of a real runtime on a simulated clock, whose one agent opens and closes
 * sessions and answers prompts only when the path says so (test/support/gated-agent.ts). After every step the
 * conversation actor (its state, turn in flight, queue, session and capability state), the agent's waiting
 * steps and every turn's answer are checked against the model.
 *
 * How each event is produced for real:
 * - `TURN`: `runtime.converse` from the same user (the first turn is the one that starts the conversation);
 * - `xstate.done.actor.open` / `xstate.error.actor.open`: the agent's `onSessionOpen` resolves / rejects;
 * - `xstate.done.actor.turn` / `xstate.error.actor.turn`: the agent answers / fails the prompt (AUTH with
 *   `sessionValid: false` fails the session, which loses the conversation);
 * - `CAPABILITY.SET`: `writeCapabilityState` called inside the prompt, as the model's tool would;
 * - the idle delay: the clock moves by the idle timeout;
 * - `xstate.done.actor.close`: the agent's `onSessionClose` resolves. A session that failed is closed at once
 *   (its agent heard `failed` already, and no hook runs at its deletion): after the turn that lost it, the real
 *   conversation is already where `xstate.done.actor.close` leads, so the graph offers nothing else there.
 */
import type { StatePath } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { SimulatedClock, transition } from "xstate";
import { conversationMachine, type ConversationEvent, type ConversationInput, type ConversationTurn } from "../../machines/index.js";
import { BridgeError, conversationIdOf, createRuntime, writeCapabilityState, type Runtime } from "../../src/index.js";
import { createGatedAgent, type GatedAgent } from "../support/gated-agent.js";
import { CLOCK_START, settle } from "../conversations/support.js";
import { delayedEventTypes, TransitionCoverage } from "./coverage.js";
import { generatePaths, pathFromEvents } from "./paths.js";
import { walkPaths } from "./suite.js";

const AGENT_ID = "gated";
const USER_ID = "ada";
const IDLE_MS = 60_000;
const CONVERSATION_ID = conversationIdOf(AGENT_ID, USER_ID, null);

type ConversationSnapshot = ReturnType<typeof conversationMachine.transition>;
type ConversationPath = StatePath<ConversationSnapshot, ConversationEvent>;

function turnOf(id: string): ConversationTurn {
  return { turnId: id, sequence: 0, threadId: "default", text: `turn ${id}` };
}

const modelInput: ConversationInput = {
  conversationId: CONVERSATION_ID,
  userId: USER_ID,
  agentId: AGENT_ID,
  isolation: "shared",
  threadId: null,
  idleTimeoutMs: IDLE_MS,
  historyWindow: 30,
  maxQueuedTurns: 1,
  maxThreads: 64,
  firstTurn: turnOf("a"),
  createdAt: 0,
};

const IDLE_EVENT = delayedEventTypes(conversationMachine)["conversation.ready"]![0]!;
const DONE_OPEN: ConversationEvent = { type: "xstate.done.actor.open", actorId: "open", output: { sessionId: "session", at: 0 } };
const ERROR_OPEN: ConversationEvent = {
  type: "xstate.error.actor.open",
  actorId: "open",
  error: { type: "UPSTREAM", message: "cannot open", retryable: true, sessionValid: true, at: 0 },
};
const TRANSIENT: ConversationEvent = {
  type: "xstate.error.actor.turn",
  actorId: "turn",
  error: { type: "UPSTREAM", message: "provider is down", retryable: true, sessionValid: true, at: 0 },
};
const FATAL: ConversationEvent = {
  type: "xstate.error.actor.turn",
  actorId: "turn",
  error: { type: "AUTH", message: "invalid key", retryable: false, sessionValid: false, at: 0 },
};
const DONE_CLOSE: ConversationEvent = { type: "xstate.done.actor.close", actorId: "close", output: undefined };
const SET_FLOW: ConversationEvent = { type: "CAPABILITY.SET", capability: "flow", state: { step: 2 } };
const CLEAR_FLOW: ConversationEvent = { type: "CAPABILITY.SET", capability: "flow", state: null };

function pendingIds(snapshot: ConversationSnapshot): string[] {
  const { inFlight, queue } = snapshot.context;
  return [...(inFlight ? [inFlight.turnId] : []), ...queue.map((queued) => queued.turnId)];
}

/** Every turn of the graph has its own id (the first is `a`): a path's turns never share one. */
let turnsMade = 0;

/** The events that can really happen in a state (see the head of this file). */
function eventsFor(snapshot: ConversationSnapshot): ConversationEvent[] {
  const { context } = snapshot;
  turnsMade += 1;
  const turn: ConversationEvent = { type: "TURN", turn: turnOf(`t${turnsMade}`), at: 0 };
  switch (snapshot.value) {
    case "opening":
      return [turn, DONE_OPEN, ERROR_OPEN];
    case "answering": {
      const answer: ConversationEvent = { type: "xstate.done.actor.turn", actorId: "turn", output: { text: "answer", handoffs: [], at: 0 } };
      return [turn, answer, TRANSIENT, FATAL, SET_FLOW, CLEAR_FLOW];
    }
    case "ready":
      return [turn, { type: IDLE_EVENT } as unknown as ConversationEvent];
    case "closing":
      return context.endReason === "failed" ? [DONE_CLOSE] : [turn, DONE_CLOSE];
    default:
      return [];
  }
}

/**
 * A state of the graph counts turns rather than naming them, and says whether a capability state is set: the
 * steps of a path are replayed from its events (`pathFromEvents`) before it is driven, so its states are exact.
 */
function serializeState(snapshot: ConversationSnapshot): string {
  const { context } = snapshot;
  return JSON.stringify([
    snapshot.value,
    context.inFlight !== null,
    context.queue.length,
    context.sessionId !== null,
    "flow" in context.capabilityState,
    context.endReason,
  ]);
}

/** Turns differ only by their id: one edge per state. */
function serializeEvent(event: ConversationEvent): string {
  return event.type === "TURN" ? "TURN" : JSON.stringify(event);
}

const traversal = { input: modelInput, events: eventsFor, serializeState, serializeEvent };
const { shortest, simple, edges } = generatePaths(conversationMachine, traversal);

function describePath(path: ConversationPath): string {
  return (
    path.steps
      .slice(1)
      .map(({ event }) => {
        if (event.type === "TURN") return `TURN(${event.turn.turnId})`;
        if (event.type === "CAPABILITY.SET") return event.state === null ? "CLEAR" : "SET";
        if (event.type === "xstate.error.actor.turn") return `TURN.ERROR(${event.error.type})`;
        if (event.type.startsWith("xstate.after.")) return "IDLE";
        return event.type.replace(
          /^xstate\.(done|error)\.actor\.(\w+)$/,
          (_all, kind: string, actor: string) => `${actor.toUpperCase()}.${kind.toUpperCase()}`,
        );
      })
      .join(" → ") || "(initial)"
  );
}

/** A turn's answer as it settles. */
interface Tracked {
  state: "pending" | "fulfilled" | "rejected";
  text?: string;
  errorType?: string;
}

function track(promise: Promise<{ text: string }>): Tracked {
  const tracked: Tracked = { state: "pending" };
  promise.then(
    (answer) => Object.assign(tracked, { state: "fulfilled", text: answer.text }),
    (error: { type?: string }) => Object.assign(tracked, { state: "rejected", errorType: error.type }),
  );
  return tracked;
}

/** What the turns that left the conversation in `event` must have become. */
function outcomeOf(event: ConversationEvent): { state: Tracked["state"]; errorType?: string } {
  if (event.type === "xstate.done.actor.turn") return { state: "fulfilled" };
  if (event.type === "xstate.error.actor.turn" || event.type === "xstate.error.actor.open") return { state: "rejected", errorType: event.error.type };
  return { state: "rejected", errorType: "BUSY" };
}

const coverage = new TransitionCoverage();

/** Stops the runtime, letting every step the agent holds go (a held close would keep the stop waiting for its hook). */
async function shutDown(runtime: Runtime, gated: GatedAgent): Promise<void> {
  let stopped = false;
  const stopping = runtime.stop().then(() => {
    stopped = true;
  });
  while (!stopped) {
    for (const close of [...gated.closes]) close.resolve();
    for (const open of [...gated.opens]) open.reject(new BridgeError("CANCELLED", "the test is over"));
    await settle();
  }
  await stopping;
}

/** The real conversation, compared with the model's `expected` state. */
function expectConversation(runtime: Runtime, gated: GatedAgent, expected: ConversationSnapshot, label: string): void {
  const actor = runtime.pooledChild(CONVERSATION_ID);
  if (expected.value === "ended") {
    expect(actor, `${label}: the ended conversation was reaped`).toBeUndefined();
    expect(gated.prompts.length + gated.opens.length + gated.closes.length, `${label}: nothing waits`).toBe(0);
    return;
  }
  const real = (actor?.getSnapshot() ?? {}) as ConversationSnapshot;
  const { context } = expected;
  expect(real.value, label).toBe(expected.value);
  expect(real.context.inFlight?.text, `${label}: turn in flight`).toBe(context.inFlight?.text);
  expect(
    real.context.queue.map((turn) => turn.text),
    `${label}: queue`,
  ).toEqual(context.queue.map((turn) => turn.text));
  expect(real.context.capabilityState, `${label}: capability state`).toEqual(context.capabilityState);
  expect(real.context.sessionId !== null, `${label}: has a session`).toBe(context.sessionId !== null);
  // What the agent holds: the open, the prompt of the turn in flight, or the close.
  expect(gated.opens.length, `${label}: opens waiting`).toBe(expected.value === "opening" ? 1 : 0);
  expect(
    gated.prompts.map((prompt) => prompt.ctx.prompt),
    `${label}: prompts waiting`,
  ).toEqual(expected.value === "answering" ? [context.inFlight!.text] : []);
  expect(gated.closes.length, `${label}: closes waiting`).toBe(expected.value === "closing" ? 1 : 0);
  if (expected.value === "answering" || expected.value === "ready") {
    expect(runtime.hasSession(real.context.sessionId!), `${label}: its session lives`).toBe(true);
    expect(runtime.conversation(real.context.sessionId!)?.status, `${label}: runtime.conversation`).toBe(expected.value);
  }
}

async function runPath(graphPath: ConversationPath): Promise<void> {
  const path = pathFromEvents(
    conversationMachine,
    graphPath.steps.slice(1).map((step) => step.event),
    modelInput,
  );
  const clock = new SimulatedClock();
  clock.set(CLOCK_START);
  const gated = createGatedAgent(AGENT_ID);
  gated.agent.conversation = { idleTimeoutMinutes: IDLE_MS / 60_000 };
  const runtime = createRuntime({ agents: [gated.agent], defaultAgentId: AGENT_ID, maxQueuedPrompts: 1, clock, inspect: coverage.inspect });
  await runtime.start();
  const turns = new Map<string, Tracked>();
  const converse = (turn: ConversationTurn): Tracked => track(runtime.converse({ userId: USER_ID, text: turn.text }));
  try {
    turns.set("a", converse(modelInput.firstTurn));
    await settle();
    expectConversation(runtime, gated, path.steps[0]!.state, "initial");

    for (let index = 1; index < path.steps.length; index += 1) {
      const before = path.steps[index - 1]!.state;
      const { event, state: after } = path.steps[index]!;
      const label = `step ${index}: ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;
      let refused: Tracked | undefined;

      switch (event.type) {
        case "TURN": {
          const tracked = converse(event.turn);
          if (pendingIds(after).includes(event.turn.turnId)) turns.set(event.turn.turnId, tracked);
          else refused = tracked;
          break;
        }
        case "xstate.done.actor.open":
          gated.opens[0]!.resolve();
          break;
        case "xstate.error.actor.open":
          gated.opens[0]!.reject(new BridgeError("UPSTREAM", event.error.message));
          break;
        case "xstate.done.actor.turn":
          gated.prompts[0]!.reply(`answer ${before.context.inFlight!.turnId}`);
          break;
        case "xstate.error.actor.turn":
          gated.prompts[0]!.fail(new BridgeError(event.error.type as "AUTH", event.error.message, { sessionValid: event.error.sessionValid }));
          break;
        case "CAPABILITY.SET": {
          const held = gated.prompts[0]!;
          held.inPrompt(() => writeCapabilityState(held.ctx, event.capability, event.state));
          break;
        }
        case "xstate.done.actor.close":
          // A failed session was closed at once, with the turn that lost it.
          if (before.context.endReason === "idle") gated.closes[0]!.resolve();
          break;
        default:
          clock.increment(IDLE_MS);
      }
      await settle();

      if (refused !== undefined) expect(refused, `${label}: refused`).toMatchObject({ state: "rejected", errorType: "BUSY" });
      const settledAt = after.value === "closing" && after.context.endReason === "failed" ? transition(conversationMachine, after, DONE_CLOSE)[0] : after;
      for (const turnId of pendingIds(before)) {
        const tracked = turns.get(turnId)!;
        if (pendingIds(after).includes(turnId)) {
          expect(tracked.state, `${label}: ${turnId} still waits`).toBe("pending");
          continue;
        }
        const outcome = outcomeOf(event);
        expect(tracked, `${label}: ${turnId}`).toMatchObject(outcome.state === "fulfilled" ? { state: "fulfilled", text: `answer ${turnId}` } : outcome);
        turns.delete(turnId);
      }
      expectConversation(runtime, gated, settledAt, label);
    }
  } finally {
    await shutDown(runtime, gated);
  }
}

describe("conversation machine, model-based", () => {
  it("generates paths over every state", () => {
    expect(new Set(shortest.map((path) => path.state.value))).toEqual(new Set(["opening", "answering", "ready", "closing", "ended"]));
    expect(simple.length).toBeGreaterThan(shortest.length);
  });

  walkPaths({ families: { shortest, simple, edges }, describePath, runPath, coverage, name: "conversation", covered: [conversationMachine] });
});
