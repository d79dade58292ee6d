/**
 * The runtime's scheduler of XState delays: one timer on the clock for the whole system, and a queue of the
 * delayed events ordered by when they fall due.
 *
 * XState 5's own scheduler arms a timer per delayed event and keeps two string-keyed tables of them, and its
 * `cancelAll(actor)` (run whenever any actor stops, every finished prompt included) walks every delayed event
 * of the system. Every session holds two delays (its TTL and idle expiry), so at 100,000 sessions that was
 * 200,000 timers and about 1 KiB of heap per session for the timers and their bookkeeping (a Node `Timeout`,
 * its closure, XState's record, two keys of about 50 characters, two table entries), and O(sessions) per
 * stop. Here a delay is one small record in a binary heap, indexed by the actor that scheduled it: scheduling
 * and cancelling cost O(log n), stopping an actor what that actor scheduled.
 *
 * On the real clock, one timer serves the whole system: it is armed for the delay that falls due first, and
 * when it fires every delay due by then is relayed (as XState relays them), in the order they fell due, ties
 * in the order they were scheduled; a process that was busy catches up in one turn, as it would with a timer
 * each. On any other clock (a simulated one in tests) every delay keeps a timer of its own, as with XState's
 * scheduler, so that the clock interleaves them with its other timers exactly as before. This relies on
 * `system.scheduler` being replaceable, which troupe pins by pinning xstate's version.
 */
import type { AnyActorRef, EventObject } from "xstate";
import type { Clock } from "../clock.js";

/** One delayed event. */
interface Delay {
  /**
   * When it falls due, in milliseconds since the queue was made: a small integer, which V8 keeps in the
   * record itself (an epoch time would take a box of its own).
   */
  readonly dueAt: number;
  /** Order of scheduling: breaks ties between delays due at the same moment. */
  readonly seq: number;
  readonly source: AnyActorRef;
  readonly target: AnyActorRef;
  readonly event: EventObject;
  readonly id: string;
  /** Its index in the heap; -1 once it fired or was cancelled. */
  position: number;
  /** The next delay scheduled by the same source (each source's delays form a list). */
  nextOfSource: Delay | undefined;
}

/** The parts of XState's actor system the queue uses. */
interface DelayedSystem {
  scheduler: {
    schedule(source: AnyActorRef, target: AnyActorRef, event: EventObject, delay: number, id: string | undefined): void;
    cancel(source: AnyActorRef, id: string): void;
    cancelAll(actorRef: AnyActorRef): void;
  };
  _relay(source: AnyActorRef, target: AnyActorRef, event: EventObject): void;
}

/** Options of `useDelayQueue`. */
export interface DelayQueueOptions {
  /**
   * One timer for every delay, relaying all that are due when it fires: for the real clock. Otherwise each
   * delay has a timer of its own (a simulated clock orders them among its other timers).
   */
  shareTimer: boolean;
}

/** A delay falls due before another: earlier, or scheduled first. */
function before(left: Delay, right: Delay): boolean {
  return left.dueAt < right.dueAt || (left.dueAt === right.dueAt && left.seq < right.seq);
}

/** Delays by due time, and by source. */
class DelayQueue {
  private readonly heap: Delay[] = [];
  /** The first of each source's delays; the others follow by `nextOfSource`. */
  private readonly bySource = new Map<AnyActorRef, Delay>();
  private seq = 0;
  /** The shared timer, armed for the first delay's due time. */
  private timer: unknown;
  /** Each delay's own timer, when the timer is not shared. */
  private readonly timers = new Map<Delay, unknown>();
  /** The clock's time when the queue was made: due times count from here. */
  private readonly origin: number;
  /** Relaying due delays: the shared timer is armed again once they are all relayed. */
  private firing = false;

  constructor(
    private readonly system: DelayedSystem,
    private readonly clock: Clock,
    private readonly options: DelayQueueOptions,
  ) {
    this.origin = clock.now();
  }

  /** The clock's time, counted from `origin`. */
  private now(): number {
    return this.clock.now() - this.origin;
  }

  schedule(source: AnyActorRef, target: AnyActorRef, event: EventObject, delayMs: number, id: string | undefined): void {
    // XState names the delays of `after` and of `raise` with an id; an anonymous one can only be cancelled with its actor.
    const delayId = id ?? `troupe.delay.${this.seq}`;
    // The same id again replaces the delay (XState would have left the first timer armed and uncancellable).
    this.cancel(source, delayId);
    const delay: Delay = {
      dueAt: this.now() + delayMs,
      seq: this.seq++,
      source,
      target,
      event,
      id: delayId,
      position: this.heap.length,
      nextOfSource: this.bySource.get(source),
    };
    this.bySource.set(source, delay);
    this.heap.push(delay);
    this.siftUp(delay.position);
    if (!this.options.shareTimer)
      this.timers.set(
        delay,
        this.clock.setTimeout(() => this.fireOne(delay), delayMs),
      );
    else if (delay.position === 0) this.armSharedTimer();
  }

  cancel(source: AnyActorRef, id: string): void {
    let previous: Delay | undefined;
    for (let delay = this.bySource.get(source); delay !== undefined; previous = delay, delay = delay.nextOfSource) {
      if (delay.id !== id) continue;
      this.unlink(delay, previous);
      this.remove(delay);
      return;
    }
  }

  cancelAll(source: AnyActorRef): void {
    for (let delay = this.bySource.get(source); delay !== undefined; delay = delay.nextOfSource) this.remove(delay);
    this.bySource.delete(source);
  }

  /** Arms the shared timer for the first delay (or none), unless due delays are being relayed. */
  private armSharedTimer(): void {
    if (this.firing) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    const first = this.heap[0];
    this.timer = first === undefined ? undefined : this.clock.setTimeout(() => this.fireDue(), Math.max(0, first.dueAt - this.now()));
  }

  /** The shared timer: relays the delays due, in order; those they schedule that are due at once wait for the next turn. */
  private fireDue(): void {
    this.timer = undefined;
    const now = this.now();
    const scheduledBefore = this.seq;
    this.firing = true;
    try {
      for (let next = this.heap[0]; next !== undefined && next.dueAt <= now && next.seq < scheduledBefore; next = this.heap[0]) this.fireOne(next);
    } finally {
      this.firing = false;
      this.armSharedTimer();
    }
  }

  private fireOne(delay: Delay): void {
    // Its own timer has fired: clearing it would only make a simulated clock start its round of timers again.
    this.timers.delete(delay);
    this.cancel(delay.source, delay.id);
    this.system._relay(delay.source, delay.target, delay.event);
  }

  private unlink(delay: Delay, previous: Delay | undefined): void {
    if (previous !== undefined) previous.nextOfSource = delay.nextOfSource;
    else if (delay.nextOfSource !== undefined) this.bySource.set(delay.source, delay.nextOfSource);
    else this.bySource.delete(delay.source);
  }

  /** Takes a delay out of the heap and clears its timer; the shared timer moves on when it was the first. */
  private remove(delay: Delay): void {
    const { position } = delay;
    if (position < 0) return;
    delay.position = -1;
    const timer = this.timers.get(delay);
    if (timer !== undefined) {
      this.clock.clearTimeout(timer);
      this.timers.delete(delay);
    }
    const last = this.heap.pop() as Delay;
    if (last !== delay) {
      this.heap[position] = last;
      last.position = position;
      this.siftUp(position);
      this.siftDown(last.position);
    }
    if (position === 0 && this.options.shareTimer) this.armSharedTimer();
  }

  private siftUp(position: number): void {
    const delay = this.heap[position] as Delay;
    let at = position;
    while (at > 0) {
      const parentAt = (at - 1) >> 1;
      const parent = this.heap[parentAt] as Delay;
      if (!before(delay, parent)) break;
      this.heap[at] = parent;
      parent.position = at;
      at = parentAt;
    }
    this.heap[at] = delay;
    delay.position = at;
  }

  private siftDown(position: number): void {
    const delay = this.heap[position] as Delay;
    const { length } = this.heap;
    let at = position;
    for (;;) {
      const leftAt = 2 * at + 1;
      if (leftAt >= length) break;
      const rightAt = leftAt + 1;
      const left = this.heap[leftAt] as Delay;
      const right = this.heap[rightAt];
      const childAt = right !== undefined && before(right, left) ? rightAt : leftAt;
      const child = this.heap[childAt] as Delay;
      if (!before(child, delay)) break;
      this.heap[at] = child;
      child.position = at;
      at = childAt;
    }
    this.heap[at] = delay;
    delay.position = at;
  }
}

/** Replaces `system.scheduler` with a delay queue on `clock` (give it the clock the system's actors run on). */
export function useDelayQueue(system: AnyActorRef["system"], clock: Clock, options: DelayQueueOptions): void {
  const delayed = system as unknown as DelayedSystem;
  const queue = new DelayQueue(delayed, clock, options);
  delayed.scheduler = {
    schedule: (source, target, event, delay, id) => queue.schedule(source, target, event, delay, id),
    cancel: (source, id) => queue.cancel(source, id),
    cancelAll: (actorRef) => queue.cancelAll(actorRef),
  };
}
