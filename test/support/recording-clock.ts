/**
 * A simulated clock that also records the delay of every timer set on it, so that a test can wait for a
 * retry to be scheduled and check how long it waits.
 */
import { SimulatedClock } from "xstate";
import type { Clock } from "../../src/index.js";

/** The clock and the delays asked of it, in order. */
export interface RecordingClock extends Clock {
  delays: number[];
  /** Moves simulated time forward, firing the timers due. */
  increment(ms: number): void;
}

/** A `SimulatedClock` at a fixed epoch that records each `setTimeout` delay. */
export function recordingClock(): RecordingClock {
  const clock = new SimulatedClock();
  clock.set(1_700_000_000_000);
  const delays: number[] = [];
  return {
    delays,
    now: () => clock.now(),
    setTimeout: (callback, delayMs) => {
      delays.push(delayMs);
      return clock.setTimeout(callback, delayMs);
    },
    clearTimeout: (handle) => clock.clearTimeout(handle as number),
    increment: (ms) => clock.increment(ms),
  };
}
