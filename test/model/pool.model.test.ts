/**
 * Model-based tests of the pools (and the pool shards under them): @xstate/graph walks the bare pool machine
 * with shards of 2 and a capacity of 3; every path is driven through a real bus on a simulated clock over a
 * real runtime (`shardSize: 2`, `maxWorkflowSessions: 3`), and the pool's count, its shards with the children
 * each holds, each spawn's answer and each release the pool hears are checked against the model after every step.
 *
 * Two models share one coverage: workflow sessions (`pool:workflow`) and message deliveries (`pool:delivery`,
 * which is unbounded: its walk stops spawning at 3 children). How each event is produced for real:
 *
 * - `POOL.SPAWN`: `POST /sessions` (the model refuses exactly when the bus answers 429 CAPACITY); a message sent
 *   with `POST /messages/send` to an offline agent of its own, where it waits, on a bus that keeps no idle
 *   delivery actor (`maxIdleDeliveries: 0`), so that every message is carried by an actor of its own.
 * - `CHILD.RELEASED`, ending `done`: the workflow is completed (`POST /sessions/:id/complete`), stays readable
 *   and counted, and the clock is moved by `workflowRetentionMs`, after which its shard reaps it; the message's
 *   recipient connects and acknowledges it, its actor is retired, and its shard reaps it at once (a delivery
 *   asks for no retention).
 * - `CHILD.RELEASED`, ending `error`: no bus child can fail. A workflow's machine is pure over validated input
 *   (no action of it throws), and a delivery's one effect, `dispatch`, only queues or writes (a socket is
 *   written only while open, and a runtime agent's endpoint reads in a microtask). The pool takes any logic
 *   (`runtime.spawnPooled`), so the child a path later fails is spawned, at its `POOL.SPAWN` step, from logic
 *   of this test that throws on `FAIL`, which is sent at the release step (the path is read ahead).
 * - `POOL.EVICT`: `DELETE /sessions/:id` of a shard's oldest child; an id that is gone reaches the pool only
 *   from `runtime.evictPooled` (the session manager evicts only the ids it knows).
 * - `POOL.CLEAR`: `bus.stop()` (the bus does not own the runtime, so the runtime keeps running).
 *
 * The pool only asks its shards on `POOL.EVICT` and `POOL.CLEAR`; the shards answer at once with a
 * `CHILD.RELEASED` per child they reap, so there the real pool is compared with the model after those
 * releases. Both are self-loops of the pool's graph: they only end edge paths.
 */
import type { StatePath } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { createMachine, SimulatedClock, transition, type AnyActorRef, type InspectionEvent } from "xstate";
import { createWorkflowMachine } from "../../machines/index.js";
import type { ChildReleasedEvent, PoolChildEnding, PoolChildSource } from "../../machines/pool-shard.machine.js";
import { poolShardMachine } from "../../machines/pool-shard.machine.js";
import { livePoolShards, poolMachine, poolSystemId, type PoolEvent, type PoolKind } from "../../machines/pool.machine.js";
import { createRuntime, type CommunicationBus, type Runtime } from "../../src/index.js";
import {
  call,
  CLOCK_START,
  deliveryActorOf,
  envelope,
  rawConnect,
  register,
  SEED_AGENTS,
  SEED_PARTICIPANTS,
  SEED_STEPS,
  startBus,
  until,
} from "../bus/support.js";
import { TransitionCoverage } from "./coverage.js";
import { generatePaths } from "./paths.js";
import { walkPaths } from "./suite.js";
import { messageKey } from "../../src/protocol/envelope.js";

const SHARD_SIZE = 2;
const CAPACITY = 3;
/** Deliveries are unbounded: the walk stops spawning them here. */
const DELIVERY_BOUND = 3;
const RETENTION_MS = 60_000;
const SENDER = "codex://sender";

type PoolSnapshot = ReturnType<typeof poolMachine.transition>;
/** The kinds walked here; the agent and conversation pools run the same machine (their children are walked by agent.model.test.ts and conversation.model.test.ts). */
type WalkedKind = Exclude<PoolKind, "agent" | "conversation">;
type PoolPath = StatePath<PoolSnapshot, PoolEvent>;

/** What the model spawns: the logic the real bus spawns for each kind. */
const MODEL_SOURCE: Record<WalkedKind, PoolChildSource> = { workflow: createWorkflowMachine(SEED_STEPS), delivery: "delivery" };
/** How a workflow ends (completed, or terminated by DELETE), as its shard reports it: it asked to be retained. */
const WORKFLOW_ENDED: PoolChildEnding = { status: "done", output: { retainMs: RETENTION_MS } };
/** How a child of each kind can end for real (see above); the ending is what its shard reports. */
const RELEASES: Record<WalkedKind, PoolChildEnding[]> = {
  workflow: [WORKFLOW_ENDED, { status: "error", error: "the child failed" }],
  delivery: [{ status: "done", output: undefined }],
};
/**
 * The model counts children, it does not name them: an event names the oldest child of a shard by the shard's
 * position among the live ones (`@1`); `concrete` turns that into the shard's name (see `replay`).
 */
const AT = "@";
/** What `concrete` names the oldest child of a shard. */
const OLDEST_OF = "oldest of ";
const GONE = "gone";

function eventsFor(kind: WalkedKind): (snapshot: PoolSnapshot) => PoolEvent[] {
  return ({ context }) => {
    const holding = livePoolShards(context)
      .map((shard, position) => ({ ...shard, position }))
      .filter((shard) => shard.live > 0);
    const spawn: PoolEvent[] =
      kind === "delivery" && context.live >= DELIVERY_BOUND ? [] : [{ type: "POOL.SPAWN", childId: "next", src: MODEL_SOURCE[kind], input: null }];
    const releases = holding.flatMap(({ shardId, position }) =>
      RELEASES[kind].map((ending): PoolEvent => ({ type: "CHILD.RELEASED", shardId, childId: `${AT}${position}`, ending })),
    );
    // Only workflows are evicted one by one (DELETE /sessions/:id); deliveries only all together.
    const evictions: PoolEvent[] =
      kind === "workflow"
        ? [...holding.map(({ position }): PoolEvent => ({ type: "POOL.EVICT", childId: `${AT}${position}` })), { type: "POOL.EVICT", childId: GONE }]
        : [];
    return [...spawn, ...releases, ...evictions, { type: "POOL.CLEAR" }];
  };
}

/** Shards and their loads in the order of their ids: which shard is sealed first is not the pool's concern. */
function byShardId(left: [string, number], right: [string, number]): number {
  return left[0] < right[0] ? -1 : left[0] > right[0] ? 1 : 0;
}

/**
 * A state is the pool's count and its shards' loads, by number, without the shards' names: the pool treats
 * shards alike whatever they are called, so states that differ only in names would be walked again for
 * nothing. The names are still checked at every step (see `replay`).
 */
function serializeState({ context }: PoolSnapshot): string {
  const load = (shard: { spawned: number; live: number } | null) => (shard === null ? null : [shard.spawned, shard.live]);
  return JSON.stringify([
    context.live,
    load(context.current),
    livePoolShards(context)
      .slice(0, context.current === null ? undefined : -1)
      .map(load),
  ]);
}

/** An event without names: the spawn's logic and a shard's name are left out (positions stand for shards). */
function serializeEvent(event: PoolEvent): string {
  if (event.type === "POOL.SPAWN") return JSON.stringify({ type: event.type });
  if (event.type === "CHILD.RELEASED") return JSON.stringify({ type: event.type, childId: event.childId, ending: event.ending.status });
  return JSON.stringify(event);
}

/** The event for a concrete snapshot: the shard at the event's position in it. */
function concrete(snapshot: PoolSnapshot, event: PoolEvent): PoolEvent {
  if ((event.type !== "CHILD.RELEASED" && event.type !== "POOL.EVICT") || !event.childId.startsWith(AT)) return event;
  const shardId = livePoolShards(snapshot.context)[Number(event.childId.slice(AT.length))]!.shardId;
  return { ...event, ...(event.type === "CHILD.RELEASED" ? { shardId } : {}), childId: `${OLDEST_OF}${shardId}` };
}

/**
 * A path replayed on the machine from its first state. States keyed without names merge snapshots whose shards
 * are named differently, so @xstate/graph may join steps computed from two of them: replaying each event (its
 * shard found by position) gives one chain of snapshots, with the names the machine picks, to check the bus against.
 */
function replay(path: PoolPath): PoolPath {
  const steps: PoolPath["steps"] = [path.steps[0]!];
  let state = path.steps[0]!.state;
  for (const { event } of path.steps.slice(1)) {
    const next = concrete(state, event);
    state = transition(poolMachine, state, next)[0];
    steps.push({ event: next, state });
  }
  return { ...path, steps, state };
}

function modelOf(kind: WalkedKind, options: { simple: boolean }) {
  const input = { kind, shardSize: SHARD_SIZE, capacity: kind === "workflow" ? CAPACITY : 0 };
  const { shortest, simple, edges } = generatePaths(poolMachine, { input, events: eventsFor(kind), serializeState, serializeEvent }, options);
  return { shortest: shortest.map(replay), simple: simple.map(replay), edges: edges.map(replay), generated: [...shortest, ...simple, ...edges] };
}

/** Paths without those that are a prefix of a longer one: the longer path checks every step of it. */
function withoutPrefixes(paths: PoolPath[]): PoolPath[] {
  const keys = paths.map((path) => path.steps.map(({ event }) => serializeEvent(event)).join("|"));
  return paths.filter((_path, index) => !keys.some((other, otherIndex) => otherIndex !== index && other.startsWith(`${keys[index]}|`)));
}

const workflows = modelOf("workflow", { simple: true });
// A release's ending does not change the pool's state: simple paths that also vary it would repeat the same
// states thousands of times. They release by completion only; the edge paths take every ending from every state.
const workflowSimple = withoutPrefixes(
  workflows.simple.filter((path) => path.steps.every(({ event }) => event.type !== "CHILD.RELEASED" || event.ending.status === "done")),
);
// Deliveries walk the same graph (without refusals and evictions): shortest and edge paths.
const deliveries = modelOf("delivery", { simple: false });
const deliveryPaths = new WeakSet<PoolPath>([...deliveries.shortest, ...deliveries.edges]);

function describeEvent(event: PoolEvent): string {
  switch (event.type) {
    case "POOL.SPAWN":
      return "SPAWN";
    case "CHILD.RELEASED":
      return `RELEASE(${event.shardId}, ${event.ending.status})`;
    case "POOL.EVICT":
      return `EVICT(${event.childId.replace(OLDEST_OF, "")})`;
    case "POOL.CLEAR":
      return "CLEAR";
  }
}

function describeSteps(steps: PoolPath["steps"]): string {
  return steps.map(({ event }) => describeEvent(event)).join(" → ") || "(initial)";
}

function describePath(path: PoolPath): string {
  const steps = describeSteps(path.steps.slice(1));
  return deliveryPaths.has(path) ? `deliveries: ${steps}` : steps;
}

/** The model's state once the shards have answered an eviction or a clear: one release per child they reap. */
function afterShardsAnswer(path: PoolPath, index: number): PoolSnapshot {
  const { event, state } = path.steps[index]!;
  const release = (snapshot: PoolSnapshot, shardId: string): PoolSnapshot =>
    transition(poolMachine, snapshot, { type: "CHILD.RELEASED", shardId, childId: "", ending: { status: "stopped" } })[0];
  if (event.type === "POOL.EVICT") return event.childId === GONE ? state : release(state, event.childId.slice(OLDEST_OF.length));
  if (event.type !== "POOL.CLEAR") return state;
  let snapshot = state;
  for (const shard of livePoolShards(state.context)) for (let count = 0; count < shard.live; count += 1) snapshot = release(snapshot, shard.shardId);
  return snapshot;
}

/** Reads the path ahead: the spawn steps whose child a later step fails. */
function failingSpawns(path: PoolPath): Set<number> {
  const live: Array<{ step: number; shardId: string }> = [];
  const failing = new Set<number>();
  for (let index = 1; index < path.steps.length; index += 1) {
    const before = path.steps[index - 1]!.state;
    const { event, state: after } = path.steps[index]!;
    if (event.type === "POOL.SPAWN" && after.context.live > before.context.live) live.push({ step: index, shardId: after.context.current!.shardId });
    if (event.type !== "CHILD.RELEASED") continue;
    const oldest = live.findIndex((child) => child.shardId === event.shardId);
    if (event.ending.status === "error") failing.add(live[oldest]!.step);
    live.splice(oldest, 1);
  }
  return failing;
}

/** What a test compares of an ending: an error by its message. */
function endingView(ending: PoolChildEnding): PoolChildEnding {
  return ending.status === "error" ? { status: "error", error: ending.error instanceof Error ? ending.error.message : ending.error } : ending;
}

/** A child of this test's own that fails on `FAIL`: no bus child can (see above). */
const failingChild = createMachine({
  id: "failingChild",
  on: {
    FAIL: {
      actions: () => {
        throw new Error("the child failed");
      },
    },
  },
});

const coverage = new TransitionCoverage();

/** What the test sees of a real pool: the actors under it (from `actor.*` events) and the releases it hears. */
class PoolWatch {
  /** Every actor alive now, with its parent's id, in the order they were spawned. */
  private readonly parents = new Map<string, string | undefined>();
  readonly releases: ChildReleasedEvent[] = [];

  constructor(private readonly kind: WalkedKind) {}

  readonly inspect = (event: InspectionEvent): void => {
    coverage.inspect(event);
    if (event.type !== "@xstate.event" || event.event.type !== "CHILD.RELEASED") return;
    if ((event.actorRef as AnyActorRef).id === poolSystemId(this.kind)) this.releases.push(event.event as ChildReleasedEvent);
  };

  listen(runtime: Runtime): void {
    runtime.on("actor.spawned", (event) => this.parents.set(event.actorId, event.parentId));
    runtime.on("actor.stopped", (event) => this.parents.delete(event.actorId));
  }

  shardOf(childId: string): string | undefined {
    return this.parents.get(childId);
  }

  /** The live shards, by shard id, with the children alive in each. */
  loads(): Array<[string, number]> {
    const shards = [...this.parents].filter(([, parentId]) => parentId === poolSystemId(this.kind)).map(([shardId]) => shardId);
    return shards.map((shardId): [string, number] => [shardId, [...this.parents.values()].filter((parentId) => parentId === shardId).length]).sort(byShardId);
  }
}

/** A child the test spawned: its real id and the shard the model put it in. */
interface LiveChild {
  childId: string;
  shardId: string;
  /** A delivery's message and its recipient, which connects to acknowledge it. */
  message?: { messageId: string; recipient: string };
}

/** The real runtime and bus of one path, and what the path has spawned so far. */
interface Rig {
  kind: WalkedKind;
  runtime: Runtime;
  bus: CommunicationBus;
  clock: SimulatedClock;
  watch: PoolWatch;
  live: LiveChild[];
}

/** Spawns a child as the path's step says; a delivery's id is that of the actor carrying its message. */
async function spawn(rig: Rig, step: number, failing: boolean, refused: boolean, label: string): Promise<{ childId: string; messageId?: string } | undefined> {
  const { bus, runtime } = rig;
  if (rig.kind === "delivery") {
    const recipient = `opencode://recipient-${step}`;
    await register(bus, recipient);
    const message = envelope(SENDER, recipient);
    expect((await call(bus, "POST", "/messages/send", message)).status, label).toBe(202);
    const messageId = message["message_id"] as string;
    const carrier = deliveryActorOf(runtime, messageKey(SENDER, messageId)) as { systemId?: string } | undefined;
    expect(carrier?.systemId, `${label}: the actor carrying the message`).toBeDefined();
    return { childId: carrier!.systemId!, messageId };
  }
  if (failing) {
    runtime.spawnPooled("workflow", `failing-${step}`, failingChild, undefined);
    return { childId: `failing-${step}` };
  }
  const answer = await call(bus, "POST", "/sessions", { initiator: SEED_AGENTS.lead, participants: SEED_PARTICIPANTS, steps: SEED_STEPS });
  if (refused) {
    expect(answer.status, label).toBe(429);
    expect(answer.body.error, label).toMatchObject({ type: "CAPACITY", details: { limit: CAPACITY, retryable: true } });
    return undefined;
  }
  expect(answer.status, label).toBe(201);
  return { childId: answer.body.session_id as string };
}

async function release(rig: Rig, child: LiveChild, ending: PoolChildEnding["status"], label: string): Promise<void> {
  const { bus, runtime, clock } = rig;
  if (rig.kind === "delivery") {
    const { messageId, recipient } = child.message!;
    const agent = await rawConnect(bus, recipient);
    await until(() => agent.frames.some((frame) => frame.message_id === messageId));
    agent.ack(messageId);
    await until(() => rig.watch.releases.some((released) => released.childId === child.childId));
    return;
  }
  if (ending === "error") {
    runtime.pooledChild(child.childId)!.send({ type: "FAIL" });
    return;
  }
  const live = runtime.pooledCount("workflow");
  expect((await call(bus, "POST", `/sessions/${child.childId}/complete`, { summary: "done" })).status, label).toBe(200);
  // Ended, but kept readable for the retention: still counted.
  expect((await call(bus, "GET", `/sessions/${child.childId}`)).body, label).toMatchObject({ status: "completed" });
  expect(runtime.pooledCount("workflow"), `${label}: an ended workflow still counts`).toBe(live);
  clock.increment(RETENTION_MS);
}

async function runPath(path: PoolPath): Promise<void> {
  const kind: WalkedKind = deliveryPaths.has(path) ? "delivery" : "workflow";
  const clock = new SimulatedClock();
  clock.set(CLOCK_START);
  const watch = new PoolWatch(kind);
  const runtime = createRuntime({ clock, shardSize: SHARD_SIZE, maxWorkflowSessions: CAPACITY, inspect: watch.inspect });
  watch.listen(runtime);
  await runtime.start();
  let bus: CommunicationBus | undefined;
  try {
    bus = await startBus({ clock, runtime, workflowRetentionMs: RETENTION_MS, maxIdleDeliveries: 0 });
    const rig: Rig = { kind, runtime, bus, clock, watch, live: [] };
    const failing = failingSpawns(path);
    if (kind === "delivery") await register(bus, SENDER);
    for (let index = 1; index < path.steps.length; index += 1) {
      const before = path.steps[index - 1]!.state;
      const { event, state: after } = path.steps[index]!;
      const label = `step ${index}: ${kind === "delivery" ? "deliveries: " : ""}${describeSteps(path.steps.slice(1, index + 1))}`;
      const heard = watch.releases.length;
      /** The releases the real pool is expected to hear at this step: the children reaped, and how they ended. */
      let released: Array<{ child: LiveChild; ending: PoolChildEnding }> = [];

      switch (event.type) {
        case "POOL.SPAWN": {
          const refused = after.context.live === before.context.live;
          const spawned = await spawn(rig, index, failing.has(index), refused, label);
          if (spawned === undefined) break;
          const { childId, messageId } = spawned;
          const shardId = after.context.current!.shardId;
          expect(watch.shardOf(childId), `${label}: the shard of the new child`).toBe(shardId);
          rig.live.push({ childId, shardId, ...(messageId === undefined ? {} : { message: { messageId, recipient: `opencode://recipient-${index}` } }) });
          break;
        }
        case "CHILD.RELEASED": {
          const child = rig.live.find((each) => each.shardId === event.shardId);
          expect(child, `${label}: a live child in ${event.shardId}`).toBeDefined();
          await release(rig, child!, event.ending.status, label);
          released = [{ child: child!, ending: event.ending }];
          break;
        }
        case "POOL.EVICT": {
          if (event.childId === GONE) {
            runtime.evictPooled("workflow", GONE);
            break;
          }
          const child = rig.live.find((each) => each.shardId === event.childId.slice(OLDEST_OF.length))!;
          expect((await call(bus, "DELETE", `/sessions/${child.childId}`)).status, label).toBe(200);
          expect((await call(bus, "GET", `/sessions/${child.childId}`)).status, label).toBe(404);
          // An active workflow is terminated before it is evicted: it ends `done`, then is reaped.
          released = [{ child, ending: WORKFLOW_ENDED }];
          break;
        }
        case "POOL.CLEAR":
          await bus.stop();
          // Children still running are stopped where they are (no path has one ended and retained here).
          released = rig.live.map((child) => ({ child, ending: { status: "stopped" } }));
          break;
      }

      for (const { child } of released) rig.live.splice(rig.live.indexOf(child), 1);
      const expected = afterShardsAnswer(path, index);
      const heardNow = watch.releases.slice(heard).map(({ shardId, childId, ending }) => ({ shardId, childId, ending: endingView(ending) }));
      const expectedReleases = released.map(({ child, ending }) => ({ shardId: child.shardId, childId: child.childId, ending }));
      expect(heardNow.sort(byChild), `${label}: the releases the pool heard`).toEqual(expectedReleases.sort(byChild));
      expect(runtime.pooledCount(kind), `${label}: children counted`).toBe(expected.context.live);
      expect(watch.loads(), `${label}: children per shard`).toEqual(
        livePoolShards(expected.context)
          .map((shard): [string, number] => [shard.shardId, shard.live])
          .sort(byShardId),
      );
    }
  } finally {
    await bus?.stop();
    await runtime.stop();
  }
}

function byChild(a: { childId: string }, b: { childId: string }): number {
  return a.childId.localeCompare(b.childId);
}

describe("pool machine, model-based", () => {
  it("generates paths over every state", () => {
    const states = new Set(workflows.shortest.map((path) => serializeState(path.state)));
    expect(new Set(deliveries.shortest.map((path) => serializeState(path.state)))).toEqual(states);
    // Up to the capacity, over up to three shards.
    expect(Math.max(...workflows.shortest.map((path) => path.state.context.live))).toBe(CAPACITY);
    expect(Math.max(...workflows.shortest.map((path) => livePoolShards(path.state.context).length))).toBe(3);
    expect(workflowSimple.length).toBeGreaterThan(workflows.shortest.length);
  });

  it("replays every path on the machine to the state the graph says", () => {
    for (const model of [workflows, deliveries]) {
      const reached = [...model.shortest, ...model.simple, ...model.edges].map((path) => serializeState(path.state));
      expect(reached).toEqual(model.generated.map((path) => serializeState(path.state)));
    }
  });

  walkPaths({
    families: {
      shortest: [...workflows.shortest, ...deliveries.shortest],
      simple: workflowSimple,
      edges: [...workflows.edges, ...deliveries.edges],
    },
    describePath,
    runPath,
    coverage,
    name: "pool",
    covered: [poolMachine, poolShardMachine],
  });
});
