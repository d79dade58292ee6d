/**
 * The CLI's logger: pino writing JSON lines to stderr, or pino-pretty's readable lines when stderr is a
 * terminal. Loaded only by the commands that log (`serve`, `delegate`), so that the library never loads pino.
 */
import type { Logger } from "pino";

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
  return pino({ level }, pretty({ destination: 2, sync: true, colorize: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname,event" }));
}
