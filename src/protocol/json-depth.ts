/**
 * The nesting bound of every JSON value troupe accepts. `JSON.parse` takes any depth, but a value nested a few
 * thousand levels deep later breaks `JSON.stringify` ("Maximum call stack size exceeded") wherever it is stored
 * and read back: one small request would make every later listing fail. Bounded at the edge instead.
 */
import { BridgeError } from "../errors.js";

/** The deepest nesting of arrays and objects accepted in a request body or a frame. */
export const MAX_JSON_DEPTH = 64;

/**
 * Throws CONFIG (HTTP 400) when `value` nests arrays or objects deeper than `MAX_JSON_DEPTH`. The recursion stops
 * at that depth, so any input is safe; it allocates nothing, as every frame and body goes through it.
 */
export function checkJsonDepth(value: unknown, field: string): void {
  if (!withinDepth(value, 1)) throw new BridgeError("CONFIG", `${field}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`, { field, limit: MAX_JSON_DEPTH });
}

/** Whether `value`, at `depth`, nests no deeper than `MAX_JSON_DEPTH`. */
function withinDepth(value: unknown, depth: number): boolean {
  if (value === null || typeof value !== "object") return true;
  if (depth > MAX_JSON_DEPTH) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (!withinDepth(item, depth + 1)) return false;
    return true;
  }
  for (const key in value) {
    if (!withinDepth((value as Record<string, unknown>)[key], depth + 1)) return false;
  }
  return true;
}
