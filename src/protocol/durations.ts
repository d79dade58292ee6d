/**
 * Durations as the envelope writes them: `"1500ms"`, `"300s"`, `"5m"`, `"1h"`.
 */
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import { BridgeError } from "../errors.js";

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** The milliseconds of a duration text, or undefined when it is none (or is not above 0 and at most `MAX_TIMER_DELAY_MS`). */
function durationMs(text: string): number | undefined {
  const found = DURATION.exec(text);
  if (found === null) return undefined;
  const ms = Number(found[1]) * UNIT_MS[found[2] as keyof typeof UNIT_MS];
  return ms > 0 && ms <= MAX_TIMER_DELAY_MS ? ms : undefined;
}

/** Whether a text is a duration this module can parse: a positive number and a unit, at most `MAX_TIMER_DELAY_MS`. */
export function isDuration(text: string): boolean {
  return durationMs(text) !== undefined;
}

/** Milliseconds of a duration such as `"300s"`; anything else is CONFIG naming `field`. */
export function parseDuration(text: string, field = "duration"): number {
  const ms = durationMs(text);
  if (ms === undefined) {
    throw new BridgeError(
      "CONFIG",
      `${field}: expected a duration such as "1500ms", "300s", "5m" or "1h", up to ${MAX_TIMER_DELAY_MS} ms; got ${JSON.stringify(text)}`,
      { field },
    );
  }
  return Math.round(ms);
}

/** The duration text of a number of milliseconds, as the envelope writes it. */
export function formatDuration(ms: number): string {
  return `${Math.round(ms)}ms`;
}
