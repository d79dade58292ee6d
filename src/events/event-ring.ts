/**
 * The ring buffer of the event stream: the last events, serialized once, bounded in count and in size, so a
 * subscriber that reconnects with `?since=<seq>` (or one that fell behind) is served from it.
 */
import type { RuntimeEvent } from "./event-hub.js";
import type { EventKeys } from "./event-filter.js";

/**
 * One event as the stream keeps it: its JSON, encoded once as a WebSocket text frame that is written as is to
 * every subscriber (server-sent events write the JSON in it), and the event, whose keys a filter reads (read
 * once, when a filter first needs them: a subscriber of every event never does).
 */
export interface RecordedEvent {
  seq: number;
  /** The WebSocket frame: a header, then the JSON in UTF-8 from `jsonStart`. */
  frame: Buffer;
  jsonStart: number;
  event: RuntimeEvent;
  keys?: EventKeys;
}

/** The last `maxEvents` events that take at most `maxBytes` together (always at least the newest one). */
export class EventRing {
  private readonly slots: Array<RecordedEvent | undefined>;
  /**
   * Each slot's size in bytes, beside the slots: dropping the oldest event reads its size here, not from the
   * event, which by then is cold in memory (a cache miss per event recorded).
   */
  private readonly sizes: Int32Array;
  /** Where the oldest event is in `slots`. */
  private first = 0;
  private count = 0;
  private bytes = 0;

  constructor(
    private readonly maxEvents: number,
    private readonly maxBytes: number,
  ) {
    this.slots = new Array<RecordedEvent | undefined>(maxEvents);
    this.sizes = new Int32Array(maxEvents);
  }

  /** Events held. */
  get size(): number {
    return this.count;
  }

  /** The bytes of the events held. */
  get byteLength(): number {
    return this.bytes;
  }

  /** The seq of the oldest event held, if any. */
  get oldestSeq(): number | undefined {
    return this.slots[this.first]?.seq;
  }

  /**
   * Keeps an event, dropping the oldest ones past the bounds. Events come in `seq` order without gaps (the
   * ring hears every event of the hub); one that does not follow the newest starts the ring again, so `get`
   * can find events by their distance from the oldest.
   */
  push(event: RecordedEvent): void {
    if (this.maxEvents === 0) return;
    const newest = this.count === 0 ? undefined : this.slots[(this.first + this.count - 1) % this.maxEvents];
    if (newest !== undefined && event.seq !== newest.seq + 1) this.clear();
    while (this.count > 0 && (this.count >= this.maxEvents || this.bytes + event.frame.length > this.maxBytes)) this.dropOldest();
    const slot = (this.first + this.count) % this.maxEvents;
    this.slots[slot] = event;
    this.sizes[slot] = event.frame.length;
    this.count += 1;
    this.bytes += event.frame.length;
  }

  /** The event with this seq, while it is held. */
  get(seq: number): RecordedEvent | undefined {
    const oldest = this.oldestSeq;
    if (oldest === undefined || seq < oldest || seq >= oldest + this.count) return undefined;
    return this.slots[(this.first + seq - oldest) % this.maxEvents];
  }

  /** Forgets every event. */
  clear(): void {
    this.slots.fill(undefined);
    this.first = 0;
    this.count = 0;
    this.bytes = 0;
  }

  private dropOldest(): void {
    this.slots[this.first] = undefined;
    this.bytes -= this.sizes[this.first] ?? 0;
    this.first = (this.first + 1) % this.maxEvents;
    this.count -= 1;
  }
}
