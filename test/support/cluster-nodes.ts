/**
 * Buses of a test's cluster in this process (test/cluster/*.test.ts): each test gets a cluster of its own (its
 * PostgreSQL database, its message stream, its subjects and its lease bucket), so that tests never see each other's
 * messages, and starts its nodes on the file's engines.
 */
import { openPostgresStore, type CommunicationBus, type Store } from "../../src/index.js";
import { startBus } from "../bus/support.js";
import type { NatsServer } from "./nats-server.js";
import type { PostgresServer } from "./postgres-server.js";

/** A test's own cluster: where its nodes keep and send everything. */
export interface TestCluster {
  database: string;
  stream: string;
  /** Its subjects' and lease bucket's names. */
  names: string;
}

let clusters = 0;

/** A fresh cluster named after `name` (letters and digits): a database of its own, a stream and subjects of its own. */
export async function newTestCluster(postgres: PostgresServer, name: string): Promise<TestCluster> {
  clusters += 1;
  const names = `${name}${clusters}`;
  const database = await postgres.createDatabase(`${name}_${clusters}_${process.pid}`);
  return { database, stream: `TROUPE_${name.toUpperCase()}_${clusters}`, names };
}

/** What a test may change of a node. */
export interface TestNodeOptions {
  ackWaitMs?: number;
  /** The NATS server's URL (default: the file's). */
  url?: string;
  ackTimeout?: number;
  leaseMs?: number;
  maxQueuedPerAgent?: number;
  /** Wraps the node's PostgreSQL store (to steer its writes or reads). */
  wrap?: (store: Store) => Store;
}

/** A node of `cluster`: a started bus on the file's NATS (`nats`) and the cluster's database. */
export function startTestNode(nats: NatsServer, cluster: TestCluster, nodeId: string, options: TestNodeOptions = {}): Promise<CommunicationBus> {
  const { wrap = (store: Store) => store } = options;
  return startBus({
    ackTimeout: options.ackTimeout ?? 5_000,
    ...(options.maxQueuedPerAgent === undefined ? {} : { maxQueuedPerAgent: options.maxQueuedPerAgent }),
    store: async () => wrap(await openPostgresStore({ url: cluster.database, exclusive: false })),
    cluster: {
      url: options.url ?? nats.url,
      nodeId,
      stream: cluster.stream,
      subjectPrefix: `troupe.${cluster.names}.messages`,
      leaseBucket: `leases_${cluster.names}`,
      ...(options.ackWaitMs === undefined ? {} : { ackWaitMs: options.ackWaitMs }),
      ...(options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs }),
    },
  });
}
