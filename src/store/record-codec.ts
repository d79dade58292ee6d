/**
 * How a record's value sits in a database row, the same in every database store: its JSON text in `value` for
 * a plaintext store, or sealed (AES-256-GCM, bound to the record's collection and id) in `ciphertext`, `iv` and
 * `auth_tag` for an encrypted one, `value` then being null.
 */
import { BridgeError } from "../errors.js";
import { recordContext, type ValueCipher } from "./encryption.js";
import type { StoreCollection } from "./store.js";

/** The value columns of a record's row. */
export interface StoredValue {
  value: string | null;
  ciphertext: Buffer | null;
  iv: Buffer | null;
  auth_tag: Buffer | null;
}

/** A record's row as the stores read it: its id, its value columns and its node. */
export interface RecordRow extends StoredValue {
  id: string;
  node: string | null;
}

/** The columns of a `RecordRow`, as a SELECT lists them. */
export const RECORD_ROW_COLUMNS = "id, value, ciphertext, iv, auth_tag, node";

/** A row's value as a read returns it: an object with its record's node (`Store.move`) as its top-level `node`. */
export function decodeRecord(cipher: ValueCipher | undefined, collection: StoreCollection, row: RecordRow): unknown {
  return withRecordNode(decodeValue(cipher, collection, row.id, row), row.node);
}

/** `value` read with its record's node `node` (none: as it is): what a `move` changed without writing the value. */
export function withRecordNode(value: unknown, node: string | null | undefined): unknown {
  if (node === null || node === undefined || typeof value !== "object" || value === null || Array.isArray(value)) return value;
  return (value as { node?: unknown }).node === node ? value : { ...value, node };
}

/** The key of `store_meta` that holds the encryption header of an encrypted store. */
export const ENCRYPTION_META_KEY = "encryption";

/** The row columns of a value's JSON: sealed with `cipher`, or plaintext without one. */
export function encodeValue(cipher: ValueCipher | undefined, collection: StoreCollection, id: string, json: string): StoredValue {
  if (cipher === undefined) return { value: json, ciphertext: null, iv: null, auth_tag: null };
  const sealed = cipher.seal(json, recordContext(collection, id));
  return { value: null, ciphertext: sealed.ciphertext, iv: sealed.iv, auth_tag: sealed.authTag };
}

/**
 * The value a row holds, parsed from its JSON; INTERNAL for a row that does not match the store (plaintext in an
 * encrypted store or the reverse), fails its authentication, or holds no JSON.
 */
export function decodeValue(cipher: ValueCipher | undefined, collection: StoreCollection, id: string, row: StoredValue): unknown {
  let json: string;
  if (row.value !== null) {
    if (cipher !== undefined) throw recordError(collection, id, "it is not encrypted, in an encrypted store");
    json = row.value;
  } else {
    if (cipher === undefined || row.ciphertext === null || row.iv === null || row.auth_tag === null) {
      throw recordError(collection, id, "it is encrypted, in a store opened without a key");
    }
    try {
      json = cipher.open({ ciphertext: row.ciphertext, iv: row.iv, authTag: row.auth_tag }, recordContext(collection, id));
    } catch {
      throw recordError(collection, id, "it fails its authentication (changed, or moved from another record)");
    }
  }
  try {
    return JSON.parse(json);
  } catch {
    throw recordError(collection, id, "its value is not JSON");
  }
}

function recordError(collection: StoreCollection, id: string, reason: string): BridgeError {
  return new BridgeError("INTERNAL", `Store record ${collection}/${id} cannot be read: ${reason}`, { collection, id });
}
