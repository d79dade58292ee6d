/**
 * What the real-engine harnesses (postgres-server.ts, nats-server.ts) share: finding an engine's binaries,
 * running them as the engine's own user when the tests run as root, free ports on 127.0.0.1, waiting for the
 * line that says an engine is ready, stopping it (and killing it for good if it does not stop), and a last
 * resort that kills every engine still running when the test process exits.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { createServer } from "node:net";
import { delimiter, join } from "node:path";

/** The user a child runs as: the engine's own one when the tests run as root (PostgreSQL refuses root). */
export interface RunAs {
  uid: number;
  gid: number;
}

/**
 * Every engine process still running and every engine directory not yet removed: if the test process exits
 * without stopping them (a crash, `process.exit`), the processes are killed with SIGKILL and the directories
 * removed as it exits.
 */
const running = new Set<ChildProcess>();
const directories = new Set<string>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dir of directories) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // A killed engine may still be writing its last file; the directory is in the system's temporary directory.
    }
  }
});

/** Makes a temporary directory for an engine, removed at the exit of the test process if `removeEngineDir` was not called. */
export async function makeEngineDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  directories.add(dir);
  return dir;
}

/** Removes an engine's directory. */
export async function removeEngineDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  directories.delete(dir);
}

/** `name` found in `dirs` (first) or on PATH, or `undefined`. */
export function findBinary(name: string, dirs: readonly string[] = []): string | undefined {
  for (const dir of [...dirs, ...(process.env.PATH ?? "").split(delimiter)]) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The PostgreSQL binary directories of Debian's packages, newest version first. */
export function debianPostgresBinDirs(): string[] {
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((version) => /^\d+$/.test(version))
    .sort((left, right) => Number(right) - Number(left))
    .map((version) => join(root, version, "bin"));
}

/** The user to run an engine as: `user` (by its uid and gid) when the tests run as root, the tests' own user otherwise. */
export function runAsFor(user: string): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string): number => Number(execFileSync("id", [flag, user], { encoding: "utf8" }).trim());
  try {
    return { uid: id("-u"), gid: id("-g") };
  } catch {
    throw new Error(`The tests run as root and there is no user "${user}" to run the engine as (it comes with the engine's package)`);
  }
}

/** A TCP port free on 127.0.0.1 right now (an engine that cannot bind it is started again on another). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  return address.port;
}

/** Runs a command to its end; rejects with its output if it fails. */
export async function runToEnd(command: string, args: readonly string[], runAs: RunAs | undefined): Promise<string> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: engineEnv(), ...(runAs ?? {}) });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  const [code] = (await once(child, "close")) as [number | null];
  if (code !== 0) throw new Error(`${command} ${args.join(" ")} failed (${code}):\n${output}`);
  return output;
}

/** An engine process started by `startEngineProcess`. */
export interface EngineProcess {
  child: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  /** Resolves once the process has exited (at once if it has). */
  exited(): Promise<void>;
}

/** Why an engine did not start; `output` holds what it printed. */
export class EngineStartError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(`${message}\n${output}`);
  }
}

/**
 * Starts `command` and resolves once it prints a line matching `ready`; rejects (and kills it) if it exits or
 * `timeoutMs` passes first.
 */
export async function startEngineProcess(
  command: string,
  args: readonly string[],
  { ready, runAs, timeoutMs = 15_000 }: { ready: RegExp; runAs: RunAs | undefined; timeoutMs?: number },
): Promise<EngineProcess> {
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env: engineEnv(), ...(runAs ?? {}) });
  running.add(child);
  const exit = once(child, "exit").then(() => {
    running.delete(child);
  });
  let output = "";
  const engine: EngineProcess = {
    child,
    output: () => output,
    exited: () => exit,
  };
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new EngineStartError(`${command} was not ready within ${timeoutMs} ms`, output));
    }, timeoutMs);
    const onData = (chunk: string): void => {
      output += chunk;
      if (ready.test(output)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.setEncoding("utf8").on("data", onData);
    child.stderr.setEncoding("utf8").on("data", onData);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new EngineStartError(`${command} could not start: ${error.message}`, output));
    });
    void exit.then(() => {
      clearTimeout(timer);
      reject(new EngineStartError(`${command} exited (${child.exitCode ?? child.signalCode}) before it was ready`, output));
    });
  });
  return engine;
}

/** Whether an engine's process was started and has neither exited nor been killed. */
export function engineRunning(engine: EngineProcess | undefined): engine is EngineProcess {
  return engine !== undefined && engine.child.exitCode === null && engine.child.signalCode === null;
}

/** Sends `signal`, waits up to `graceMs` for the exit, then kills with SIGKILL; resolves once the process is gone. */
export async function stopEngineProcess(engine: EngineProcess, signal: NodeJS.Signals, graceMs = 10_000): Promise<void> {
  const { child } = engine;
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    engine.exited(),
    new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve();
      }, graceMs);
    }),
  ]);
  clearTimeout(timer);
  await engine.exited();
}

/** A small, predictable environment for engines: no locale surprises, nothing of the developer's shell. */
function engineEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C", LC_ALL: "C" };
}

/** What every engine's handle does with its process once started: halt it, start it again, look at it, stop it for good. */
export interface EngineLifecycle {
  /** Stops the process with `signal`, keeping its directory: `start()` runs it again. */
  halt(signal: NodeJS.Signals): Promise<void>;
  /** Runs the process again (with `launch`) unless it runs. */
  start(): Promise<void>;
  running(): boolean;
  pid(): number | undefined;
  output(): string;
  /** Stops it with `finalSignal` and removes its directory; once. */
  stop(): Promise<void>;
}

/** The lifecycle of an engine started as `first`, run again by `launch`, its files in `dir`. */
export function engineLifecycle(dir: string, first: EngineProcess, launch: () => Promise<EngineProcess>, finalSignal: NodeJS.Signals): EngineLifecycle {
  let engine = first;
  let stopped = false;
  return {
    async halt(signal) {
      await stopEngineProcess(engine, signal);
    },
    async start() {
      if (engineRunning(engine)) return;
      engine = await launch();
    },
    running: () => engineRunning(engine),
    pid: () => engine.child.pid,
    output: () => engine.output(),
    async stop() {
      if (stopped) return;
      stopped = true;
      try {
        await stopEngineProcess(engine, finalSignal);
      } finally {
        await removeEngineDir(dir);
      }
    },
  };
}
