/**
 * Encryption at rest: AES-256-GCM over every record value, with a random 12-byte IV per value and the record's
 * collection and id as associated data (a value moved onto another record fails to open). The key is 32 raw
 * bytes (64 hex characters) or a passphrase stretched with scrypt and a per-database salt. A check value
 * sealed when the database is created tells a wrong key at open, before any record is read.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt, type ScryptOptions } from "node:crypto";
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { ENCRYPTION_KEY_ENV } from "../server/defaults.js";

/** The shortest passphrase accepted (a raw key is exactly 64 hex characters). */
export const MIN_PASSPHRASE_LENGTH = 16;

const CIPHER = "aes-256-gcm";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const AUTH_TAG_BYTES = 16;
const RAW_KEY = /^[0-9a-fA-F]{64}$/;
/** scrypt's cost: about 32 MiB and 0.1 s per open, paid once. */
const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1 } as const;
const CHECK_PLAINTEXT = "troupe store key check";
const CHECK_CONTEXT = "store_meta\u0000encryption";

/** One encrypted value as a store keeps it. */
export interface SealedValue {
  ciphertext: Buffer;
  iv: Buffer;
  authTag: Buffer;
}

const sealedSchema = z.object({ ciphertext: z.base64(), iv: z.base64(), authTag: z.base64() });

/** How a database's key was made and the value that checks it; stored, in JSON, in the database itself. */
const headerSchema = z.object({
  version: z.literal(1),
  cipher: z.literal(CIPHER),
  kdf: z.discriminatedUnion("name", [
    z.object({ name: z.literal("raw") }),
    // Bounded so that a doctored header cannot make an open take gigabytes.
    z.object({
      name: z.literal("scrypt"),
      salt: z.base64(),
      N: z
        .number()
        .int()
        .min(2)
        .max(2 ** 20),
      r: z.number().int().min(1).max(32),
      p: z.number().int().min(1).max(16),
    }),
  ]),
  check: sealedSchema,
});

/** The encryption header of a database. */
export type EncryptionHeader = z.infer<typeof headerSchema>;

/** Seals and opens the values of one database with its key. */
export class ValueCipher {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    this.#key = key;
  }

  /** Encrypts `plaintext`, bound to `context` (the record's collection and id). */
  seal(plaintext: string, context: string): SealedValue {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(CIPHER, this.#key, iv, { authTagLength: AUTH_TAG_BYTES });
    cipher.setAAD(Buffer.from(context, "utf8"));
    const ciphertext = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return { ciphertext, iv, authTag: cipher.getAuthTag() };
  }

  /** Decrypts a sealed value; throws (Node's own error) if the key, the context or a byte differs. */
  open(sealed: SealedValue, context: string): string {
    const decipher = createDecipheriv(CIPHER, this.#key, sealed.iv, { authTagLength: AUTH_TAG_BYTES });
    decipher.setAAD(Buffer.from(context, "utf8"));
    decipher.setAuthTag(sealed.authTag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString("utf8");
  }
}

/** The associated data of a record: its collection and id (collection names hold no NUL). */
export function recordContext(collection: string, id: string): string {
  return `${collection}\u0000${id}`;
}

/** A CONFIG error unless `key` is usable: 64 hex characters, or a passphrase of 16+ characters without surrounding spaces. */
function checkKeyText(key: string, where: string): void {
  if (key.length === 0) throw new BridgeError("CONFIG", `The encryption key for ${where} is empty`);
  // A key pasted with its trailing newline would silently become another passphrase.
  if (key.trim() !== key) throw new BridgeError("CONFIG", `The encryption key for ${where} starts or ends with whitespace`);
  if (!RAW_KEY.test(key) && key.length < MIN_PASSPHRASE_LENGTH) {
    throw new BridgeError(
      "CONFIG",
      `The encryption key for ${where} is too short: give 64 hex characters (a raw 32-byte key) or a passphrase of at least ${MIN_PASSPHRASE_LENGTH} characters`,
    );
  }
}

function scryptKey(passphrase: string, salt: Buffer, params: ScryptOptions): Promise<Buffer> {
  // scrypt needs 128 · N · r bytes; leave room above it for Node's own accounting.
  const maxmem = 2 * 128 * (params.N ?? SCRYPT_PARAMS.N) * (params.r ?? SCRYPT_PARAMS.r);
  return new Promise((resolve, reject) => {
    scrypt(passphrase, salt, KEY_BYTES, { ...params, maxmem }, (error, key) => (error ? reject(error) : resolve(key)));
  });
}

function encodeSealed(sealed: SealedValue): EncryptionHeader["check"] {
  return { ciphertext: sealed.ciphertext.toString("base64"), iv: sealed.iv.toString("base64"), authTag: sealed.authTag.toString("base64") };
}

function decodeSealed(sealed: EncryptionHeader["check"]): SealedValue {
  return { ciphertext: Buffer.from(sealed.ciphertext, "base64"), iv: Buffer.from(sealed.iv, "base64"), authTag: Buffer.from(sealed.authTag, "base64") };
}

/**
 * Sets up encryption for a new database: derives its key from `key` (with a fresh salt for a passphrase)
 * and returns the cipher and the header to store with the database.
 */
async function createEncryption(key: string, where: string): Promise<{ cipher: ValueCipher; header: EncryptionHeader }> {
  checkKeyText(key, where);
  let kdf: EncryptionHeader["kdf"];
  let keyBytes: Buffer;
  if (RAW_KEY.test(key)) {
    kdf = { name: "raw" };
    keyBytes = Buffer.from(key, "hex");
  } else {
    const salt = randomBytes(16);
    kdf = { name: "scrypt", salt: salt.toString("base64"), ...SCRYPT_PARAMS };
    keyBytes = await scryptKey(key, salt, SCRYPT_PARAMS);
  }
  const cipher = new ValueCipher(keyBytes);
  const check = encodeSealed(cipher.seal(CHECK_PLAINTEXT, CHECK_CONTEXT));
  return { cipher, header: { version: 1, cipher: CIPHER, kdf, check } };
}

/** Parses a stored header; CONFIG if it is not one this version of troupe reads. */
function parseEncryptionHeader(json: string, where: string): EncryptionHeader {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    value = undefined;
  }
  const parsed = headerSchema.safeParse(value);
  if (!parsed.success) throw new BridgeError("CONFIG", `The encryption header of ${where} is unreadable: it was not written by this version of troupe`);
  return parsed.data;
}

/** The cipher of an existing encrypted database; CONFIG if `key` is not the key it was created with. */
async function unlockEncryption(key: string, header: EncryptionHeader, where: string): Promise<ValueCipher> {
  checkKeyText(key, where);
  let keyBytes: Buffer;
  if (header.kdf.name === "raw") {
    if (!RAW_KEY.test(key)) {
      throw new BridgeError("CONFIG", `${where} is encrypted with a raw key (64 hex characters), and the encryption key given is a passphrase`);
    }
    keyBytes = Buffer.from(key, "hex");
  } else {
    const { salt, N, r, p } = header.kdf;
    keyBytes = await scryptKey(key, Buffer.from(salt, "base64"), { N, r, p });
  }
  const cipher = new ValueCipher(keyBytes);
  try {
    if (cipher.open(decodeSealed(header.check), CHECK_CONTEXT) === CHECK_PLAINTEXT) return cipher;
  } catch {
    // A GCM authentication failure: the key is not this database's, which is the error below.
  }
  throw new BridgeError("CONFIG", `Wrong encryption key for ${where}: it is not the key this database was created with`);
}

/** What a database store knows at open about its encryption, to decide it with `resolveEncryption`. */
export interface EncryptionState {
  /** The key given to the store, if any. */
  key: string | undefined;
  /** The stored encryption header (its JSON), if the database is encrypted. */
  header: string | undefined;
  /** How many records the database holds (asked only when a key is given to a database without a header). */
  countRecords: () => Promise<number>;
  /** Where the store is, for messages. */
  where: string;
}

/**
 * The cipher of a store, or `undefined` for a plaintext one, and the header to save when the store becomes
 * encrypted now; CONFIG when the key and the database disagree: an encrypted database without its key (or with
 * another one), or a key for a database that already holds plaintext records (encrypting only some records
 * would promise what the database does not keep). A plaintext database with no record yet becomes encrypted.
 */
export async function resolveEncryption({
  key,
  header,
  countRecords,
  where,
}: EncryptionState): Promise<{ cipher: ValueCipher | undefined; newHeader?: EncryptionHeader }> {
  if (header !== undefined) {
    if (key === undefined) throw new BridgeError("CONFIG", `${where} is encrypted: give its encryption key (encryptionKey or ${ENCRYPTION_KEY_ENV})`);
    return { cipher: await unlockEncryption(key, parseEncryptionHeader(header, where), where) };
  }
  if (key === undefined) return { cipher: undefined };
  const records = await countRecords();
  if (records > 0) {
    throw new BridgeError(
      "CONFIG",
      `${where} holds ${records} unencrypted records and cannot be opened with an encryption key: open it without one, or use another data directory`,
    );
  }
  const created = await createEncryption(key, where);
  return { cipher: created.cipher, newHeader: created.header };
}
