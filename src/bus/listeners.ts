/**
 * Typed listeners by event type: what `sessionManager.on(type, listener)` is built on.
 */

/** A listener of one event type of the union `E`. */
export type Listener<E extends { type: string }, T extends E["type"]> = (event: Extract<E, { type: T }>) => void;

/** Listeners of a union of events, by type. */
export class Listeners<E extends { type: string }> {
  private readonly byType = new Map<string, Set<(event: E) => void>>();

  /** Adds a listener; returns the function that removes it. */
  on<T extends E["type"]>(type: T, listener: Listener<E, T>): () => void {
    let set = this.byType.get(type);
    if (set === undefined) {
      set = new Set();
      this.byType.set(type, set);
    }
    set.add(listener as (event: E) => void);
    return () => this.off(type, listener);
  }

  /** Removes a listener. */
  off<T extends E["type"]>(type: T, listener: Listener<E, T>): void {
    this.byType.get(type)?.delete(listener as (event: E) => void);
  }

  /**
   * Calls the listeners of the event's type. A listener that throws is reported as a process warning and does
   * not stop the others: it runs inside an actor's transition, which must not fail for it.
   */
  emit(event: E): void {
    const set = this.byType.get(event.type);
    if (set === undefined) return;
    for (const listener of set) {
      try {
        listener(event);
      } catch (error) {
        process.emitWarning(`A listener of ${event.type} threw: ${error instanceof Error ? error.message : String(error)}`, "TroupeListenerWarning");
      }
    }
  }
}
