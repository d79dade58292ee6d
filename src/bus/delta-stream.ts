/**
 * The deltas of one streamed task (`metadata.stream: true`) on their way to its sender as `status_update`s.
 * They are best effort: the final answer carries the whole text, and it must never wait behind, or be refused
 * because of, the deltas. So the text is gathered and sent at most once per turn of the event loop (a model
 * that emits every word at once sends one update, not one per word), held while the previous update still
 * waits in the sender's queue or that queue is half full, and what is still held when the answer is ready
 * goes with the answer's turn if there is room, else nowhere.
 */

/** Where a stream's updates go. */
export interface DeltaSink {
  /** Sends one `status_update` carrying `delta`; returns its message id. */
  send(delta: string): string;
  /** Whether the sender's queue has room for a best-effort message. */
  hasRoom(): boolean;
  /** Whether a message sent earlier still waits in the sender's queue (not yet written to it). */
  isWaiting(messageId: string): boolean;
}

/** One task's stream of deltas. */
export class DeltaStream {
  private pending: string[] = [];
  private lastUpdateId: string | undefined;
  private scheduled = false;
  private ended = false;

  constructor(private readonly sink: DeltaSink) {}

  /** Takes a delta of the prompt; it leaves with the others of this turn. */
  push(delta: string): void {
    if (this.ended) return;
    this.pending.push(delta);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush(false);
    });
  }

  /** The prompt is over: what is held goes now if the queue has room, before the answer; nothing goes after. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.flush(true);
    this.pending = [];
  }

  private flush(final: boolean): void {
    if (this.pending.length === 0 || !this.sink.hasRoom()) return;
    // Before the answer, the last text may follow an update still waiting: the answer is queued behind both.
    if (!final && this.lastUpdateId !== undefined && this.sink.isWaiting(this.lastUpdateId)) return;
    const delta = this.pending.join("");
    this.pending = [];
    this.lastUpdateId = this.sink.send(delta);
  }
}
