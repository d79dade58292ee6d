/**
 * Record keys: which collections and ids a store accepts, and the one order in which every store lists them.
 */
import { BridgeError } from "../errors.js";
import { STORE_COLLECTIONS, type ListOptions, type StoreCollection } from "./store.js";

// Lone surrogates would not survive the UTF-8 of a database, and PostgreSQL's text holds no NUL: an id must
// read back as it was written, in every store.
const LONE_SURROGATE = /\p{Cs}/u;

function unstorable(text: string): boolean {
  return LONE_SURROGATE.test(text) || text.includes("\u0000");
}

/** Throws INTERNAL unless `collection` is one of `STORE_COLLECTIONS` (a caller outside TypeScript may pass anything). */
export function checkCollection(collection: string): asserts collection is StoreCollection {
  if (!(STORE_COLLECTIONS as readonly string[]).includes(collection)) {
    throw new BridgeError("INTERNAL", `Unknown store collection ${JSON.stringify(collection)}`, { collection });
  }
}

/** Throws INTERNAL unless `collection` is a store collection and `id` a non-empty, well-formed string without NUL. */
export function checkRecordKey(collection: string, id: string): void {
  checkCollection(collection);
  if (typeof id !== "string" || id.length === 0 || unstorable(id)) {
    throw new BridgeError("INTERNAL", `Invalid store id in ${collection}: ids are non-empty well-formed strings`, { collection });
  }
}

/** Whether `id` is one no store can hold (a lone surrogate, a NUL): no record has it, so a read finds nothing. */
export function isUnstorableId(id: string): boolean {
  return typeof id === "string" && id.length > 0 && unstorable(id);
}

/**
 * Throws INTERNAL unless `list`'s options are well formed: `prefix`, `node` and `after` well-formed strings without
 * NUL (the empty prefix lists everything), `limit` and `maxBytes` positive integers.
 */
export function checkListOptions(collection: string, { prefix, node, after, limit, maxBytes }: ListOptions): void {
  checkCollection(collection);
  for (const [option, text] of Object.entries({ prefix, node, after })) {
    if (text !== undefined && (typeof text !== "string" || unstorable(text))) {
      throw new BridgeError("INTERNAL", `Invalid store list ${option} in ${collection}: it must be a well-formed string`, { collection, option });
    }
  }
  for (const [option, count] of Object.entries({ limit, maxBytes })) {
    if (count !== undefined && (!Number.isSafeInteger(count) || count < 1)) {
      throw new BridgeError("INTERNAL", `Invalid store list ${option} in ${collection}: it must be a positive integer`, { collection, option });
    }
  }
}

/**
 * Orders strings by code point, as databases order UTF-8 text (JavaScript's `<` orders UTF-16 units, which
 * puts U+E000…U+FFFF after the characters beyond U+FFFF).
 */
export function compareCodePoints(left: string, right: string): number {
  const length = Math.min(left.length, right.length);
  for (let index = 0; index < length; index++) {
    const leftUnit = left.charCodeAt(index);
    const rightUnit = right.charCodeAt(index);
    if (leftUnit !== rightUnit) return codePointRank(leftUnit) - codePointRank(rightUnit);
  }
  return left.length - right.length;
}

// Moves surrogates (U+D800…U+DFFF, which only start characters beyond U+FFFF) above U+E000…U+FFFF.
function codePointRank(unit: number): number {
  if (unit >= 0xd800 && unit <= 0xdfff) return unit + 0x2000;
  if (unit >= 0xe000) return unit - 0x800;
  return unit;
}
