/**
 * A cluster node in a process of its own, for the tests that kill one with SIGKILL. Arguments: the NATS URL,
 * the PostgreSQL URL, the node id, the stream, the subjects' prefix, the ack wait in ms, and optionally the lease
 * bucket and the lease time in ms (to be taken over by nodes of the test's own bucket). It prints
 * `ready <url>` once it listens, and runs until killed. It imports nothing of vitest.
 */
import { CommunicationBus, openPostgresStore } from "../../src/index.js";

const [natsUrl = "", databaseUrl = "", nodeId = "", stream = "", subjectPrefix = "", ackWaitMs = "30000", leaseBucket, leaseMs] = process.argv.slice(2);
const bus = new CommunicationBus({
  host: "127.0.0.1",
  port: 0,
  apiKey: "test-key",
  env: {},
  ackTimeout: 5_000,
  store: () => openPostgresStore({ url: databaseUrl, exclusive: false }),
  cluster: {
    url: natsUrl,
    nodeId,
    stream,
    subjectPrefix,
    ackWaitMs: Number(ackWaitMs),
    ...(leaseBucket === undefined ? {} : { leaseBucket }),
    ...(leaseMs === undefined ? {} : { leaseMs: Number(leaseMs) }),
  },
});
await bus.start();
process.stdout.write(`ready ${bus.url}\n`);
setInterval(() => undefined, 60_000);
