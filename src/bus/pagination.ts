/**
 * Pages of a listing (`GET /agents`, `GET /sessions`): `?limit=` (1 to 1,000, default 100) and the opaque
 * `?cursor=` of the previous page's `next_cursor`. A page is built from its items alone, so a listing of
 * 100,000 costs a client and the server what one page does; and a page stops at `MAX_PAGE_CHARS` of JSON, so
 * that large items (a workflow keeps up to a few MiB) make shorter pages, not an answer of gigabytes.
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { parseWith } from "../validation.js";
import { isUnstorableId } from "../store/keys.js";

/** The most items one page holds. */
export const MAX_PAGE_SIZE = 1_000;
/** Items per page when `limit` is not given. */
export const DEFAULT_PAGE_SIZE = 100;
/** A page ends before the item that would take its items' JSON past this many characters (it holds one item at least). */
export const MAX_PAGE_CHARS = 8 * 1024 * 1024;

const limitSchema = z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE);

/**
 * Where a page starts and how long it is: `offset`, the index of its first item, for a listing in memory; or
 * `after`, the key of the last item before it, for a listing read from the store in key order.
 */
export interface PageRequest {
  offset: number;
  after?: string;
  limit: number;
}

/**
 * Reads `limit` and `cursor` from a query; a bad one is CONFIG. An offset cursor is the index of the next item:
 * items added or removed meanwhile may shift a page by as many. A key cursor (from a listing in key order) is
 * the key of the last item given: the next page starts after it.
 */
export function pageRequestOf(query: URLSearchParams): PageRequest {
  const limit = parseWith(limitSchema, query.get("limit") ?? undefined, "limit");
  const cursor = query.get("cursor");
  if (cursor === null) return { offset: 0, limit };
  const decoded = /^[A-Za-z0-9_-]+$/.test(cursor) ? Buffer.from(cursor, "base64url").toString("utf8") : "";
  const offset = /^o:(\d{1,15})$/.exec(decoded);
  if (offset !== null) return { offset: Number(offset[1]), limit };
  // A key no store can hold (a NUL) was given by no listing: CONFIG here, not the store's INTERNAL for its `after`.
  if (decoded.startsWith("k:") && decoded.length > 2 && !decoded.includes("\uFFFD") && !isUnstorableId(decoded.slice(2))) {
    return { offset: 0, after: decoded.slice(2), limit };
  }
  throw badCursor();
}

/** CONFIG for a cursor no listing gave, or one of another listing (an offset where keys are listed, or the reverse). */
export function badCursor(): BridgeError {
  return new BridgeError("CONFIG", "cursor: not a cursor this server gave (use next_cursor as it is)", { field: "cursor" });
}

/** The cursor of the page that starts after the item of key `key` (a listing in key order). */
export function keyCursor(key: string): string {
  return Buffer.from(`k:${key}`, "utf8").toString("base64url");
}

/**
 * Whether a page that has `items` of `chars` characters of JSON so far has room for one more of `more`
 * characters: always for its first item, then within `MAX_PAGE_CHARS`.
 */
export function pageHasRoom(items: number, chars: number, more: number): boolean {
  return items === 0 || chars + more <= MAX_PAGE_CHARS;
}

/** One page of `items` (built lazily: only the page's items are made), with `next_cursor` when more follow. */
export function pageOf<T>(items: Iterable<() => T>, { offset, after, limit }: PageRequest): { items: T[]; next_cursor?: string } {
  if (after !== undefined) throw badCursor();
  const page: T[] = [];
  let chars = 0;
  let index = 0;
  const next = (): string => Buffer.from(`o:${index}`, "utf8").toString("base64url");
  for (const make of items) {
    if (index >= offset + limit) return { items: page, next_cursor: next() };
    if (index >= offset) {
      const item = make();
      const itemChars = JSON.stringify(item)?.length ?? 0;
      if (!pageHasRoom(page.length, chars, itemChars)) return { items: page, next_cursor: next() };
      page.push(item);
      chars += itemChars;
    }
    index += 1;
  }
  return { items: page };
}
