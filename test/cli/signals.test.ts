/**
 * The first signal stops in order; the same Ctrl-C seen twice (from the terminal and forwarded by npm) is not
 * taken for an impatient second one, however late the copy comes; a real second one ends the process.
 */
import { afterEach, describe, expect, it } from "vitest";
import { FORWARDED_SIGNAL_MS, handleSignals, REPEATED_SIGNAL_MS } from "../../src/cli/signals.js";

const disposers: Array<() => void> = [];
afterEach(() => {
  for (const dispose of disposers.splice(0)) dispose();
});

/** Handles SIGINT and SIGTERM on a clock the test moves; returns what happened, in order. */
function handled(forwarded: boolean): { events: string[]; signal: (signal: NodeJS.Signals, atMs: number) => void } {
  let clock = 0;
  const events: string[] = [];
  const dispose = handleSignals(["SIGINT", "SIGTERM"], (signal) => events.push(`stop on ${signal}`), {
    forwarded,
    now: () => clock,
    kill: (signal) => events.push(`killed by ${signal}`),
  });
  disposers.push(dispose);
  return {
    events,
    signal: (signal, atMs) => {
      clock = atMs;
      process.emit(signal, signal);
    },
  };
}

describe("handleSignals", () => {
  it("under npm takes the first repeat of the same signal for npm's copy of it, seconds late, and a later one for a second Ctrl-C", () => {
    const { events, signal } = handled(true);
    signal("SIGINT", 0);
    signal("SIGINT", 5 * REPEATED_SIGNAL_MS);
    expect(events).toEqual(["stop on SIGINT"]);
    signal("SIGINT", 5 * REPEATED_SIGNAL_MS + 1);
    expect(events).toEqual(["stop on SIGINT", "killed by SIGINT"]);
  });

  it("under npm takes no other signal, nor one past FORWARDED_SIGNAL_MS, for npm's copy", () => {
    const other = handled(true);
    other.signal("SIGTERM", 0);
    other.signal("SIGINT", 2 * REPEATED_SIGNAL_MS);
    expect(other.events).toEqual(["stop on SIGTERM", "killed by SIGINT"]);
    const late = handled(true);
    late.signal("SIGINT", 0);
    late.signal("SIGINT", FORWARDED_SIGNAL_MS);
    expect(late.events).toEqual(["stop on SIGINT", "killed by SIGINT"]);
  });

  it("without npm takes a repeat within REPEATED_SIGNAL_MS for the same signal and a later one for a second", () => {
    const { events, signal } = handled(false);
    signal("SIGTERM", 0);
    signal("SIGTERM", REPEATED_SIGNAL_MS - 1);
    expect(events).toEqual(["stop on SIGTERM"]);
    signal("SIGINT", REPEATED_SIGNAL_MS);
    expect(events).toEqual(["stop on SIGTERM", "killed by SIGINT"]);
  });

  it("under npm still takes repeats within REPEATED_SIGNAL_MS of the first for the same Ctrl-C", () => {
    const { events, signal } = handled(true);
    signal("SIGINT", 0);
    signal("SIGINT", 1);
    signal("SIGINT", REPEATED_SIGNAL_MS - 1);
    expect(events).toEqual(["stop on SIGINT"]);
  });

  it("removes its handlers when disposed", () => {
    const before = process.listenerCount("SIGINT");
    const dispose = handleSignals(["SIGINT"], () => undefined, { forwarded: false });
    expect(process.listenerCount("SIGINT")).toBe(before + 1);
    dispose();
    expect(process.listenerCount("SIGINT")).toBe(before);
  });
});
