/**
 * Throwaway NATS servers with JetStream for tests, on 127.0.0.1, their JetStream data in temporary directories
 * removed at `stop()`: one server (`startNats`: `nats-server -js`, on a port it picks itself at the first start and
 * keeps across restarts), or a NATS cluster of several (`startNatsCluster`: each server routed to every other, so
 * that JetStream keeps replicated streams). The binary is Debian's `/usr/sbin/nats-server` or the one on PATH
 * (`apt-get install nats-server`, as `.ci/run` does).
 */
import { join } from "node:path";
import {
  engineLifecycle,
  EngineStartError,
  findBinary,
  freePort,
  makeEngineDir,
  removeEngineDir,
  startEngineProcess,
  type EngineProcess,
} from "./engine-process.js";

/** A running test server. */
export interface NatsServer {
  /** Its name (`-n`): what JetStream names it by, as a stream's leader or replica. */
  readonly name: string;
  /** Its port on 127.0.0.1 (the same after a restart). */
  readonly port: number;
  /** `nats://127.0.0.1:<port>`. */
  readonly url: string;
  /** Its temporary directory (JetStream's store is under it). */
  readonly dir: string;
  /** Stops the server, keeping its JetStream data: `SIGTERM` (clean) or `SIGKILL` (a crash). */
  halt(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Starts a halted server again, on its port, with its data. */
  start(): Promise<void>;
  /** Whether the server process is running. */
  running(): boolean;
  /** The server process's id while it runs. */
  pid(): number | undefined;
  /** What it printed since its last start. */
  output(): string;
  /** Stops the server (if running) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** A running NATS cluster of test servers. */
export interface NatsCluster {
  readonly servers: readonly NatsServer[];
  /** Every server's URL, comma-separated: what a client given the whole cluster connects with. */
  readonly url: string;
  /** Stops every server and removes their directories. Idempotent. */
  stop(): Promise<void>;
}

function binary(): string {
  const path = findBinary("nats-server", ["/usr/sbin", "/usr/bin"]);
  if (path === undefined) throw new Error("nats-server is not installed (not in /usr/sbin, /usr/bin or on PATH): apt-get install nats-server, as .ci/run does");
  return path;
}

/** The line nats-server prints once it takes client connections, with its address. */
const LISTENING = /Listening for client connections on 127\.0\.0\.1:(\d+)[\s\S]*Server is ready/;
/** How a server says that a port it was given is taken. */
const PORT_TAKEN = /address already in use/;

/** How one server of a cluster finds the others: the cluster's name, its own route port, and every server's. */
interface Routes {
  clusterName: string;
  port: number;
  all: readonly number[];
}

/**
 * Starts server `name` in `dir` (client port picked by the server at its first start, kept after), with JetStream
 * unless `jetstream` is false, routed to the others when `routes` is given.
 */
async function startServer(name: string, dir: string, { jetstream = true, routes }: { jetstream?: boolean; routes?: Routes }): Promise<NatsServer> {
  const command = binary();
  let engine: EngineProcess;
  const clusterArgs =
    routes === undefined
      ? []
      : [
          "--cluster_name",
          routes.clusterName,
          "--cluster",
          `nats://127.0.0.1:${routes.port}`,
          // Every server lists every route, itself included (a server skips its own): JetStream clustering wants them configured.
          "--routes",
          routes.all.map((port) => `nats://127.0.0.1:${port}`).join(","),
        ];
  // Port -1: the server binds a free port itself, so no other process can take it between a check and the bind.
  const run = (port: number): Promise<EngineProcess> =>
    startEngineProcess(
      command,
      [...(jetstream ? ["-js", "-sd", join(dir, "jetstream")] : []), "-a", "127.0.0.1", "-p", String(port), "-n", name, ...clusterArgs],
      { ready: LISTENING, runAs: undefined },
    );
  try {
    engine = await run(-1);
  } catch (error) {
    await removeEngineDir(dir);
    throw error;
  }
  const port = Number(LISTENING.exec(engine.output())![1]);
  const lifecycle = engineLifecycle(dir, engine, () => run(port), "SIGKILL");
  return {
    name,
    port,
    url: `nats://127.0.0.1:${port}`,
    dir,
    ...lifecycle,
    halt: (signal = "SIGTERM") => lifecycle.halt(signal),
  };
}

/** Starts a JetStream server (a plain one with `jetstream: false`) in a new temporary directory; `stop()` removes everything. */
export async function startNats({ jetstream = true }: { jetstream?: boolean } = {}): Promise<NatsServer> {
  return startServer(`troupe-test-${process.pid}`, await makeEngineDir("troupe-nats-"), { jetstream });
}

let clustersStarted = 0;

/**
 * Starts a NATS cluster of `size` JetStream servers (3 by default), each in its own temporary directory, routed to
 * one another, and resolves once JetStream's servers have elected their leader (a replicated stream can be made).
 * Route ports are picked free just before; should another process take one meanwhile, the cluster starts again on
 * others (three tries).
 */
export async function startNatsCluster({ size = 3 }: { size?: number } = {}): Promise<NatsCluster> {
  clustersStarted += 1;
  const clusterName = `troupe-test-${process.pid}-${clustersStarted}`;
  for (let attempt = 1; ; attempt += 1) {
    const all = await Promise.all(Array.from({ length: size }, () => freePort()));
    const started = await Promise.allSettled(
      all.map(async (port, index) => startServer(`s${index + 1}`, await makeEngineDir(`troupe-nats-s${index + 1}-`), { routes: { clusterName, port, all } })),
    );
    const servers = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
    const failure = started.find((result): result is PromiseRejectedResult => result.status === "rejected");
    if (failure === undefined) {
      const cluster: NatsCluster = {
        servers,
        url: servers.map((server) => server.url).join(","),
        stop: async () => {
          await Promise.all(servers.map((server) => server.stop()));
        },
      };
      try {
        await electedLeader(servers);
      } catch (error) {
        await cluster.stop();
        throw error;
      }
      return cluster;
    }
    await Promise.all(servers.map((server) => server.stop()));
    const portTaken = failure.reason instanceof EngineStartError && PORT_TAKEN.test(failure.reason.output);
    if (!portTaken || attempt === 3) throw failure.reason;
  }
}

/**
 * Resolves once JetStream answers on every server, which it does once they have elected their metadata leader and
 * each knows it (not every server logs that); rejects after `timeoutMs`.
 */
async function electedLeader(servers: readonly NatsServer[], timeoutMs = 15_000): Promise<void> {
  const { connect } = await import("@nats-io/transport-node");
  const deadline = performance.now() + timeoutMs;
  for (const server of servers) {
    // A server that logged it is ready may still refuse a client for a moment (seen under load): the first connection is tried again.
    const connection = await connect({
      servers: server.url,
      waitOnFirstConnect: true,
      reconnectTimeWait: 50,
      timeout: Math.max(1, deadline - performance.now()),
    });
    try {
      for (;;) {
        const answer = await connection.request("$JS.API.INFO", "", { timeout: 1_000 }).then(
          (reply) => reply.json<{ error?: unknown }>(),
          (error: unknown) => ({ error }),
        );
        if (answer.error === undefined) break;
        if (performance.now() > deadline) {
          throw new Error(`JetStream did not answer on ${server.name} within ${timeoutMs} ms (${JSON.stringify(answer.error)}):\n${server.output()}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await connection.close();
    }
  }
}
