/**
 * Running `troupe` as a person does, for the CLI's tests: a child process whose stdout, stderr and exit code
 * are read; every child is killed after each test.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";

/** The project's folder. */
export const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(projectRoot, "src/cli/main.ts");
const children: ChildProcessWithoutNullStreams[] = [];
const closed = new WeakMap<ChildProcessWithoutNullStreams, Promise<number | null>>();

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

/** Starts `troupe` with these arguments, without the provider keys and bus key of the developer's environment. */
export function troupe(args: string[], env: Record<string, string> = {}, cwd = projectRoot): ChildProcessWithoutNullStreams {
  // A developer's own keys must not make the server reach a real provider from a test.
  const {
    AGENT_BUS_API_KEY: _key,
    OPENAI_API_KEY: _openai,
    OPENAI_BASE_URL: _base,
    ANTHROPIC_API_KEY: _anthropic,
    GEMINI_API_KEY: _gemini,
    ...inherited
  } = process.env;
  // tsx is resolved from the project, wherever the command runs.
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), MAIN, ...args], { cwd, env: { ...inherited, ...env } });
  children.push(child);
  closed.set(
    child,
    once(child, "close").then(([code]) => code as number | null),
  );
  return child;
}

/** Collects a stream's text; `until` resolves with the first match of a pattern, or rejects when the stream ends. */
export function collect(stream: NodeJS.ReadableStream): { text: () => string; until: (pattern: RegExp) => Promise<RegExpMatchArray> } {
  let text = "";
  let ended = false;
  const waiters: (() => void)[] = [];
  const wakeAll = (): void => {
    for (const wake of waiters.splice(0)) wake();
  };
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    text += chunk;
    wakeAll();
  });
  stream.on("end", () => {
    ended = true;
    wakeAll();
  });
  return {
    text: () => text,
    until: async (pattern) => {
      for (;;) {
        const found = text.match(pattern);
        if (found) return found;
        if (ended) throw new Error(`stream ended without ${pattern}: ${text}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

/** The exit code, once the process has exited and its output is all read. */
export function exitCodeOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return closed.get(child) ?? Promise.reject(new Error("not spawned by troupe()"));
}

/** Runs `troupe` to its end: exit code, stdout and stderr. */
export async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = troupe(args, env);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const code = await exitCodeOf(child);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

/** `troupe serve` on a free port, in memory; resolves once it says where it listens. */
export async function serveOnFreePort(args: string[] = [], env: Record<string, string> = {}, cwd = projectRoot) {
  const child = troupe(["serve", "--port", "0", "--host", "127.0.0.1", "--in-memory", ...args], env, cwd);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const [line = "", url = ""] = await stdout.until(/troupe listening on (http:\/\/\S+).*\n/);
  return { child, url, line, stdout, stderr };
}

/** The JSON log lines written so far (stderr is not a terminal here, so pino writes JSON). */
export function logLines(stderr: { text: () => string }): Array<Record<string, unknown>> {
  return stderr
    .text()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}
