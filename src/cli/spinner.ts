/**
 * A spinner on a terminal stream while `troupe delegate` waits for the first token; nothing when the stream
 * is not a terminal (a pipe or a file gets no escape codes).
 */

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const FRAME_MS = 80;

/** A running spinner; `stop()` erases it (and is safe to call more than once). */
export interface Spinner {
  stop(): void;
}

/** Shows `text` after a spinning frame on `stream` if it is a terminal. */
export function startSpinner(stream: NodeJS.WriteStream, text: string): Spinner {
  if (!stream.isTTY) return { stop: () => undefined };
  let frame = 0;
  const draw = (): void => {
    stream.write(`\r${FRAMES[frame % FRAMES.length]} ${text}`);
    frame += 1;
  };
  draw();
  const timer = setInterval(draw, FRAME_MS);
  timer.unref();
  let running = true;
  return {
    stop: () => {
      if (!running) return;
      running = false;
      clearInterval(timer);
      stream.write("\r\x1b[K");
    },
  };
}
