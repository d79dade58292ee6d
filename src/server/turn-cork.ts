/**
 * Holds a socket's writes until the current turn of the event loop is done. Without it every frame written
 * costs a system call, and a busy bus spends most of its time in `writev`.
 */

/** What can be corked: a TCP socket, an HTTP response. */
interface Corkable {
  cork(): void;
  uncork(): void;
}

/** Corks its stream at the first write of a turn and uncorks it once the turn's I/O callbacks are done. */
export class TurnCork {
  private corked = false;

  constructor(private readonly stream: Corkable) {}

  /** Called before each write: the writes of one turn leave together. */
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    setImmediate(() => {
      this.corked = false;
      this.stream.uncork();
    });
  }
}
