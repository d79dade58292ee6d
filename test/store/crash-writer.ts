/**
 * The process the store contract kills: it opens the store its argument names, then writes batches of
 * `batchSize` records (ids `crash-<round>-<batch>-<index>`) for ever, one batch per event-loop turn, and
 * prints `flushed <batch>` once each batch is durable.
 */
import { openPostgresStore, openSqliteStore, type PostgresStoreOptions, type SqliteStoreOptions, type Store } from "../../src/index.js";

/** How the crash writer opens the store under test. */
export type CrashWriterSpec = { kind: "sqlite"; options: SqliteStoreOptions } | { kind: "postgres"; options: PostgresStoreOptions };

async function openStore(spec: CrashWriterSpec): Promise<Store> {
  switch (spec.kind) {
    case "sqlite":
      return openSqliteStore(spec.options);
    case "postgres":
      return openPostgresStore(spec.options);
  }
}

const { spec, round, batchSize } = JSON.parse(process.argv[2] ?? "") as { spec: CrashWriterSpec; round: number; batchSize: number };
const store = await openStore(spec);
for (let batch = 0; ; batch++) {
  for (let index = 0; index < batchSize; index++) {
    store.put("messages", `crash-${round}-${String(batch).padStart(6, "0")}-${index}`, { batch, index, padding: "x".repeat(200) });
  }
  await store.flush();
  process.stdout.write(`flushed ${batch}\n`);
}
