/**
 * A bounded memory of recent message ids: how an agent (a `connectAgent` client, a runtime agent's endpoint)
 * sees each message once although the bus delivers at least once.
 */

/** A bounded set of recent ids: the oldest is forgotten first. */
export class RecentIds {
  private readonly ids = new Set<string>();

  constructor(private readonly capacity: number) {}

  /** Adds an id; false when it was already there. */
  add(id: string): boolean {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value as string);
    return true;
  }
}
