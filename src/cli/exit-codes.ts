/**
 * How `troupe` ends: its exit codes, and the failure that carries one up to `main`.
 */

/** Done. */
export const EXIT_OK = 0;
/** The command ran and failed (a provider's error, a port in use, …). */
export const EXIT_FAILED = 1;
/** Bad usage: an unknown command or option, a bad value, an unknown agent or provider. */
export const EXIT_USAGE = 2;
/** Interrupted by Ctrl-C (SIGINT): 128 + 2, as shells report it. */
export const EXIT_INTERRUPTED = 130;

/** A failure `main` reports as its message, ending the process with `exitCode`. */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
    this.name = "CliFailure";
  }
}

/** Runs `parse`; what it throws becomes bad usage (exit 2) with the same message. */
export function asUsage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new CliFailure(error instanceof Error ? error.message : String(error), EXIT_USAGE);
  }
}
