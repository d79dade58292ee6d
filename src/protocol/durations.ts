/**
 * Durations as the envelope writes them: `"1500ms"`, `"300s"`, `"5m"`, `"1h"`.
 */
import { MAX_TIMER_DELAY_MS } from "../../machines/session.machine.js";
import { BridgeError } from "../errors.js";


const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** Whether a text is a duration this module can parse: a positive number and a unit, at most `MAX_TIMER_DELAY_MS`. */
export function isDuration(text: string): boolean {
  const found = DURATION.exec(text);
  if (found === null) return false;
  const ms = Number(found[1]) * UNIT_MS[found[2] as keyof typeof UNIT_MS];
  return ms > 0 && ms <= MAX_TIMER_DELAY_MS;
}

/** Milliseconds of a duration such as `"300s"`; anything else is CONFIG naming `field`. */
export function parseDuration(text: string, field = "duration"): number {
  if (!isDuration(text)) {
    throw new BridgeError("CONFIG", `${field}: expected a duration such as "1500ms", "300s", "5m" or "1h", up to ${MAX_TIMER_DELAY_MS} ms; got ${JSON.stringify(text)}`, { field });
  }
  const found = DURATION.exec(text) as RegExpExecArray;
  return Math.round(Number(found[1]) * UNIT_MS[found[2] as keyof typeof UNIT_MS]);
}

/** The duration text of a number of milliseconds, as the envelope writes it. */
export function formatDuration(ms: number): string {
  return `${Math.round(ms)}ms`;
}
