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

/** A `\uD800`–`\uDFFF` escape: the only way JSON text decoded from UTF-8 can hold a lone surrogate. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Throws CONFIG (HTTP 400) when `value`, parsed from `text`, nests too deep (`checkJsonDepth`) or holds a string or
 * key with an unpaired UTF-16 surrogate (`"\ud800"`): no store can keep one, and strict JSON readers of every
 * listing it would appear in (`jq`, most languages) refuse it. Only text with a surrogate escape is walked for it.
 */
export function checkJsonInput(value: unknown, text: string, field: string): void {
  checkJsonDepth(value, field);
  if (SURROGATE_ESCAPE.test(text) && !wellFormed(value)) {
    throw new BridgeError("CONFIG", `${field}: a string holds an unpaired UTF-16 surrogate (a \\ud800-\\udfff escape without its pair)`, { field });
  }
}

/** Whether every string and key in `value` (nested no deeper than `MAX_JSON_DEPTH`) is well-formed UTF-16. */
function wellFormed(value: unknown): boolean {
  if (typeof value === "string") return !LONE_SURROGATE.test(value);
  if (value === null || typeof value !== "object") return true;
  if (Array.isArray(value)) return value.every(wellFormed);
  for (const key in value) {
    if (LONE_SURROGATE.test(key) || !wellFormed((value as Record<string, unknown>)[key])) return false;
  }
  return true;
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
