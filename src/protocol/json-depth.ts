/**
 * The nesting bound of every JSON value troupe accepts. `JSON.parse` takes any depth, but a value nested a few
 * thousand levels deep later breaks `JSON.stringify` ("Maximum call stack size exceeded") wherever it is stored
 * and read back: one small request would make every later listing fail. Bounded at the edge instead.
 */
import { BridgeError } from "../errors.js";

/** The deepest nesting of arrays and objects accepted in a request body or a frame. */
export const MAX_JSON_DEPTH = 64;

/** Throws CONFIG (HTTP 400) when `value` nests arrays or objects deeper than `MAX_JSON_DEPTH`. Iterative: any input is safe. */
export function checkJsonDepth(value: unknown, field: string): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop() as [unknown, number];
    if (current === null || typeof current !== "object") continue;
    if (depth > MAX_JSON_DEPTH) {
      throw new BridgeError("CONFIG", `${field}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`, { field, limit: MAX_JSON_DEPTH });
    }
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
}
