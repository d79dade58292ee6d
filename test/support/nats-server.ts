/**
 * A throwaway NATS server with JetStream for tests: `nats-server -js` on 127.0.0.1, on a port it picks itself
 * at the first start (and keeps across restarts), its JetStream data in a temporary directory removed at
 * `stop()`. The binary is Debian's `/usr/sbin/nats-server` or the one on PATH (`apt-get install nats-server`,
 * as `.ci/run` does).
 */
import { join } from "node:path";
import { findBinary, makeEngineDir, engineRunning, removeEngineDir, startEngineProcess, stopEngineProcess, type EngineProcess } from "./engine-process.js";

/** A running test server. */
export interface NatsServer {
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

function binary(): string {
  const path = findBinary("nats-server", ["/usr/sbin", "/usr/bin"]);
  if (path === undefined) throw new Error("nats-server is not installed (not in /usr/sbin, /usr/bin or on PATH): apt-get install nats-server, as .ci/run does");
  return path;
}

/** The line nats-server prints once it takes client connections, with its address. */
const LISTENING = /Listening for client connections on 127\.0\.0\.1:(\d+)[\s\S]*Server is ready/;

/** Starts a JetStream server (a plain one with `jetstream: false`) in a new temporary directory; `stop()` removes everything. */
export async function startNats({ jetstream = true }: { jetstream?: boolean } = {}): Promise<NatsServer> {
  const command = binary();
  const dir = await makeEngineDir("troupe-nats-");
  let engine: EngineProcess | undefined;
  let stopped = false;
  // Port -1: the server binds a free port itself, so no other process can take it between a check and the bind.
  const run = (port: number): Promise<EngineProcess> =>
    startEngineProcess(
      command,
      [...(jetstream ? ["-js", "-sd", join(dir, "jetstream")] : []), "-a", "127.0.0.1", "-p", String(port), "-n", `troupe-test-${process.pid}`],
      {
        ready: LISTENING,
        runAs: undefined,
      },
    );
  try {
    engine = await run(-1);
    const port = Number(LISTENING.exec(engine.output())![1]);
    return {
      port,
      url: `nats://127.0.0.1:${port}`,
      dir,
      async halt(signal = "SIGTERM") {
        if (engine !== undefined) await stopEngineProcess(engine, signal);
      },
      async start() {
        if (engineRunning(engine)) return;
        engine = await run(port);
      },
      running: () => engineRunning(engine),
      pid: () => engine?.child.pid,
      output: () => engine?.output() ?? "",
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          if (engine !== undefined) await stopEngineProcess(engine, "SIGKILL");
        } finally {
          await removeEngineDir(dir);
        }
      },
    };
  } catch (error) {
    if (engine !== undefined) await stopEngineProcess(engine, "SIGKILL");
    await removeEngineDir(dir);
    throw error;
  }
}
