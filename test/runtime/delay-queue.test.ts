/**
 * The runtime's scheduler of XState delays: order, cancellation, one timer on the real clock, and a timer per
 * delay on a simulated one.
 */
import { describe, expect, it } from "vitest";
import { SimulatedClock, type AnyActorRef, type EventObject } from "xstate";
import type { Clock } from "../../src/index.js";
import { useDelayQueue } from "../../src/runtime/delay-queue.js";

/** A clock whose timers fire when the test moves time, each at its due time (as fake timers do). */
class ManualClock implements Clock {
  private time = 1_700_000_000_000;
  private nextHandle = 0;
  readonly timers = new Map<number, { dueAt: number; callback: () => void }>();

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, delayMs: number): unknown {
    this.nextHandle += 1;
    this.timers.set(this.nextHandle, { dueAt: this.time + Math.max(0, delayMs), callback });
    return this.nextHandle;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Moves time forward by `ms`, firing each timer due on the way at its due time, earliest first. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const next = [...this.timers].sort(([, left], [, right]) => left.dueAt - right.dueAt)[0];
      if (next === undefined || next[1].dueAt > end) break;
      this.timers.delete(next[0]);
      this.time = next[1].dueAt;
      next[1].callback();
    }
    this.time = end;
  }
}

type Scheduler = {
  schedule(source: AnyActorRef, target: AnyActorRef, event: EventObject, delay: number, id?: string): void;
  cancel(source: AnyActorRef, id: string): void;
  cancelAll(source: AnyActorRef): void;
};

/** A system whose relayed events are recorded, with the delay queue as its scheduler. */
function queueOn(clock: Clock, shareTimer: boolean): { scheduler: Scheduler; relayed: string[]; onRelay: (react: (type: string) => void) => void } {
  const relayed: string[] = [];
  let react: (type: string) => void = () => undefined;
  const system = {
    scheduler: undefined as unknown as Scheduler,
    _relay: (_source: AnyActorRef, _target: AnyActorRef, event: EventObject) => {
      relayed.push(event.type);
      react(event.type);
    },
  };
  useDelayQueue(system as unknown as AnyActorRef["system"], clock, { shareTimer });
  return { scheduler: system.scheduler, relayed, onRelay: (reaction) => (react = reaction) };
}

const actor = (name: string) => ({ name }) as unknown as AnyActorRef;

describe("the delay queue", () => {
  it("relays delays in the order they fall due, ties in the order they were scheduled, on one timer", () => {
    const clock = new ManualClock();
    const { scheduler, relayed } = queueOn(clock, true);
    const [first, second] = [actor("first"), actor("second")];
    scheduler.schedule(first, first, { type: "a" }, 300, "a");
    scheduler.schedule(second, second, { type: "b" }, 100, "b");
    scheduler.schedule(first, first, { type: "c" }, 100, "c");
    scheduler.schedule(second, second, { type: "d" }, 200, "d");
    expect(clock.timers.size).toBe(1);
    clock.advance(150);
    expect(relayed).toEqual(["b", "c"]);
    clock.advance(150);
    expect(relayed).toEqual(["b", "c", "d", "a"]);
    expect(clock.timers.size).toBe(0);
  });

  it("cancels a delay by its id, every delay of an actor that stops, and replaces a delay scheduled again under its id", () => {
    const clock = new ManualClock();
    const { scheduler, relayed } = queueOn(clock, true);
    const [first, second] = [actor("first"), actor("second")];
    scheduler.schedule(first, first, { type: "ttl" }, 100, "ttl");
    scheduler.schedule(first, first, { type: "idle" }, 50, "idle");
    scheduler.schedule(second, second, { type: "other" }, 70, "other");
    scheduler.schedule(second, second, { type: "replaced" }, 80, "again");
    scheduler.schedule(second, second, { type: "replacement" }, 90, "again");
    scheduler.cancel(first, "idle");
    scheduler.cancel(first, "unknown");
    clock.advance(75);
    expect(relayed).toEqual(["other"]);
    scheduler.cancelAll(first);
    clock.advance(100);
    expect(relayed).toEqual(["other", "replacement"]);
    expect(clock.timers.size).toBe(0);
  });

  it("catches up at once with every delay overdue when its timer fires, and leaves those scheduled meanwhile for the next turn", () => {
    const clock = new ManualClock();
    const { scheduler, relayed, onRelay } = queueOn(clock, true);
    const source = actor("source");
    for (const [type, delay] of [
      ["x", 10],
      ["y", 20],
      ["z", 30],
    ] as const)
      scheduler.schedule(source, source, { type }, delay, type);
    // A delay of 0 scheduled while the due ones are relayed: relayed after them, in a later turn.
    onRelay((type) => {
      if (type === "x") scheduler.schedule(source, source, { type: "now" }, 0, "now");
    });
    const timer = [...clock.timers.values()][0]!;
    clock.timers.clear();
    (clock as unknown as { time: number }).time += 1_000;
    timer.callback();
    expect(relayed).toEqual(["x", "y", "z"]);
    clock.advance(0);
    expect(relayed).toEqual(["x", "y", "z", "now"]);
  });

  it("gives each delay a timer of its own on another clock, which orders them among its other timers", () => {
    const clock = new SimulatedClock();
    const { scheduler, relayed } = queueOn(clock, false);
    const source = actor("source");
    scheduler.schedule(source, source, { type: "early" }, 100, "early");
    scheduler.schedule(source, source, { type: "late" }, 300, "late");
    scheduler.schedule(source, source, { type: "cancelled" }, 250, "cancelled");
    clock.setTimeout(() => relayed.push("clock's own"), 200);
    scheduler.cancel(source, "cancelled");
    clock.increment(400);
    expect(relayed).toEqual(["early", "clock's own", "late"]);
  });
});
