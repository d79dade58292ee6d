/**
 * `restorableLogic` against the XState restore pitfalls, on a bare machine: a restored child runs, its `after`
 * delays (of the root and of nested states) fire with the time they had left and are cancelled by their
 * state's exit, lookups by system id find it, and one restored in a final state tells its parent at once.
 */
import { describe, expect, it } from "vitest";
import { assign, createActor, setup, SimulatedClock, spawnChild, type AnyActorRef, type AnyMachineSnapshot, type Snapshot } from "xstate";
import { restorableLogic, type Restoration } from "../../src/runtime/restore.js";

const START = 1_000_000;

/** A job: `queued → running.{ working → checking } → done`, with a deadline at the root and a timeout per nested state. */
const job = setup({
  types: { context: {} as { startedAt: number; log: string[] }, events: {} as { type: "START" } | { type: "CHECK" } | { type: "FINISH" } },
  delays: { deadline: 10_000 },
}).createMachine({
  id: "job",
  context: { startedAt: START, log: [] },
  initial: "queued",
  after: { deadline: { target: ".expired" } },
  states: {
    queued: { on: { START: "running" } },
    running: {
      initial: "working",
      states: {
        working: { on: { CHECK: "checking" }, after: { 3_000: { actions: assign({ log: ({ context }) => [...context.log, "working timed out"] }) } } },
        checking: { on: { FINISH: "#job.done" } },
      },
    },
    expired: { type: "final" },
    done: { type: "final" },
  },
  output: ({ context }) => ({ log: context.log }),
});

/** A parent that spawns the job with a system id, and records how its children end. */
function parentOf(logic: typeof job) {
  return setup({ actors: { job: logic } }).createMachine({
    context: { ended: [] as unknown[] },
    entry: spawnChild("job", { id: "job-1", systemId: "job:1" }),
    on: { "xstate.done.actor.job-1": { actions: assign({ ended: ({ context, event }) => [...context.ended, event.output] }) } },
  });
}

/** Runs the job to `events` on `clock`, and returns its persisted snapshot as the store would hold it. */
function persistedAfter(clock: SimulatedClock, events: Array<{ type: "START" | "CHECK" | "FINISH" }>): Snapshot<unknown> {
  const parent = createActor(parentOf(job), { clock });
  parent.start();
  const child = parent.system.get("job:1") as AnyActorRef;
  for (const event of events) child.send(event);
  const persisted = JSON.parse(JSON.stringify(child.getPersistedSnapshot())) as Snapshot<unknown>;
  parent.stop();
  return persisted;
}

/** Restores the job from `persisted` under a new parent; `dueAt` says when each delay falls due. */
function restore(clock: SimulatedClock, persisted: Snapshot<unknown>, dueAt: Restoration["dueAt"]) {
  const logic = restorableLogic(
    job,
    (_input, actorScope) => ({ snapshot: job.restoreSnapshot(persisted, actorScope as never) as AnyMachineSnapshot, dueAt }),
    clock,
  );
  const parent = createActor(parentOf(logic), { clock });
  parent.start();
  return { parent, child: () => parent.system.get("job:1") as AnyActorRef | undefined };
}

describe("restorableLogic", () => {
  it("restores a spawned child that runs: it takes events, reaches its final state, and its parent hears it done", () => {
    const clock = new SimulatedClock();
    clock.set(START);
    const persisted = persistedAfter(clock, [{ type: "START" }, { type: "CHECK" }]);
    const { parent, child } = restore(clock, persisted, () => START + 10_000);
    expect(child()?.getSnapshot().value).toEqual({ running: "checking" });
    child()!.send({ type: "FINISH" });
    expect(parent.getSnapshot().context.ended).toEqual([{ log: [] }]);
    expect(child()).toBeUndefined();
    parent.stop();
  });

  it("finds the restored child by its system id", () => {
    const clock = new SimulatedClock();
    clock.set(START);
    const { parent, child } = restore(clock, persistedAfter(clock, [{ type: "START" }]), () => START + 10_000);
    expect(child()?.getSnapshot().value).toEqual({ running: "working" });
    expect(parent.system.get("job:1")).toBe(child());
    parent.stop();
  });

  it("fires the `after` delays of the root and of nested states with the time they had left", () => {
    const clock = new SimulatedClock();
    clock.set(START);
    const persisted = persistedAfter(clock, [{ type: "START" }]);
    // The process comes back 2 s after the job started working: 1 s is left of the nested 3 s, 8 s of the root's 10 s.
    clock.set(START + 2_000);
    const dueAt = (delay: string | number): number => (delay === "deadline" ? START + 10_000 : START + Number(delay));
    const { parent, child } = restore(clock, persisted, dueAt);
    clock.increment(999);
    expect(child()?.getSnapshot().context.log).toEqual([]);
    clock.increment(1);
    expect(child()?.getSnapshot().context.log).toEqual(["working timed out"]);
    clock.increment(6_999);
    expect(child()?.getSnapshot().status).toBe("active");
    clock.increment(1);
    expect(parent.getSnapshot().context.ended).toEqual([{ log: ["working timed out"] }]);
    parent.stop();
  });

  it("fires overdue delays at once, in the order they fell due", () => {
    const clock = new SimulatedClock();
    clock.set(START);
    const persisted = persistedAfter(clock, [{ type: "START" }]);
    clock.set(START + 60_000);
    const { parent } = restore(clock, persisted, (delay) => (delay === "deadline" ? START + 10_000 : START + Number(delay)));
    clock.increment(0);
    // The nested 3 s fell due before the root's 10 s deadline: it fired first, then the deadline ended the job.
    expect(parent.getSnapshot().context.ended).toEqual([{ log: ["working timed out"] }]);
    parent.stop();
  });

  it("lets a state's exit cancel its resumed delay", () => {
    const clock = new SimulatedClock();
    clock.set(START);
    const persisted = persistedAfter(clock, [{ type: "START" }]);
    const { parent, child } = restore(clock, persisted, (delay) => (delay === "deadline" ? START + 10_000 : START + Number(delay)));
    child()!.send({ type: "CHECK" });
    clock.increment(5_000);
    expect(child()?.getSnapshot()).toMatchObject({ value: { running: "checking" }, context: { log: [] } });
    parent.stop();
  });

  it("restores a child in a final state: its parent hears it done at once", () => {
    const clock = new SimulatedClock();
    clock.set(START);
    const persisted = persistedAfter(clock, [{ type: "START" }, { type: "CHECK" }, { type: "FINISH" }]);
    const { parent, child } = restore(clock, persisted, () => START);
    expect(parent.getSnapshot().context.ended).toEqual([{ log: [] }]);
    expect(child()).toBeUndefined();
    parent.stop();
  });
});
