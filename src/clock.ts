/**
 * The clock every timer and timestamp of a runtime goes through, so that tests can drive time.
 */

/** A source of time and timers. XState's `SimulatedClock` satisfies it. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real clock. It reads the globals at each call, so `vi.useFakeTimers()` drives it. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/**
 * The same clock with its timers unref'd where the handle allows: what session expiry runs on, so that
 * idle sessions alone do not keep a process alive.
 */
export function unrefClock(clock: Clock): Clock {
  return {
    now: () => clock.now(),
    setTimeout: (callback, delayMs) => {
      const handle = clock.setTimeout(callback, delayMs);
      if (typeof handle === "object" && handle !== null && "unref" in handle && typeof handle.unref === "function") (handle as { unref: () => void }).unref();
      return handle;
    },
    clearTimeout: (handle) => clock.clearTimeout(handle),
  };
}
