/**
 * One agent process spoken to over the Agent Client Protocol (JSON-RPC over stdio), client side.
 *
 * Starts the process, runs `initialize`, opens ACP sessions, sends prompts while collecting their
 * `session/update` chunks, answers the agent's permission and file requests by policy, and ends the process
 * (SIGTERM, then SIGKILL after a grace period). The ACP SDK loads when the first process starts.
 */
import type * as acp from "@agentclientprotocol/sdk";
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { isAbsolute, relative, resolve } from "node:path";
import { Readable, Writable } from "node:stream";
import { BridgeError } from "../errors.js";
import { lazyImport } from "../lazy-modules.js";
import { describeExit, describeSpawnFailure, withStderr, type SpawnFailure } from "./process-exits.js";

/** How a worker answers an agent's `session/request_permission`. Default `deny`. */
export type PermissionPolicy = "allow" | "deny" | ((request: acp.RequestPermissionRequest) => "allow" | "deny" | Promise<"allow" | "deny">);

/** What starting one process needs. */
export interface AcpProcessOptions {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd: string | undefined;
  permissions: PermissionPolicy;
  /** File reads and writes are allowed only below this directory; none when undefined. */
  fsRoot: string | undefined;
  /** Gets each line the process writes to stderr (a line longer than the tail is cut into pieces). */
  onStderr?: (line: string) => void;
}

/** How a process ended. */
export interface ProcessExit {
  code: number | null;
  signal: string | null;
  /** Set when the command could not be run at all: no process ever existed. */
  spawnFailure?: SpawnFailure;
}

/** How much of a process's stderr is kept for error messages and the log (characters, about 4 KiB). */
export const STDERR_TAIL_CHARS = 4096;
/** How long an exit waits for the rest of the process's stderr (a grandchild may hold the pipe open). */
const STDERR_DRAIN_MS = 200;
const EXIT_REPORT_WAIT_MS = 200;

const acpSdk = lazyImport("@agentclientprotocol/sdk", "An ACP worker", () => import("@agentclientprotocol/sdk"));

/** The loaded ACP SDK. */
type AcpSdk = typeof acp;

/** A process's ACP connection and the SDK it was made with. */
interface AcpConnection {
  sdk: AcpSdk;
  connection: acp.ClientConnection;
}

function insideRoot(root: string, path: string): boolean {
  if (!isAbsolute(path)) return false;
  const fromRoot = relative(resolve(root), resolve(path));
  return fromRoot === "" || (!fromRoot.startsWith("..") && !isAbsolute(fromRoot));
}

function pickOption(options: acp.PermissionOption[], decision: "allow" | "deny"): acp.RequestPermissionOutcome {
  const kinds = decision === "allow" ? ["allow_once", "allow_always"] : ["reject_once", "reject_always"];
  const option = options.find((candidate) => kinds.includes(candidate.kind));
  return option === undefined ? { outcome: "cancelled" } : { outcome: "selected", optionId: option.optionId };
}

/**
 * A running ACP agent process. The constructor throws what `spawn` throws synchronously (e.g. ENOTDIR for a
 * cwd that is a file); a command that cannot be found or run ends `exited` with a `spawnFailure` instead.
 */
export class AcpProcess {
  /** Resolves when the process has exited and its stderr is read (or never started: see `spawnFailure`). */
  readonly exited: Promise<ProcessExit>;
  private readonly child: ChildProcess;
  /** Made once the SDK has loaded; until then the process's stdout waits in its pipe. */
  private readonly connected: Promise<AcpConnection>;
  private readonly chunkListeners = new Map<string, (text: string) => void>();
  private stderrTail = "";
  private stderrLine = "";
  private exit: ProcessExit | undefined;
  private terminating = false;

  constructor(private readonly options: AcpProcessOptions) {
    this.child = spawn(options.command, options.args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
      // Its own process group: a Ctrl-C in troupe's terminal reaches troupe, which stops its workers in order,
      // rather than killing them mid-prompt. Should troupe itself die, the agent reads the end of its stdin.
      detached: true,
    });
    const stderrClosed = new Promise<void>((resolveClosed) => {
      if (this.child.stderr === null) resolveClosed();
      else this.child.stderr.once("close", resolveClosed);
    });
    this.exited = new Promise((resolveExit) => {
      const report = (exit: ProcessExit): void => {
        this.exit = exit;
        let drained: NodeJS.Timeout | undefined;
        void Promise.race([stderrClosed, new Promise<void>((resolveSoon) => (drained = setTimeout(resolveSoon, STDERR_DRAIN_MS)))]).then(() => {
          clearTimeout(drained);
          this.flushStderrLine();
          resolveExit(exit);
        });
      };
      this.child.once("exit", (code, signal) => report({ code, signal }));
      this.child.once("error", (error) => {
        // Without a pid the process never existed (the command is missing or not executable): no exit follows.
        if (this.child.pid === undefined && this.exit === undefined) {
          report({ code: null, signal: null, spawnFailure: describeSpawnFailure(error, options.command, options.cwd) });
        }
      });
    });
    this.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => this.takeStderr(chunk));
    // A process that dies mid-write must not take the runtime down with EPIPE.
    this.child.stdin?.on("error", () => undefined);
    this.connected = acpSdk().then((sdk) => ({ sdk, connection: this.connect(sdk) }));
    // An SDK that cannot load fails every request (`call`), and `initialize` first: not an unhandled rejection.
    this.connected.catch(() => undefined);
    void this.exited.then(() =>
      this.connected.then(
        ({ connection }) => connection.close(),
        () => undefined,
      ),
    );
  }

  /** The client side of ACP over the process's stdio: chunks to their listeners, permission and file requests answered. */
  private connect(sdk: AcpSdk): acp.ClientConnection {
    const client = sdk
      .client({ name: "troupe" })
      .onNotification(sdk.methods.client.session.update, ({ params }) => {
        const { update } = params;
        if (update.sessionUpdate === "agent_message_chunk" && update.content.type === "text") {
          this.chunkListeners.get(params.sessionId)?.(update.content.text);
        }
      })
      .onRequest(sdk.methods.client.session.requestPermission, async ({ params }) => {
        const policy = this.options.permissions;
        const decision = typeof policy === "function" ? await policy(params) : policy;
        return { outcome: pickOption(params.options, decision) };
      })
      .onRequest(sdk.methods.client.fs.readTextFile, async ({ params }) => {
        const path = this.allowedPath(sdk, params.path);
        const content = await readFile(path, "utf8");
        if (params.line == null && params.limit == null) return { content };
        const lines = content.split("\n");
        const start = Math.max(0, (params.line ?? 1) - 1);
        return { content: lines.slice(start, params.limit == null ? undefined : start + params.limit).join("\n") };
      })
      .onRequest(sdk.methods.client.fs.writeTextFile, async ({ params }) => {
        await writeFile(this.allowedPath(sdk, params.path), params.content, "utf8");
        return {};
      });
    return client.connect(
      sdk.ndJsonStream(Writable.toWeb(this.child.stdin!) as WritableStream<Uint8Array>, Readable.toWeb(this.child.stdout!) as ReadableStream<Uint8Array>),
    );
  }

  /** The process id (undefined if it could not start). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Whether `terminate()` was called: the process ends because it was asked to, not because it failed. */
  get terminated(): boolean {
    return this.terminating;
  }

  /** Whether the process is still running. */
  get alive(): boolean {
    return this.exit === undefined;
  }

  /** The last `STDERR_TAIL_CHARS` the process wrote to stderr (for error messages and the log). */
  get stderr(): string {
    return this.stderrTail.trim();
  }

  /** Runs the `initialize` handshake. */
  async initialize(): Promise<acp.InitializeResponse> {
    const fs = this.options.fsRoot !== undefined;
    return this.call(({ sdk, connection }) =>
      connection.agent.request(sdk.methods.agent.initialize, {
        protocolVersion: sdk.PROTOCOL_VERSION,
        clientCapabilities: { fs: { readTextFile: fs, writeTextFile: fs } },
      }),
    );
  }

  /** Opens an ACP session and returns its id. */
  async newSession(cwd: string): Promise<string> {
    const response = await this.call(({ sdk, connection }) => connection.agent.request(sdk.methods.agent.session.new, { cwd, mcpServers: [] }));
    return response.sessionId;
  }

  /** Sends one prompt; `onChunk` gets each text chunk the agent streams. `signal` sends `session/cancel`. */
  async prompt(sessionId: string, text: string, signal: AbortSignal, onChunk: (text: string) => void): Promise<acp.PromptResponse> {
    const onAbort = (): void => {
      void this.connected.then(({ sdk, connection }) => connection.agent.notify(sdk.methods.agent.session.cancel, { sessionId })).catch(() => undefined);
    };
    this.chunkListeners.set(sessionId, onChunk);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      return await this.call(({ sdk, connection }) =>
        connection.agent.request(sdk.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text }] }),
      );
    } finally {
      signal.removeEventListener("abort", onAbort);
      // A cancelled turn may answer after the next prompt of the session took over its chunks.
      if (this.chunkListeners.get(sessionId) === onChunk) this.chunkListeners.delete(sessionId);
    }
  }

  /**
   * Ends the process: SIGTERM, then SIGKILL if it is still alive after `graceMs`. Resolves once it exited, or
   * `graceMs` after the SIGKILL at the latest (a process stuck in the kernel must not hold the runtime's stop).
   */
  async terminate(graceMs: number): Promise<ProcessExit> {
    if (this.exit !== undefined) return this.exited;
    this.terminating = true;
    this.child.kill("SIGTERM");
    const timers: NodeJS.Timeout[] = [];
    const givenUp = new Promise<ProcessExit>((resolveGivenUp) => {
      timers.push(setTimeout(() => this.child.kill("SIGKILL"), graceMs));
      timers.push(setTimeout(() => resolveGivenUp({ code: null, signal: null }), 2 * graceMs));
    });
    try {
      return await Promise.race([this.exited, givenUp]);
    } finally {
      for (const timer of timers) clearTimeout(timer);
    }
  }

  /** Kills the process at once (used when the runtime must not wait). */
  kill(): void {
    if (this.exit === undefined) this.child.kill("SIGKILL");
  }

  /** Keeps the bounded tail and hands lines to `onStderr`, cut into pieces of at most the tail's size. */
  private takeStderr(chunk: string): void {
    this.stderrTail = (this.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
    if (this.options.onStderr === undefined) return;
    const lines = (this.stderrLine + chunk).split("\n");
    // A process that writes without newlines must not grow the buffer without bound.
    this.stderrLine = lines.pop() ?? "";
    if (this.stderrLine.length >= STDERR_TAIL_CHARS) {
      lines.push(this.stderrLine);
      this.stderrLine = "";
    }
    for (const line of lines) {
      for (let at = 0; at < Math.max(1, line.length); at += STDERR_TAIL_CHARS) this.options.onStderr(line.slice(at, at + STDERR_TAIL_CHARS).replace(/\r$/, ""));
    }
  }

  private flushStderrLine(): void {
    if (this.stderrLine !== "") this.options.onStderr?.(this.stderrLine);
    this.stderrLine = "";
  }

  private allowedPath(sdk: AcpSdk, path: string): string {
    const root = this.options.fsRoot;
    if (root === undefined || !insideRoot(root, path)) {
      throw sdk.RequestError.invalidParams({ path }, `Access denied: ${path} is outside the worker's file root`);
    }
    return resolve(path);
  }

  /** Runs a request; maps a dead connection to TRANSPORT (session invalid) and an agent error to UPSTREAM. */
  private async call<T>(request: (connected: AcpConnection) => Promise<T>): Promise<T> {
    if (this.exit !== undefined) throw this.deadError();
    try {
      return await request(await this.connected);
    } catch (error) {
      if (this.exit !== undefined || !this.child.stdin?.writable) throw this.deadError();
      const sdk = acpSdk.loaded;
      if (sdk !== undefined && error instanceof sdk.RequestError) {
        throw new BridgeError("UPSTREAM", `Worker agent error ${error.code}: ${error.message}`, {
          code: error.code,
          ...(error.data === undefined ? {} : { data: error.data }),
        });
      }
      // The connection usually closes a moment before the exit is reported: give the exit a chance to explain.
      await Promise.race([this.exited, new Promise((resolveSoon) => setTimeout(resolveSoon, EXIT_REPORT_WAIT_MS))]);
      if (this.exit !== undefined) throw this.deadError();
      throw new BridgeError("TRANSPORT", `Worker connection failed: ${error instanceof Error ? error.message : String(error)}`, {
        sessionValid: false,
      });
    }
  }

  private deadError(): BridgeError {
    const { exit } = this;
    const how = exit === undefined ? "closed its connection" : (exit.spawnFailure?.reason ?? describeExit(exit.code, exit.signal));
    return new BridgeError("TRANSPORT", `Worker process ${withStderr(how, this.stderr)}`, {
      sessionValid: false,
      ...(this.stderr === "" ? {} : { stderr: this.stderr }),
    });
  }
}
