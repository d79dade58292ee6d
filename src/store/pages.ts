/**
 * Reading a collection that may be large a page at a time, so that what a reader holds at once is one page, not
 * the collection: a node's start and a takeover read the records they need this way (docs/cluster.md).
 */
import type { ListOptions, Store, StoreCollection, StoreRecord } from "./store.js";

/** Records per page unless told otherwise. */
const DEFAULT_PAGE_RECORDS = 100;
/**
 * Bytes of values per page unless told otherwise: a record may be a few MiB (a workflow's steps and results, a
 * session's history), so a page of 100 could be hundreds of MiB; it ends before the record past this (one at least).
 */
const DEFAULT_PAGE_BYTES = 16 * 1024 * 1024;

/**
 * The records `options` select, one page (`pageRecords`, default 100, and `maxBytes` of values, default 16 MiB)
 * at a time, in id order: each page starts after the last id of the one before, so a record written or removed
 * meanwhile is seen at most once, or not at all. A page cut short by its bytes is not the last: only an empty
 * read ends the listing.
 */
export async function* listPages(
  store: Store,
  collection: StoreCollection,
  options: Omit<ListOptions, "after" | "limit" | "maxBytes"> = {},
  { pageRecords = DEFAULT_PAGE_RECORDS, maxBytes = DEFAULT_PAGE_BYTES }: { pageRecords?: number; maxBytes?: number } = {},
): AsyncGenerator<StoreRecord[], void, undefined> {
  let after: string | undefined;
  for (;;) {
    const page = await store.list(collection, { ...options, ...(after === undefined ? {} : { after }), limit: pageRecords, maxBytes });
    if (page.length === 0) return;
    yield page;
    after = page[page.length - 1]!.id;
  }
}
