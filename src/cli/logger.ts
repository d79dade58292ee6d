/**
 * The CLI's logger: pino writing JSON lines to stderr, or pino-pretty's readable lines when stderr is a
 * terminal. pino is loaded when a logger is made (by `serve` and `delegate`), never by the library.
 */
import type { Logger } from "pino";
import { logRuntimeEvents } from "../events/event-log.js";
import type { Runtime } from "../runtime/runtime.js";

/** The levels `--log-level` takes. */
export const CLI_LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "silent"] as const;

/** A level `--log-level` takes. */
export type CliLogLevel = (typeof CLI_LOG_LEVELS)[number];

/** A pino logger on stderr at `level`; pretty (colours, local times) when stderr is a terminal. */
export async function createCliLogger(level: CliLogLevel): Promise<Logger> {
  const { pino } = await import("pino");
  // Synchronous writes: a line logged just before the process exits is not lost.
  if (!process.stderr.isTTY) return pino({ level, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: 2, sync: true }));
  const { default: pretty } = await import("pino-pretty");
  return pino(
    { level },
    pretty({ destination: 2, sync: true, colorize: true, singleLine: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,event" }),
  );
}

/**
 * Logs a runtime's events to stderr at `level` (see `logRuntimeEvents`); a prompt's lines carry the agent of its
 * session while the session exists. Call it before `runtime.start()`: what happens at start is logged too.
 */
export async function logRuntimeToStderr(runtime: Runtime, level: CliLogLevel): Promise<Logger> {
  const logger = await createCliLogger(level);
  logRuntimeEvents(runtime, logger, { agentOfSession: (sessionId) => (runtime.hasSession(sessionId) ? runtime.sessionStatus(sessionId).agentId : undefined) });
  return logger;
}
