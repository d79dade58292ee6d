/**
 * What a troupe server starts with when nothing says otherwise: its port, host and data folder, and the
 * environment variables its keys come from. A module of constants alone, so that `troupe serve --help` can
 * show them without loading the server.
 */

/** Port used when none is given. */
export const DEFAULT_PORT = 8080;
/** Address bound when none is given: loopback, so nothing is exposed by accident. */
export const DEFAULT_HOST = "127.0.0.1";
/** Where `persistenceEnabled` keeps its SQLite store unless `dataDir` says otherwise. */
export const DEFAULT_DATA_DIR = "./.troupe";
/** The environment variable read when the bus's `apiKey` is not given. */
export const BUS_API_KEY_ENV = "AGENT_BUS_API_KEY";
/** The environment variable that holds the store's encryption key; the caller reads it and passes `encryptionKey`. */
export const ENCRYPTION_KEY_ENV = "TROUPE_ENCRYPTION_KEY";
