/**
 * Pages of a listing (`GET /agents`, `GET /sessions`): `?limit=` (1 to 1,000, default 100) and the opaque
 * `?cursor=` of the previous page's `next_cursor`. A page is built from its items alone, so a listing of
 * 100,000 costs a client and the server what one page does.
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { parseWith } from "../validation.js";

/** The most items one page holds. */
export const MAX_PAGE_SIZE = 1_000;
/** Items per page when `limit` is not given. */
export const DEFAULT_PAGE_SIZE = 100;

const limitSchema = z.coerce.number().int().min(1).max(MAX_PAGE_SIZE).default(DEFAULT_PAGE_SIZE);

/** Where a page starts and how long it is. */
export interface PageRequest {
  offset: number;
  limit: number;
}

/**
 * Reads `limit` and `cursor` from a query; a bad one is CONFIG. The cursor is the offset of the next item:
 * items added or removed meanwhile may shift a page by as many.
 */
export function pageRequestOf(query: URLSearchParams): PageRequest {
  const limit = parseWith(limitSchema, query.get("limit") ?? undefined, "limit");
  const cursor = query.get("cursor");
  if (cursor === null) return { offset: 0, limit };
  const decoded = /^[A-Za-z0-9_-]+$/.test(cursor) ? /^o:(\d{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8")) : null;
  const offset = decoded === null ? Number.NaN : Number(decoded[1]);
  if (!Number.isSafeInteger(offset)) {
    throw new BridgeError("CONFIG", "cursor: not a cursor this server gave (use next_cursor as it is)", { field: "cursor" });
  }
  return { offset, limit };
}

/** One page of `items` (built lazily: only the page's items are made), with `next_cursor` when more follow. */
export function pageOf<T>(items: Iterable<() => T>, { offset, limit }: PageRequest): { items: T[]; next_cursor?: string } {
  const page: T[] = [];
  let index = 0;
  for (const make of items) {
    if (index >= offset + limit) return { items: page, next_cursor: Buffer.from(`o:${index}`, "utf8").toString("base64url") };
    if (index >= offset) page.push(make());
    index += 1;
  }
  return { items: page };
}
