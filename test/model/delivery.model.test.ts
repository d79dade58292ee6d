/**
 * Model-based tests of the delivery machine: @xstate/graph walks the bare machine (one recipient, one
 * fallback agent, one retry each); every path is then driven against a real running bus on a simulated clock,
 * through real sockets, and the message's status, attempts and effects are checked after every step.
 *
 * How each event is produced for real: `SENT` and `QUEUED` are the bus's own answer when it dispatches, so
 * the target is connected or not before the step that dispatches (look-ahead); a `SENT` from `queued` is the
 * target connecting; `ACK` is the target's ack frame; `SEND_FAILED` is the target's socket closing; the
 * delays are the simulated clock moved to the moment they are due. The message is sent `sync`, so that its
 * sender waits and hears why it died: TIMEOUT after the message timeout, TRANSPORT once the retries are used.
 * `ACK_DURABLE` is the store committing the ack, within a turn: `acknowledging` never rests either. These paths
 * run on a bus with a store; the paths of a bus that keeps nothing (`commitsAcks: false`, where an `ACK` counts
 * at once) run on a bus without one.
 *
 * A delivery actor starts `idle`: every path's first step is `DELIVER`, the message being sent (or restored).
 * An ended message leaves its actor `idle` again (through `acknowledged` or `dead`, which do not rest); a later
 * `DELIVER` is the next message the sender sends, taken by an idle actor; `RETIRE` is the bus keeping no idle
 * actor (`maxIdleDeliveries: 0`, as every path but those that end with a second `DELIVER` runs), which retires
 * it at once.
 *
 * Restored paths start where a delivery restored after a restart starts (`delivered` waiting for the rest of
 * its ack timeout, `retrying` for the rest of its backoff): a first bus brings the message there and crashes,
 * a second bus restores it from the same store with a clock moved on, and the path is walked from there.
 */
import type { StatePath } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { SimulatedClock, type InspectionEvent } from "xstate";
import { deliveryMachine, resumedDelayMs, retryDelayMs, type DeliveryEvent, type DeliveryInput, type DeliveryResume } from "../../machines/index.js";
import { createMemoryStore, type CommunicationBus } from "../../src/index.js";
import {
  CLOCK_START,
  connect,
  envelope,
  rawConnect,
  register,
  startBus,
  startSimulatedBus,
  statusOf,
  until,
  type RawAgent,
  type TestAgent,
} from "../bus/support.js";
import { ControlledStore } from "../support/controlled-store.js";
import { delayedEventTypes, TransitionCoverage } from "./coverage.js";
import { generatePaths } from "./paths.js";
import { walkPaths } from "./suite.js";

const SENDER = "codex://sender";
const RECIPIENT = "opencode://recipient";
const FALLBACK = "claude-code://fallback";
const ACK_TIMEOUT_MS = 1_000;
const RETRY_BASE_MS = 100;
/** A timeout no path reaches, for paths that do not end by it. */
const NEVER_MS = 3_600_000;

const modelInput: DeliveryInput = {
  messageId: "model",
  key: "model",
  envelope: {},
  frame: "{}",
  frameBytes: 2,
  acceptedAt: 0,
  targets: [RECIPIENT, FALLBACK],
  maxRetries: 1,
  backoff: "linear",
  retryBaseMs: RETRY_BASE_MS,
  ackTimeoutMs: ACK_TIMEOUT_MS,
  commitsAcks: true,
  timeoutMs: NEVER_MS,
};

type DeliverySnapshot = ReturnType<typeof deliveryMachine.transition>;
type DeliveryPath = StatePath<DeliverySnapshot, DeliveryEvent>;

const delays = delayedEventTypes(deliveryMachine);
/** Raised by the delivery itself, `timeoutMs` after the message's start: driven, like the delays, by the clock. */
const TIMEOUT_EVENT = "MESSAGE_TIMEOUT";
const ACK_TIMEOUT_EVENT = delays["delivery.delivered"]![0]!;
const RETRY_EVENT = delays["delivery.retrying"]![0]!;

/** The next message, as an idle delivery is handed it. */
const NEXT_MESSAGE: DeliveryInput = { ...modelInput, messageId: "model-next", key: "model-next" };

/** An actor that has carried no message yet: the bus hands a new actor its message at once. */
function isFresh(snapshot: DeliverySnapshot): boolean {
  return snapshot.value === "idle" && snapshot.context.key === "";
}

/** The events of a graph whose first message is `first`. */
function eventsOf(first: DeliveryInput): (snapshot: DeliverySnapshot) => DeliveryEvent[] {
  return (snapshot) => eventsFor(snapshot, first);
}

function eventsFor(snapshot: DeliverySnapshot, first: DeliveryInput): DeliveryEvent[] {
  if (snapshot.status !== "active") return [];
  if (isFresh(snapshot)) return [{ type: "DELIVER", message: first }];
  if (snapshot.value === "idle") return [{ type: "DELIVER", message: { ...NEXT_MESSAGE, commitsAcks: snapshot.context.commitsAcks } }, { type: "RETIRE" }];
  const target = snapshot.context.targets[snapshot.context.targetIndex]!;
  const timeout = { type: TIMEOUT_EVENT } as unknown as DeliveryEvent;
  switch (snapshot.value) {
    case "accepted":
      return [{ type: "SENT", agentId: target }, { type: "QUEUED" }, timeout];
    case "queued":
      return [{ type: "SENT", agentId: target }, timeout];
    case "delivered": {
      const events: DeliveryEvent[] = [{ type: "ACK", agentId: target }, { type: ACK_TIMEOUT_EVENT } as unknown as DeliveryEvent, timeout];
      // A restored message was written to a socket of the bus before the restart: no socket of this one can fail it.
      return resumedDelayMs(snapshot.context, "delivered") === undefined ? [...events, { type: "SEND_FAILED", error: "closed" }] : events;
    }
    case "retrying":
      return [{ type: "ACK", agentId: target }, { type: RETRY_EVENT } as unknown as DeliveryEvent, timeout];
    case "acknowledging":
      // The message timeout does not apply any more: the ack only waits for its commit.
      return [{ type: "ACK_DURABLE" }];
    default:
      return [];
  }
}

function serializeState(snapshot: DeliverySnapshot): string {
  const { context } = snapshot;
  // Idle is one state whatever the message before it: the next message starts with counters of its own, and
  // without the restored phase of the message before it.
  if (isFresh(snapshot)) return JSON.stringify("fresh");
  if (snapshot.value === "idle" || snapshot.value === "retired") return JSON.stringify(snapshot.value);
  return JSON.stringify([snapshot.value, context.targetIndex, context.retries, context.attempts, context.resume === undefined ? "new" : "restored"]);
}

// The bare machine has no bus: dispatching is the bus's part, a no-op here.
const graphMachine = deliveryMachine.provide({ actions: { dispatch: () => {} } });
const traversal = { events: eventsOf(modelInput), serializeState, serializeEvent: (event: DeliveryEvent) => JSON.stringify(event) };
const { shortest: shortestPaths, simple: allSimplePaths, edges: edgePaths } = generatePaths(graphMachine, traversal);

/** Simple paths without those that are a prefix of a longer one: the longer path checks every step of it. */
function withoutPrefixes(paths: DeliveryPath[]): DeliveryPath[] {
  const keys = paths.map((path) => path.steps.map(({ event }) => JSON.stringify(event)).join("|"));
  return paths.filter((_path, index) => !keys.some((other, otherIndex) => otherIndex !== index && other.startsWith(`${keys[index]}|`)));
}
const simplePaths = withoutPrefixes(allSimplePaths);

/**
 * How the restored paths get their start: the first bus sends the message at 0, crashes at `crashAt`, and the
 * second bus starts at `restartAt`; what is left of the phase is the model's `phaseLeftMs`.
 */
const RESTARTS = {
  // Written at 0, its ack timeout due at 1,000: 600 ms are left at the restart.
  delivered: { crashAt: 300, restartAt: 400, phaseLeftMs: ACK_TIMEOUT_MS - 400, retries: 0, lastError: null },
  // Its ack timeout at 1,000 starts a backoff of 100 (linear, first retry), due at 1,100: 60 ms are left.
  retrying: {
    crashAt: 1_030,
    restartAt: 1_040,
    phaseLeftMs: ACK_TIMEOUT_MS + RETRY_BASE_MS - 1_040,
    retries: 1,
    lastError: `No ack from ${RECIPIENT} within ${ACK_TIMEOUT_MS} ms`,
  },
} as const;

function restoredInput(status: keyof typeof RESTARTS): DeliveryInput {
  const { phaseLeftMs, retries, lastError } = RESTARTS[status];
  const resume: DeliveryResume = { status, targetIndex: 0, retries, attempts: 1, lastError, timeoutLeftMs: NEVER_MS, phaseLeftMs };
  return { ...modelInput, resume };
}

/**
 * Every path of one or two events from each restored start: its restored phase, and what follows it. Past
 * that, a restored delivery is in a state the fresh paths walk already.
 */
const restoredPaths = (["delivered", "retrying"] as const).flatMap((status) => {
  const { edges } = generatePaths(graphMachine, { ...traversal, events: eventsOf(restoredInput(status)) }, { simple: false });
  return edges.filter((path) => path.steps.length <= 4).map((path) => ({ status, path }));
});

/**
 * A bus that keeps nothing across restarts takes an ack at once: every path that ends with an `ACK` (from
 * `delivered` and from `retrying`), the rest being the paths above.
 */
const volatilePaths = generatePaths(graphMachine, { ...traversal, events: eventsOf({ ...modelInput, commitsAcks: false }) }, { simple: false }).edges.filter(
  (path) => path.steps.at(-1)?.event.type === "ACK",
);

/** How the message a step ends ended: `acknowledged` by its ack, else `dead`; undefined for a step that ends none. */
function endOf(before: DeliverySnapshot | undefined, event: DeliveryEvent, after: DeliverySnapshot): "acknowledged" | "dead" | undefined {
  if (after.value !== "idle" || before === undefined || before.value === "idle") return undefined;
  return event.type === "ACK" || event.type === "ACK_DURABLE" ? "acknowledged" : "dead";
}

/** A path's events after the first message is handed over (every path starts with that `DELIVER`). */
function describePath(path: DeliveryPath): string {
  return (
    path.steps
      .slice(2)
      .map(({ event }) => event.type.replace(/^xstate\.after\.(\w+)\..*$/, "AFTER($1)"))
      .join(" → ") || "(initial)"
  );
}

/**
 * The simulated time of each step, from acceptance at 0: only the delays move time. A path that ends with the
 * message timeout gets a timeout 1 ms after the moment of its last step, so that it is the next timer due.
 */
function timelineOf(path: DeliveryPath): { times: number[]; timeoutMs: number } {
  const times = [0];
  let now = 0;
  let sentAt = 0;
  for (let index = 1; index < path.steps.length; index += 1) {
    const { event, state } = path.steps[index]!;
    const before = path.steps[index - 1]!.state;
    if (event.type === "SENT") sentAt = now;
    // A restored phase ends when what was left of it has passed since the restart (0 here).
    if (event.type === ACK_TIMEOUT_EVENT) now = sentAt + (resumedDelayMs(before.context, "delivered") ?? ACK_TIMEOUT_MS);
    if (event.type === RETRY_EVENT)
      now += resumedDelayMs(before.context, "retrying") ?? retryDelayMs(before.context.backoff, RETRY_BASE_MS, before.context.retries);
    if (event.type === TIMEOUT_EVENT) now += 1;
    times.push(now);
    if (event.type === TIMEOUT_EVENT) return { times, timeoutMs: now };
    void state;
  }
  return { times, timeoutMs: now + NEVER_MS };
}

/**
 * What the bus shows for a graph state of a message that has not ended: `accepted` never rests, it is
 * dispatched at once; `acknowledging` neither, the store commits the ack within a turn.
 */
function expectedStatus(state: DeliverySnapshot, next: DeliveryEvent | undefined): string {
  if (state.value === "acknowledging") return "acknowledged";
  if (state.value !== "accepted") return state.value;
  return next?.type === "SENT" ? "delivered" : "queued";
}

const coverage = new TransitionCoverage();

class Agents {
  private readonly sockets = new Map<string, RawAgent>();

  constructor(private readonly bus: CommunicationBus) {}

  socket(agentId: string): RawAgent | undefined {
    return this.sockets.get(agentId);
  }

  /** Connects or disconnects an agent and waits until the bus has seen it. */
  async ensure(agentId: string, online: boolean): Promise<void> {
    const current = this.sockets.get(agentId);
    if (online && current === undefined) {
      this.sockets.set(agentId, await rawConnect(this.bus, agentId));
    }
    if (!online && current !== undefined) {
      this.sockets.delete(agentId);
      current.socket.close();
      await current.closed;
    }
    await until(() => this.bus.listAgents().some((agent) => agent.agent_id === agentId && agent.online === online));
  }
}

/** A bus, its clock and the agents a path is walked with; `answer` is the sync sender's, when it waits. */
interface Rig {
  bus: CommunicationBus;
  clock: SimulatedClock;
  sender: TestAgent;
  agents: Agents;
  /** Time 0 of the path's timeline. */
  startedAt: number;
  answer: { errorType?: string; message?: string } | undefined;
  /** Delivery actors that ended (retired), as the inspection saw them. */
  retired: () => number;
  /** Sends the first message, at the path's first `DELIVER`; none when it was restored before the walk. */
  sendFirst: (() => void) | undefined;
}

/** An `inspect` that feeds the coverage and counts the delivery actors that end (are retired). */
function watchRetired(): { inspect: (event: InspectionEvent) => void; retired: () => number } {
  let retired = 0;
  return {
    inspect: (event) => {
      coverage.inspect(event);
      const machine = (event.actorRef as { logic?: { id?: string } }).logic?.id;
      if (event.type === "@xstate.snapshot" && machine === "delivery" && (event.snapshot as { status?: string }).status === "done") retired += 1;
    },
    retired: () => retired,
  };
}

/**
 * Walks a path on a bus with a store (acks wait for its commit), or, for `commitsAcks: false`, on one without;
 * one that ends with `DELIVER` keeps its idle actors, every other retires them.
 */
async function runPath(path: DeliveryPath): Promise<void> {
  const first = path.steps[1]!.event as Extract<DeliveryEvent, { type: "DELIVER" }>;
  const store = first.message.commitsAcks ? { store: createMemoryStore() } : {};
  const idle = path.steps.at(-1)!.event.type === "DELIVER" ? {} : { maxIdleDeliveries: 0 };
  const watch = watchRetired();
  const { bus, clock } = await startSimulatedBus({ ackTimeout: ACK_TIMEOUT_MS, retryDelay: RETRY_BASE_MS, inspect: watch.inspect, ...store, ...idle });
  await register(bus, SENDER, RECIPIENT, FALLBACK);
  const sender: TestAgent = await connect(bus, SENDER);
  const agents = new Agents(bus);
  const { timeoutMs } = timelineOf(path);
  const startedAt = clock.now();
  const message = envelope(SENDER, RECIPIENT, {
    message_id: "model",
    routing: { timeout: `${timeoutMs}ms`, retry_policy: { max_retries: 1, backoff: "linear" }, fallback_agents: [FALLBACK], delivery_mode: "sync" },
  });
  // Nobody replies: the sync sender waits until the message is dead, or until the bus stops after the test.
  const answer: { errorType?: string; message?: string } = {};
  const sendFirst = (): void => {
    bus.send(message).then(
      () => Object.assign(answer, { errorType: "none" }),
      (error: { type?: string; message: string }) => Object.assign(answer, { errorType: error.type, message: error.message }),
    );
  };
  await walk(path, { bus, clock, sender, agents, startedAt, answer, retired: watch.retired, sendFirst });
}

/**
 * A restored path: a first bus writes the message to the recipient (and lets its ack timeout pass, for
 * `retrying`), crashes, and a second bus on the same store and a clock moved on restores it.
 */
async function runRestoredPath(status: keyof typeof RESTARTS, path: DeliveryPath): Promise<void> {
  const { crashAt, restartAt } = RESTARTS[status];
  const inner = createMemoryStore();
  const store = new ControlledStore(inner);
  const first = await startSimulatedBus({ ackTimeout: ACK_TIMEOUT_MS, retryDelay: RETRY_BASE_MS, store });
  await register(first.bus, SENDER, RECIPIENT, FALLBACK);
  await rawConnect(first.bus, RECIPIENT);
  const { timeoutMs } = timelineOf(path);
  await first.bus.send(
    envelope(SENDER, RECIPIENT, {
      message_id: "model",
      routing: { timeout: `${restartAt + timeoutMs}ms`, retry_policy: { max_retries: 1, backoff: "linear" }, fallback_agents: [FALLBACK] },
    }),
  );
  await until(() => statusOf(first.bus, "model") === "delivered");
  // A simulated clock fires timers at the time it is moved to: move it to the ack timeout first, exactly.
  if (status === "retrying") {
    first.clock.increment(ACK_TIMEOUT_MS);
    await until(() => statusOf(first.bus, "model") === "retrying");
  }
  first.clock.increment(crashAt - (first.clock.now() - CLOCK_START));
  await first.bus.persisted();
  store.crash();
  await first.bus.stop();
  const clock = new SimulatedClock();
  clock.set(CLOCK_START + restartAt);
  const watch = watchRetired();
  const bus = await startBus({ clock, ackTimeout: ACK_TIMEOUT_MS, retryDelay: RETRY_BASE_MS, inspect: watch.inspect, store: inner, maxIdleDeliveries: 0 });
  const sender: TestAgent = await connect(bus, SENDER);
  await walk(path, { bus, clock, sender, agents: new Agents(bus), startedAt: clock.now(), answer: undefined, retired: watch.retired, sendFirst: undefined });
}

/** Drives the real bus through a path's events and checks it after every step. */
async function walk(path: DeliveryPath, { bus, clock, sender, agents, startedAt, answer, retired, sendFirst }: Rig): Promise<void> {
  const { times } = timelineOf(path);
  const targetAfter = (index: number): string => {
    const { context } = path.steps[index]!.state;
    return context.targets[context.targetIndex]!;
  };
  /** Before a step that dispatches (its state is `accepted`), connect its target iff the next event is SENT. */
  const prepareDispatch = async (index: number): Promise<void> => {
    if (path.steps[index]!.state.value !== "accepted") return;
    await agents.ensure(targetAfter(index), path.steps[index + 1]?.event.type === "SENT");
  };
  /** The message the walked actor carries (or carried last), and how it ended. */
  let messageId = "model";
  let ended: "acknowledged" | "dead" | undefined;
  /** The attempts of the message that ended: the graph keeps one idle state, whatever came before it. */
  let endedAttempts = 0;

  for (let index = 0; index < path.steps.length; index += 1) {
    const { event, state: after } = path.steps[index]!;
    const before = index > 0 ? path.steps[index - 1]!.state : undefined;
    const label = `step ${index} ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;
    if (index > 0 && before !== undefined) {
      const target = before.context.targets[before.context.targetIndex]!;
      await prepareDispatch(index);
      switch (event.type) {
        case "QUEUED":
          break;
        case "SENT":
          if (before.value === "queued") await agents.ensure(target, true);
          break;
        case "ACK":
          await agents.ensure(target, true);
          agents.socket(target)!.ack(messageId);
          break;
        case "SEND_FAILED": {
          const socket = agents.socket(target)!;
          socket.socket.close();
          await socket.closed;
          await agents.ensure(target, false);
          break;
        }
        case "DELIVER": {
          // The first message: sent now, or restored already.
          if (isFresh(before)) {
            sendFirst?.();
            break;
          }
          // The sender's next message: an idle actor takes it.
          messageId = event.message.messageId;
          ended = undefined;
          const next = envelope(SENDER, RECIPIENT, {
            message_id: messageId,
            routing: { timeout: `${NEVER_MS}ms`, retry_policy: { max_retries: 1, backoff: "linear" }, fallback_agents: [FALLBACK] },
          });
          expect(await bus.send(next), label).toMatchObject({ status: "accepted" });
          break;
        }
        case "RETIRE":
          // The bus keeps no idle actor here: it retired this one as its message ended.
          await until(() => retired() > 0);
          break;
        default:
          // A delay: move the clock to the moment it is due.
          clock.increment(startedAt + times[index]! - clock.now());
      }
    }
    // Before the first message, there is nothing to see.
    if (index === 0) continue;
    const end = endOf(before, event, after);
    if (end !== undefined) {
      ended = end;
      // No transition to an end makes an attempt.
      endedAttempts = before!.context.attempts;
    }
    const attempts = after.value === "idle" || after.value === "retired" ? endedAttempts : after.context.attempts;
    const expected = after.value === "idle" || after.value === "retired" ? ended! : expectedStatus(after, path.steps[index + 1]?.event);
    await until(() => statusOf(bus, messageId) === expected).catch(() => {
      throw new Error(`${label}: expected ${expected}, the bus says ${statusOf(bus, messageId)}`);
    });
    const status = bus.messageStatus(messageId);
    // An `accepted` that the bus writes at once has made its attempt already.
    expect(status.attempts, label).toBe(attempts + (expected === "delivered" && after.value === "accepted" ? 1 : 0));
    // A restored message was written by the bus before the restart, to a socket that is gone.
    if (after.value === "delivered" && resumedDelayMs(after.context, "delivered") === undefined) {
      const socket = agents.socket(after.context.targets[after.context.targetIndex]!)!;
      await until(() => socket.frames.filter((frame) => frame.message_id === messageId).length > 0);
    }
    if (end === "dead") {
      expect(status.last_error, label).toBeDefined();
      if (answer !== undefined) {
        await until(() => answer.errorType !== undefined);
        // The dead message's own error, not the sync sender's timer that falls due at the same moment.
        expect(answer, label).toEqual({ errorType: event.type === TIMEOUT_EVENT ? "TIMEOUT" : "TRANSPORT", message: `model: ${status.last_error}` });
      }
      await until(() => sender.received.length === 1);
      expect(sender.received[0], label).toMatchObject({ message_type: "error", payload: { code: "DELIVERY_FAILED", in_reply_to: "model" } });
    }
    if (after.value === "retrying") expect(status.last_error, label).toBeDefined();
    // The sync sender of the first message hears of it only if it died.
    if (messageId === "model" && ended !== "dead" && answer !== undefined) expect(answer.errorType, label).toBeUndefined();
  }
}

describe("delivery machine, model-based", () => {
  it("generates paths over every state", () => {
    const reached = new Set(shortestPaths.map((path) => path.state.value as string));
    expect([...reached].sort()).toEqual(["accepted", "acknowledging", "delivered", "idle", "queued", "retired", "retrying"]);
    expect(allSimplePaths.length).toBeGreaterThan(shortestPaths.length);
    // A restored message resumes where it was stored, as its actor's first message.
    expect(new Set(restoredPaths.map(({ path }) => path.steps[1]!.state.value))).toEqual(new Set(["delivered", "retrying"]));
    expect(new Set([...shortestPaths, ...restoredPaths.map(({ path }) => path)].map((path) => path.steps[1]?.event.type))).toEqual(
      new Set(["DELIVER", undefined]),
    );
    expect(new Set(volatilePaths.map((path) => [path.steps.at(-2)!.state.value, path.state.value].join(" → ")))).toEqual(
      new Set(["delivered → idle", "retrying → idle"]),
    );
  });

  describe(`paths on a bus that keeps nothing (${volatilePaths.length})`, () => {
    it.each(volatilePaths.map((path) => [describePath(path), path] as const))("%s", async (_name, path) => {
      await runPath(path);
    });
  });

  describe(`restored paths (${restoredPaths.length})`, () => {
    it.each(restoredPaths.map(({ status, path }) => [`restored ${status}: ${describePath(path)}`, status, path] as const))(
      "%s",
      async (_name, status, path) => {
        await runRestoredPath(status, path);
      },
    );
  });

  // The actor before its first message has nothing to walk: every walked path hands it one.
  const carrying = (paths: DeliveryPath[]): DeliveryPath[] => paths.filter((path) => path.steps.length > 1);
  walkPaths({
    families: { shortest: carrying(shortestPaths), simple: carrying(simplePaths), edges: carrying(edgePaths) },
    describePath,
    runPath,
    coverage,
    name: "delivery",
    covered: [deliveryMachine],
  });
});
