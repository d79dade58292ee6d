/**
 * The PostgreSQL store keeps the store contract, plain and encrypted, on a real PostgreSQL server started for
 * this file; and what is its own: its schema, its lock, its encoding and its errors.
 */
import { afterAll, beforeAll } from "vitest";
import { openPostgresStore, type PostgresStoreOptions } from "../../src/index.js";
import { startPostgres, type PostgresServer } from "../support/postgres-server.js";
import { describeStoreContract, type StoreHarness } from "./store-contract.js";

const RAW_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f000112233445566778899aabbccddeeff";

let server: PostgresServer;
let schemas = 0;

beforeAll(async () => {
  server = await startPostgres();
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

/** A store in a schema of its own, so that every test starts on fresh state in the file's one server. */
async function postgresHarness(extra: Omit<PostgresStoreOptions, "url" | "schema"> = {}): Promise<StoreHarness> {
  const options: PostgresStoreOptions = { url: server.url(), schema: `contract_${++schemas}`, ...extra };
  return {
    open: () => openPostgresStore(options),
    crashWriter: { kind: "postgres", options },
    cleanup: async () => {
      await server.query(`DROP SCHEMA IF EXISTS ${options.schema} CASCADE`);
    },
  };
}

describeStoreContract("the PostgreSQL store", { durable: true, createHarness: () => postgresHarness() });
describeStoreContract("the encrypted PostgreSQL store", { durable: true, createHarness: () => postgresHarness({ encryptionKey: RAW_KEY }) });
