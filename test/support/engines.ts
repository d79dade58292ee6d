/**
 * The two engines a cluster test file needs, NATS (with JetStream) and PostgreSQL, started together on 127.0.0.1:
 * both, or neither (one that failed to start stops the other, which would otherwise outlive the test process).
 */
import { startNats, type NatsServer } from "./nats-server.js";
import { startPostgres, type PostgresServer } from "./postgres-server.js";

export async function startEngines(): Promise<{ nats: NatsServer; postgres: PostgresServer }> {
  const [nats, postgres] = await Promise.allSettled([startNats(), startPostgres()]);
  if (nats.status === "fulfilled" && postgres.status === "fulfilled") return { nats: nats.value, postgres: postgres.value };
  await Promise.allSettled([nats.status === "fulfilled" ? nats.value.stop() : undefined, postgres.status === "fulfilled" ? postgres.value.stop() : undefined]);
  throw nats.status === "rejected" ? nats.reason : (postgres as PromiseRejectedResult).reason;
}
