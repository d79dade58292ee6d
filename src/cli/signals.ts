/**
 * Ctrl-C and SIGTERM for long-running commands: the first signal starts an orderly stop; a later one ends the
 * process at once, as the signal's default would.
 */

/**
 * A second signal this soon after the first is the same Ctrl-C seen twice, not an impatient user: a terminal
 * signals its whole foreground process group, and `npm start` forwards what it gets to troupe as well.
 */
export const REPEATED_SIGNAL_MS = 1_000;

/**
 * Calls `onFirst` at the first of `signals`; one that comes later than `REPEATED_SIGNAL_MS` after it kills the
 * process with that signal. Returns the function that removes the handlers.
 */
export function handleSignals(signals: NodeJS.Signals[], onFirst: (signal: NodeJS.Signals) => void): () => void {
  let firstAt: number | undefined;
  const dispose = (): void => {
    for (const signal of signals) process.off(signal, handler);
  };
  const handler = (signal: NodeJS.Signals): void => {
    const now = performance.now();
    if (firstAt === undefined) {
      firstAt = now;
      onFirst(signal);
    } else if (now - firstAt >= REPEATED_SIGNAL_MS) {
      dispose();
      process.kill(process.pid, signal);
    }
  };
  for (const signal of signals) process.on(signal, handler);
  return dispose;
}
