/**
 * How a worker process ended, or why it never started, in words a person can act on: which command, which
 * directory, which OS error, and the last lines it wrote to stderr.
 */
import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { getSystemErrorMap } from "node:util";

/** Spawn errors that fail the same way on every attempt: restarting the worker would not help. */
const PERMANENT_SPAWN_ERRORS = new Set([
  "ENOENT",
  "EACCES",
  "ENOTDIR",
  "EISDIR",
  "ENOEXEC",
  "EPERM",
  "ELOOP",
  "ENAMETOOLONG",
  "ERR_INVALID_ARG_VALUE",
  "ERR_INVALID_ARG_TYPE",
]);

/** Lines of stderr quoted in an error message (the whole bounded tail goes into `details.stderr` and the log). */
const QUOTED_STDERR_LINES = 3;

/** What a failed spawn tells: the OS error code and how to say it. */
export interface SpawnFailure {
  /** `ENOENT`, `EACCES`, … */
  code: string;
  /** E.g. `cannot run "./agent.mjs" (/srv/agents/agent.mjs): no such file (ENOENT)`. */
  reason: string;
  /** Whether trying again cannot succeed (the command or its directory is wrong). */
  permanent: boolean;
}

function codeOf(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : "UNKNOWN";
}

function osDescriptionOf(error: unknown): string | undefined {
  const errno = (error as { errno?: unknown } | null)?.errno;
  return typeof errno === "number" ? getSystemErrorMap().get(errno)?.[1] : undefined;
}

/** Explains why `command` could not be spawned in `cwd` (undefined: this process's directory). */
export function describeSpawnFailure(error: unknown, command: string, cwd: string | undefined): SpawnFailure {
  const code = codeOf(error);
  const quoted = JSON.stringify(command);
  const directory = cwd ?? process.cwd();
  const fromPath = !command.includes("/");
  const where = fromPath || isAbsolute(command) ? "" : ` (${resolve(directory, command)})`;
  let why: string;
  if (code === "ENOENT" && cwd !== undefined && !existsSync(cwd)) why = `its cwd ${cwd} does not exist (ENOENT)`;
  else if (code === "ENOENT") why = fromPath ? "no such command on the PATH (ENOENT)" : "no such file (ENOENT)";
  else if (code === "EACCES") why = "permission denied (EACCES): is it an executable file, or a directory?";
  else if (code === "ENOTDIR") why = `its cwd ${directory} is not a directory, or a part of the command's path is not (ENOTDIR)`;
  else {
    const description = osDescriptionOf(error) ?? (error instanceof Error ? error.message : String(error));
    why = `${description} (${code})`;
  }
  return { code, reason: `cannot run ${quoted}${where}: ${why}`, permanent: PERMANENT_SPAWN_ERRORS.has(code) };
}

/** "exited with code 1", "was killed by SIGKILL". */
export function describeExit(code: number | null, signal: string | null): string {
  return signal !== null ? `was killed by ${signal}` : code !== null ? `exited with code ${code}` : "exited";
}

/** `what`, then the last lines of stderr if the process wrote any: "exited with code 1; its stderr ends: …". */
export function withStderr(what: string, stderrTail: string): string {
  const lines = stderrTail.trim().split("\n").slice(-QUOTED_STDERR_LINES).join(" | ");
  return lines === "" ? what : `${what}; its stderr ends: ${lines}`;
}
