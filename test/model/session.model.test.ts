/**
 * Model-based tests of the session machine: @xstate/graph walks the bare machine; every path is then driven
 * through the public bridge of a real runtime, and `sessions_status` and each prompt's outcome are checked
 * after every step.
 *
 * A `PROMPT.DEADLINE` is a prompt's timeout passing on the simulated clock. Which prompts time out, and in
 * which order, is read ahead from the path: only those prompts are sent with a `timeout`, chosen so that
 * their deadlines fall in the path's order, and the step moves the clock to the deadline it names.
 */
import type { StatePath } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { sessionMachine, type SessionEvent, type SessionInput } from "../../machines/index.js";
import { sessionShardMachine, supervisorMachine } from "../../machines/index.js";
import type { PromptError } from "../../machines/session.machine.js";
import { startTestRuntime, settle, type TestRuntime } from "../support/runtime.js";
import { delayedEventTypes, TransitionCoverage } from "./coverage.js";
import { generatePaths } from "./paths.js";
import { walkPaths } from "./suite.js";

/** Longer than every deadline a path sets (DEADLINE_STEP_MS apart), so that it never fires before them. */
const TTL_MS = 10_000_000;
const IDLE_MS = 1_000;
const MAX_QUEUED = 1;
/** The k-th deadline of a path falls k times this long after the session's creation. */
const DEADLINE_STEP_MS = 10_000;

const modelInput: SessionInput = {
  sessionId: "model",
  agentId: "controlled",
  shardId: "shard-0",
  metadata: {},
  createdAt: 0,
  ttlMs: TTL_MS,
  idleMs: IDLE_MS,
  maxQueuedPrompts: MAX_QUEUED,
  historyWindow: 30,
};

type SessionSnapshot = ReturnType<typeof sessionMachine.transition>;
type SessionPath = StatePath<SessionSnapshot, SessionEvent>;

const delays = delayedEventTypes(sessionMachine);
const TTL_EVENT = delays["session"]!.find((type) => type.includes("sessionTtl"))!;
const idleEventOf = (state: string): string => delays[`session.${state}`]!.find((type) => type.includes("sessionIdle"))!;

const TRANSIENT: PromptError = { type: "UPSTREAM", message: "upstream 503", retryable: true, sessionValid: true };
const FATAL: PromptError = { type: "AUTH", message: "invalid key", retryable: false, sessionValid: false };
const CRASH: PromptError = { type: "TRANSPORT", message: "worker exited", retryable: true, sessionValid: false };

function pendingIds(snapshot: SessionSnapshot): string[] {
  const { inFlight, queue } = snapshot.context;
  return [...(inFlight ? [inFlight.requestId] : []), ...queue.map((queued) => queued.requestId)];
}

/** The events worth trying in a state; a released session takes none (it is deleted). */
function eventsFor(snapshot: SessionSnapshot): SessionEvent[] {
  const { context } = snapshot;
  if (context.releaseReason !== null) return [];
  const pending = pendingIds(snapshot);
  const fresh = ["a", "b", "c"].find((id) => !pending.includes(id)) ?? "d";
  const prompt = (requestId: string): SessionEvent => ({ type: "PROMPT", request: { requestId, commandId: requestId, prompt: `prompt ${requestId}` }, at: 0 });
  const events: SessionEvent[] = [
    prompt(fresh),
    { type: "CANCEL", commandId: "cancel", at: 0 },
    { type: "CANCEL", commandId: "cancel", requestId: "unknown", at: 0 },
    { type: "CLOSE", reason: "closed" },
    { type: "CLOSE", reason: "shutdown" },
  ];
  const state = snapshot.value as string;
  if (state !== "failed") events.push({ type: "FAIL", error: CRASH, at: 0 });
  if (state === "busy") {
    const inFlight = context.inFlight!.requestId;
    events.push(
      prompt(inFlight),
      { type: "CANCEL", commandId: "cancel", requestId: inFlight, at: 0 },
      { type: "xstate.done.actor.prompt", actorId: "prompt", output: { reply: { text: `reply ${inFlight}`, stopReason: "end_turn" }, at: 0 } },
      { type: "xstate.error.actor.prompt", actorId: "prompt", error: { ...TRANSIENT, at: 0 } },
      { type: "xstate.error.actor.prompt", actorId: "prompt", error: { ...FATAL, at: 0 } },
      { type: TTL_EVENT } as unknown as SessionEvent,
      ...pendingIds(snapshot).map((requestId): SessionEvent => ({ type: "PROMPT.DEADLINE", commandId: requestId, timeoutMs: DEADLINE_STEP_MS, at: 0 })),
    );
    const queued = context.queue[0];
    if (queued) events.push({ type: "CANCEL", commandId: "cancel", requestId: queued.requestId, at: 0 });
  } else {
    events.push({ type: idleEventOf(state) } as unknown as SessionEvent);
  }
  return events;
}

function serializeState(snapshot: SessionSnapshot): string {
  const { context } = snapshot;
  return JSON.stringify([snapshot.value, pendingIds(snapshot), context.error?.type ?? null, context.releaseReason]);
}

// The bare machine has no shard above it: asking to be deleted is the runtime's part, a no-op here.
const graphMachine = sessionMachine.provide({ actions: { askParentToDelete: () => {} } });
const traversal = { input: modelInput, events: eventsFor, serializeState, serializeEvent: (event: SessionEvent) => JSON.stringify(event) };
const { shortest: shortestPaths, simple: simplePaths, edges: edgePaths } = generatePaths(graphMachine, traversal);

interface Tracked {
  state: "pending" | "fulfilled" | "rejected";
  text?: string;
  errorType?: string;
}

function track(promise: Promise<{ text: string }>): Tracked {
  const tracked: Tracked = { state: "pending" };
  promise.then(
    (reply) => Object.assign(tracked, { state: "fulfilled", text: reply.text }),
    (error: { type?: string }) => Object.assign(tracked, { state: "rejected", errorType: error.type }),
  );
  return tracked;
}

function describePath(path: SessionPath): string {
  return (
    path.steps
      .slice(1)
      .map(({ event }) => {
        const { type } = event;
        if (event.type === "PROMPT") return `PROMPT(${event.request.requestId})`;
        if (event.type === "CANCEL") return `CANCEL(${event.requestId ?? "-"})`;
        if (event.type === "CLOSE") return `CLOSE(${event.reason})`;
        if (event.type === "FAIL") return "FAIL";
        if (event.type === "xstate.error.actor.prompt") return `ERROR(${event.error.type})`;
        if (event.type === "PROMPT.DEADLINE") return `DEADLINE(${event.commandId})`;
        if (type === "xstate.done.actor.prompt") return "DONE";
        return type.replace(/^xstate\.after\.(\w+)\..*$/, "AFTER($1)");
      })
      .join(" → ") || "(initial)"
  );
}

/** What a pending prompt must have become when it left the session in `event`. */
function expectedOutcome(event: SessionEvent): string {
  switch (event.type) {
    case "xstate.done.actor.prompt":
      return "fulfilled";
    case "xstate.error.actor.prompt":
    case "FAIL":
      return event.error.type;
    case "PROMPT.DEADLINE":
      return "TIMEOUT";
    default:
      return "CANCELLED";
  }
}

/** Whether the PROMPT of a step was accepted (in flight or queued), not refused. */
function accepts(path: SessionPath, index: number): boolean {
  const { event, state } = path.steps[index]!;
  if (event.type !== "PROMPT") return false;
  const { requestId } = event.request;
  return pendingIds(state).includes(requestId) && !pendingIds(path.steps[index - 1]!.state).includes(requestId);
}

/**
 * The deadlines of a path, as milliseconds after the session's creation: the k-th `PROMPT.DEADLINE` step
 * falls at k × DEADLINE_STEP_MS, and so does the deadline of the prompt it names (by the step that accepted
 * that prompt). The clock moves only at deadlines while prompts are pending (an expiry ends the path), so a
 * prompt is always sent before its deadline, and no other prompt's deadline comes first.
 */
function deadlinesOf(path: SessionPath): { byPrompt: Map<number, number>; byStep: Map<number, number> } {
  const byPrompt = new Map<number, number>();
  const byStep = new Map<number, number>();
  path.steps.forEach(({ event }, index) => {
    if (event.type !== "PROMPT.DEADLINE") return;
    const dueMs = (byStep.size + 1) * DEADLINE_STEP_MS;
    byStep.set(index, dueMs);
    for (let earlier = index - 1; earlier > 0; earlier -= 1) {
      const { event: sent } = path.steps[earlier]!;
      if (sent.type === "PROMPT" && sent.request.requestId === event.commandId && accepts(path, earlier)) {
        byPrompt.set(earlier, dueMs);
        return;
      }
    }
  });
  return { byPrompt, byStep };
}

const coverage = new TransitionCoverage();

async function runPath(path: SessionPath): Promise<void> {
  const test: TestRuntime = await startTestRuntime({
    maxQueuedPrompts: MAX_QUEUED,
    sessionTtlMs: TTL_MS,
    sessionIdleMs: IDLE_MS,
    inspect: coverage.inspect,
  });
  const { runtime, clock, controlled, failSession } = test;
  const { sessionId } = await runtime.bridge.sessionsCreate({});
  const { createdAt } = await runtime.bridge.sessionsStatus({ sessionId });
  const prompts = new Map<string, Tracked>();
  const deadlines = deadlinesOf(path);
  let stopped = false;

  for (let index = 1; index < path.steps.length; index += 1) {
    const before = path.steps[index - 1]!.state;
    const { event, state: after } = path.steps[index]!;
    const label = `step ${index} ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;
    let answer: Tracked | undefined;

    switch (event.type) {
      case "PROMPT": {
        const { requestId } = event.request;
        const dueMs = deadlines.byPrompt.get(index);
        const timeout = dueMs === undefined ? {} : { timeout: createdAt + dueMs - clock.now() };
        answer = track(runtime.bridge.sessionsPrompt({ sessionId, prompt: event.request.prompt, requestId, ...timeout }));
        if (accepts(path, index)) prompts.set(requestId, answer);
        break;
      }
      case "PROMPT.DEADLINE": {
        clock.increment(createdAt + deadlines.byStep.get(index)! - clock.now());
        break;
      }
      case "CANCEL": {
        const args = event.requestId === undefined ? { sessionId } : { sessionId, requestId: event.requestId };
        answer = track(runtime.bridge.sessionsCancel(args).then((result) => ({ text: result.requestId })));
        break;
      }
      case "CLOSE":
        if (event.reason === "closed") await runtime.bridge.sessionsClose({ sessionId });
        else {
          await runtime.stop();
          stopped = true;
        }
        break;
      case "FAIL":
        failSession(sessionId, event.error.message);
        break;
      case "xstate.done.actor.prompt":
        controlled.current().reply({ text: event.output.reply.text });
        break;
      case "xstate.error.actor.prompt":
        controlled.current().fail(event.error.type as "UPSTREAM", event.error.message, { sessionValid: event.error.sessionValid });
        break;
      default: {
        // A delayed event (typed as none of the union): move the clock to the moment it is due.
        const delayed = event as { type: string };
        const dueAt = delayed.type === TTL_EVENT ? createdAt + TTL_MS : (await runtime.bridge.sessionsStatus({ sessionId })).expiresAt!;
        clock.increment(dueAt - clock.now());
      }
    }
    await settle();

    // The direct answer to the step's own call.
    if (event.type === "PROMPT") {
      const { requestId } = event.request;
      const accepted = pendingIds(after).length > pendingIds(before).length;
      if (accepted) expect(answer?.state, label).toBe("pending");
      else expect(answer, label).toMatchObject({ state: "rejected" });
      if (!accepted) {
        const expectedType = pendingIds(before).includes(requestId) ? "CONFIG" : before.value === "failed" ? before.context.error?.type : "BUSY";
        expect(answer?.errorType, label).toBe(expectedType);
      }
    }
    if (event.type === "CANCEL") {
      const cancelled = pendingIds(before).filter((id) => !pendingIds(after).includes(id));
      if (cancelled.length === 1) expect(answer, label).toMatchObject({ state: "fulfilled", text: cancelled[0] });
      else expect(answer, label).toMatchObject({ state: "rejected", errorType: "NOT_FOUND" });
    }

    // Every prompt that left the session is settled as the machine says; the others are still pending.
    for (const requestId of pendingIds(before)) {
      const tracked = prompts.get(requestId)!;
      if (pendingIds(after).includes(requestId) && after.context.releaseReason === null) {
        expect(tracked.state, `${label}: ${requestId} still pending`).toBe("pending");
        continue;
      }
      const outcome = expectedOutcome(event);
      if (outcome === "fulfilled") expect(tracked, label).toMatchObject({ state: "fulfilled", text: `reply ${requestId}` });
      else expect(tracked, label).toMatchObject({ state: "rejected", errorType: outcome });
      prompts.delete(requestId);
    }

    // The session as the bridge shows it.
    if (after.context.releaseReason !== null) {
      if (!stopped) {
        await expect(runtime.bridge.sessionsStatus({ sessionId }), label).rejects.toMatchObject({ type: "NOT_FOUND", message: "Session not found" });
      }
      const reason = after.context.releaseReason;
      // A failed session's agent heard `failed` when it failed, and nothing more at deletion.
      expect(controlled.closes.at(-1), label).toEqual({ sessionId, reason: after.context.error ? "failed" : reason });
    } else {
      const status = await runtime.bridge.sessionsStatus({ sessionId });
      expect(status.status, label).toBe(after.value);
      expect(status.queued, label).toBe(after.context.queue.length);
      expect(status.activeRequestId, label).toBe(after.context.inFlight?.requestId);
      expect(status.error?.type, label).toBe(after.context.error?.type);
    }
  }
  if (!stopped) await runtime.stop();
}

describe("session machine, model-based", () => {
  it("generates paths over every state", () => {
    const reached = new Set(shortestPaths.map((path) => path.state.value as string));
    expect([...reached].sort()).toEqual(["active", "busy", "failed", "idle"]);
    expect(simplePaths.length).toBeGreaterThan(shortestPaths.length);
  });

  walkPaths({
    families: { shortest: shortestPaths, simple: simplePaths, edges: edgePaths },
    describePath,
    runPath,
    coverage,
    name: "session",
    covered: [sessionMachine],
    reported: [sessionMachine, sessionShardMachine, supervisorMachine],
  });
});
