/**
 * The two engines a cluster test file needs, NATS (with JetStream) and PostgreSQL, started together on 127.0.0.1:
 * both, or neither (one that failed to start stops the other, which would otherwise outlive the test process).
 */
import { afterAll, beforeAll } from "vitest";
import { startNats, type NatsServer } from "./nats-server.js";
import { startPostgres, type PostgresServer } from "./postgres-server.js";

export async function startEngines(): Promise<{ nats: NatsServer; postgres: PostgresServer }> {
  const [nats, postgres] = await Promise.allSettled([startNats(), startPostgres()]);
  if (nats.status === "fulfilled" && postgres.status === "fulfilled") return { nats: nats.value, postgres: postgres.value };
  await Promise.allSettled([nats.status === "fulfilled" ? nats.value.stop() : undefined, postgres.status === "fulfilled" ? postgres.value.stop() : undefined]);
  throw nats.status === "rejected" ? nats.reason : (postgres as PromiseRejectedResult).reason;
}

/** Both engines for the test file that calls it: started before its tests (handed to `use`), stopped after them. */
export function useEngines(use: (engines: { nats: NatsServer; postgres: PostgresServer }) => void): void {
  let started: { nats: NatsServer; postgres: PostgresServer } | undefined;
  beforeAll(async () => {
    started = await startEngines();
    use(started);
  }, 30_000);
  afterAll(async () => {
    await Promise.all([started?.nats.stop(), started?.postgres.stop()]);
  });
}
