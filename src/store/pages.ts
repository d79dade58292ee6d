/**
 * Reading a collection that may be large a page at a time, so that what a reader holds at once is one page, not
 * the collection: a node's start and a takeover read the records they need this way (docs/cluster.md).
 */
import type { ListOptions, Store, StoreCollection, StoreRecord } from "./store.js";

/** Records per page unless told otherwise: a workflow record is at most about 300 KiB, so a page is at most about 30 MB. */
export const DEFAULT_PAGE_RECORDS = 100;

/**
 * The records `options` select, one page (`pageRecords`, default 100) at a time, in id order: each page starts
 * after the last id of the one before, so a record written or removed meanwhile is seen at most once, or not at all.
 */
export async function* listPages(
  store: Store,
  collection: StoreCollection,
  options: Omit<ListOptions, "after" | "limit"> = {},
  pageRecords = DEFAULT_PAGE_RECORDS,
): AsyncGenerator<StoreRecord[], void, undefined> {
  let after: string | undefined;
  for (;;) {
    const page = await store.list(collection, { ...options, ...(after === undefined ? {} : { after }), limit: pageRecords });
    if (page.length > 0) yield page;
    if (page.length < pageRecords) return;
    after = page[page.length - 1]!.id;
  }
}
