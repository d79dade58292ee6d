/**
 * A throwaway PostgreSQL server for tests: `initdb` in a temporary directory, `postgres` on 127.0.0.1 on a
 * free port (its socket in that directory too), a superuser `troupe` that needs no password, and everything
 * removed at `stop()`. It runs as the `postgres` user when the tests run as root (`initdb` refuses root).
 *
 * PostgreSQL runs with `fsync=off` unless asked otherwise: a commit survives the death of any process (the
 * kernel holds the pages), which is all the tests kill, and costs no disk flush. Binaries come from Debian's
 * `/usr/lib/postgresql/<version>/bin` or PATH (`apt-get install postgresql`, as `.ci/run` does).
 */
import { chown } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import {
  debianPostgresBinDirs,
  engineLifecycle,
  EngineStartError,
  findBinary,
  freePort,
  makeEngineDir,
  removeEngineDir,
  runAsFor,
  runToEnd,
  startEngineProcess,
  stopEngineProcess,
  type EngineProcess,
  type RunAs,
} from "./engine-process.js";

/** The superuser of every test server (trust authentication on 127.0.0.1: no password). */
const POSTGRES_TEST_USER = "troupe";

/** How the server is stopped: `fast` (SIGINT, a clean shutdown) or `immediate` (SIGQUIT, as a crash: recovery at the next start). */
type PostgresStopMode = "fast" | "immediate";

/** A running test server. */
export interface PostgresServer {
  readonly port: number;
  /** Its temporary directory: the cluster's data in `data/`, the socket and the log beside it. */
  readonly dir: string;
  /** A connection URL for `database` (default `postgres`). */
  url(database?: string): string;
  /** Creates a database (UTF8 unless `encoding` says otherwise) and answers its URL. */
  createDatabase(name: string, options?: { encoding?: string }): Promise<string>;
  /** Runs one SQL statement on `database` (default `postgres`) and answers its rows. */
  query<Row extends Record<string, unknown> = Record<string, unknown>>(sql: string, values?: unknown[], database?: string): Promise<Row[]>;
  /** Stops the server, keeping its data (`start()` brings it back on the same port). */
  halt(mode?: PostgresStopMode): Promise<void>;
  /** Starts a halted server again on its port, with its data. */
  start(): Promise<void>;
  /** Whether the server process is running. */
  running(): boolean;
  /** The server process's id while it runs. */
  pid(): number | undefined;
  /** What the server printed since its last start. */
  output(): string;
  /** Stops the server (if running) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface Binaries {
  initdb: string;
  postgres: string;
}

function binaries(): Binaries {
  const dirs = debianPostgresBinDirs();
  const initdb = findBinary("initdb", dirs);
  const postgres = findBinary("postgres", dirs);
  if (initdb === undefined || postgres === undefined) {
    throw new Error("PostgreSQL is not installed (no initdb or postgres in /usr/lib/postgresql/*/bin or on PATH): apt-get install postgresql, as .ci/run does");
  }
  return { initdb, postgres };
}

/** Attempts at a free port: another process may take the port between its check and the server's bind. */
const PORT_ATTEMPTS = 5;

/**
 * Initializes a cluster in a new temporary directory and starts it; `stop()` removes everything. `fsync: true`
 * makes every commit wait for the disk, as a production server does (for measurements; tests do not need it).
 */
export async function startPostgres({ fsync = false }: { fsync?: boolean } = {}): Promise<PostgresServer> {
  const { initdb, postgres } = binaries();
  const runAs = runAsFor("postgres");
  const dir = await makeEngineDir("troupe-pg-");
  let engine: EngineProcess | undefined;
  try {
    if (runAs !== undefined) await chown(dir, runAs.uid, runAs.gid);
    const dataDir = join(dir, "data");
    await runToEnd(initdb, ["-D", dataDir, "-U", POSTGRES_TEST_USER, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"], runAs);
    let port = 0;
    for (let attempt = 1; engine === undefined; attempt++) {
      port = await freePort();
      try {
        engine = await startServer(postgres, dataDir, dir, port, runAs, fsync);
      } catch (error) {
        const portTaken = error instanceof EngineStartError && /could not bind|Address already in use/.test(error.output);
        if (!portTaken || attempt === PORT_ATTEMPTS) throw error;
      }
    }
    const serverPort = port;
    const url = (database = "postgres"): string => `postgres://${POSTGRES_TEST_USER}@127.0.0.1:${serverPort}/${database}`;
    const query = async <Row extends Record<string, unknown>>(sql: string, values: unknown[] = [], database?: string): Promise<Row[]> => {
      const client = new pg.Client({ connectionString: url(database) });
      await client.connect();
      try {
        return (await client.query<Row>(sql, values)).rows;
      } finally {
        await client.end();
      }
    };
    const lifecycle = engineLifecycle(dir, engine, () => startServer(postgres, dataDir, dir, serverPort, runAs, fsync), "SIGQUIT");
    const server: PostgresServer = {
      port: serverPort,
      dir,
      url,
      query,
      async createDatabase(name, { encoding = "UTF8" } = {}) {
        // Identifiers and encodings cannot be parameters; the tests choose both.
        await query(`CREATE DATABASE "${name}" ENCODING '${encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`);
        return url(name);
      },
      ...lifecycle,
      halt: (mode = "fast") => lifecycle.halt(mode === "fast" ? "SIGINT" : "SIGQUIT"),
    };
    return server;
  } catch (error) {
    if (engine !== undefined) await stopEngineProcess(engine, "SIGQUIT");
    await removeEngineDir(dir);
    throw error;
  }
}

function startServer(postgres: string, dataDir: string, socketDir: string, port: number, runAs: RunAs | undefined, fsync: boolean): Promise<EngineProcess> {
  const settings = {
    listen_addresses: "127.0.0.1",
    unix_socket_directories: socketDir,
    fsync: fsync ? "on" : "off",
    full_page_writes: fsync ? "on" : "off",
    shared_buffers: "16MB",
    max_connections: "60",
    logging_collector: "off",
  };
  const args = ["-D", dataDir, "-p", String(port), ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])];
  return startEngineProcess(postgres, args, { ready: /database system is ready to accept connections/, runAs });
}
