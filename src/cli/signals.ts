/**
 * Ctrl-C and SIGTERM for long-running commands: the first signal starts an orderly stop; a later one ends the
 * process at once, as the signal's default would.
 */

/**
 * A second signal this soon after the first is the same Ctrl-C seen twice, not an impatient user: a terminal
 * signals its whole foreground process group.
 */
export const REPEATED_SIGNAL_MS = 1_000;

/**
 * Under a package manager, how late npm's copy of the first signal may come and still be taken for it: a loaded
 * machine was seen to deliver it more than a second after the terminal's.
 */
export const FORWARDED_SIGNAL_MS = 10_000;

export interface SignalHandlingOptions {
  /**
   * Whether a package manager (`npm start`) runs this process: it forwards every signal it gets, so a terminal's
   * Ctrl-C reaches the process twice, once from the terminal and once from npm. The first repeat of the same
   * signal within `FORWARDED_SIGNAL_MS` is then that copy (a loaded machine delays either one by seconds).
   * Default: npm, yarn and pnpm say so in `npm_lifecycle_event` (which their processes' children inherit: there,
   * a deliberate second signal of the same kind within that time is taken for a copy, and a third one ends it).
   */
  readonly forwarded?: boolean;
  /** Ends the process with the signal; by default the signal itself, with no handler left to catch it. */
  readonly kill?: (signal: NodeJS.Signals) => void;
  /** Milliseconds on a monotonic clock. */
  readonly now?: () => number;
}

/**
 * Calls `onFirst` at the first of `signals`. A repeat less than `REPEATED_SIGNAL_MS` after it, and under a
 * package manager the first repeat of the same signal less than `FORWARDED_SIGNAL_MS` after it, is the same
 * signal seen twice and ignored; any other ends the process with that signal. Returns the function that removes
 * the handlers.
 */
export function handleSignals(signals: NodeJS.Signals[], onFirst: (signal: NodeJS.Signals) => void, options: SignalHandlingOptions = {}): () => void {
  const { forwarded = process.env.npm_lifecycle_event !== undefined, now = () => performance.now() } = options;
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  let forwardSeen = !forwarded;
  const dispose = (): void => {
    for (const signal of signals) process.off(signal, handler);
  };
  const kill =
    options.kill ??
    ((signal: NodeJS.Signals): void => {
      dispose();
      process.kill(process.pid, signal);
    });
  const handler = (signal: NodeJS.Signals): void => {
    const at = now();
    if (first === undefined) {
      first = { signal, at };
      onFirst(signal);
      return;
    }
    const since = at - first.at;
    if (!forwardSeen && signal === first.signal && since < FORWARDED_SIGNAL_MS) forwardSeen = true;
    else if (since >= REPEATED_SIGNAL_MS) kill(signal);
  };
  for (const signal of signals) process.on(signal, handler);
  return dispose;
}
