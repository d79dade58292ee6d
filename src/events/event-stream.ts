/**
 * The event stream's subscribers (SPEC §5), whatever carries them (a WebSocket, a server-sent-events response):
 * the one listener of the hub that serializes each event once, the ring buffer that replays `?since=<seq>`,
 * and each subscriber's cursor into it.
 *
 * A subscriber is written to while its connection takes what it is given. Once what waits to be written to it
 * passes `maxBufferedBytes`, nothing more is written until that has left; meanwhile its next events wait in
 * the ring, shared by every subscriber, and it catches up from there. A subscriber whose next event the ring
 * no longer holds is too slow to keep up: it gets an `overflow` frame and is closed. So memory is the ring's
 * bound plus `maxBufferedBytes` (and one turn's events) per subscriber, whatever a client chooses not to read.
 *
 * The events a subscriber gets in one turn of the event loop are written to it together, once the turn is
 * over: one write per subscriber per turn, not one per event (a message makes about ten events), and
 * subscribers that get the same events share one buffer of them.
 */
import { unrefClock, type Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import { ConnectionCounts, quotaExceeded } from "../server/quotas.js";
import type { EventStreamControlFrame } from "../protocol/event-frames.js";
import type { RuntimeEvent } from "./event-hub.js";
import type { EventSource } from "./cluster-events.js";
import { keysOf, matchesFilter, type EventFilter, type EventKeys, type EventStreamRequest } from "./event-filter.js";
import { EventRing, type RecordedEvent } from "./event-ring.js";
import { encodeTextFrame } from "./websocket-frame.js";

/**
 * When the ring records: `"always"` (from `start()`), or `"watched"`: from the first subscriber until
 * `bufferIdleMs` after the last one left, so that nothing is built for the stream while nobody watches.
 */
export type EventBufferMode = "always" | "watched";

/** Options of an event stream. */
export interface EventStreamOptions {
  /** Events kept for replay; 0 keeps none (`since` then only tells what was missed). */
  bufferSize: number;
  /** Bytes of the events kept, together (their JSON and a few bytes of framing). */
  bufferBytes: number;
  bufferMode: EventBufferMode;
  /** In `"watched"` mode, how long the ring keeps recording after the last subscriber left (its reconnection window). */
  bufferIdleMs: number;
  /** Subscribers at once, over every transport; past it a new one is refused (503). */
  maxSubscribers: number;
  /** Subscribers one client (a remote address) may hold at once; past it a new one is refused (429). */
  maxSubscribersPerClient: number;
  /** What may wait to be written to one subscriber before it waits for its connection to drain. */
  maxBufferedBytes: number;
  /** Period of the heartbeat each transport sends (a ping, an SSE comment). */
  heartbeatMs: number;
  clock: Clock;
}

/**
 * The events one subscriber gets in one turn, in `seq` order, and their bytes as each transport writes them,
 * encoded once for every subscriber that gets the same events.
 */
export class EventBatch {
  private webSocketBytes: Buffer | undefined;
  private serverSentBytes: Buffer | undefined;

  constructor(readonly events: readonly RecordedEvent[]) {}

  /** The events' WebSocket frames, one after the other. */
  get webSocketFrames(): Buffer {
    this.webSocketBytes ??= this.events.length === 1 ? (this.events[0] as RecordedEvent).frame : Buffer.concat(this.events.map((event) => event.frame));
    return this.webSocketBytes;
  }

  /**
   * The events as server-sent events: `id: <seq>`, `data: <json>` (JSON.stringify escapes line breaks: one
   * line), and a blank line each.
   */
  get serverSentEvents(): Buffer {
    this.serverSentBytes ??= Buffer.concat(
      this.events.flatMap((event) => [Buffer.from(`id: ${event.seq}\ndata: `), event.frame.subarray(event.jsonStart), SSE_EVENT_END]),
    );
    return this.serverSentBytes;
  }
}

/** What ends a server-sent event's `data:` line and the event. */
const SSE_EVENT_END = Buffer.from("\n\n");

/** Where one subscriber's frames go: a WebSocket, a server-sent-events response. */
export interface EventSink {
  /** Bytes written and not yet taken by the connection. */
  readonly bufferedBytes: number;
  /**
   * Writes one turn's events (their bytes are shared by every subscriber that gets them: never changed);
   * `flushed` is called once they have left for the network (or the connection failed).
   */
  writeEvents(batch: EventBatch, flushed?: () => void): void;
  /** Writes a frame that is not an event (`missed`, `overflow`). */
  writeControl(frame: EventStreamControlFrame): void;
  /** Called every `heartbeatMs`: keeps proxies from closing a quiet stream, finds dead connections. */
  heartbeat(): void;
  /** Ends the connection: too slow (`overflow`, after its frame) or the bus stopping. Resolves once it is gone. */
  close(reason: "overflow" | "stopping"): Promise<void>;
}

/** What the stream counts, for metrics and tests. */
export interface EventStreamStats {
  subscribers: number;
  /** Events and bytes the ring holds. */
  bufferedEvents: number;
  bufferedBytes: number;
  /** The most that ever waited to be written to one subscriber, in bytes. */
  peakSubscriberBufferedBytes: number;
  /** Subscribers closed for being too slow. */
  overflows: number;
}

class Subscriber {
  /** It asked for every event: no filter to read. */
  readonly everything: boolean;
  /** The seq of the next event to consider for it. */
  cursor = 0;
  /** Its connection has more than `maxBufferedBytes` to write: it resumes when that has left. */
  waiting = false;
  closed = false;
  /** Its events of this turn, written once the turn is over, and their bytes. */
  pending: RecordedEvent[] = [];
  pendingBytes = 0;

  constructor(
    readonly filter: EventFilter,
    readonly sink: EventSink,
    /** Who it is, for its quota. */
    readonly client: string,
  ) {
    const { types, sessions, workflows, agents } = filter;
    this.everything = types === undefined && sessions === undefined && workflows === undefined && agents === undefined;
  }
}

/** The keys a filter reads of a recorded event, read from the event the first time a filter needs them. */
function keysOfRecord(record: RecordedEvent): EventKeys {
  record.keys ??= keysOf(record.event);
  return record.keys;
}

/**
 * The HTTP status that refuses a subscriber `admit` turned away: 429 (with `retry-after`) for a client over its
 * own quota, 503 when the server is full or stopping, as for agent sockets past `maxConnections`.
 */
export function refusalStatus(error: BridgeError): 429 | 503 {
  return typeof error.details.retryAfterMs === "number" ? 429 : 503;
}

/** An event as JSON; an event whose fields JSON cannot encode (a BigInt in an error's details) says so instead. */
function jsonOf(event: RuntimeEvent): string {
  try {
    return JSON.stringify(event);
  } catch (error) {
    const { seq, ts, type, actorId } = event;
    return JSON.stringify({ seq, ts, type, actorId, unserializable: error instanceof Error ? error.message : "unserializable" });
  }
}

/** The subscribers of one hub's events. */
export class EventStream {
  private readonly ring: EventRing;
  private readonly subscribers = new Set<Subscriber>();
  private readonly perClient: ConnectionCounts;
  private readonly clock: Clock;
  /** Unsubscribes the stream from the hub; set while it listens. */
  private detach: (() => void) | undefined;
  /** The ring records every event from now on, subscribers or not. */
  private recording = false;
  /** The seq of the last event the stream has heard (or the hub's, when it started listening). */
  private lastSeen = 0;
  private heartbeatTimer: unknown;
  /** Ends the recording of a ring nobody watches any more (`"watched"` mode). */
  private idleTimer: unknown;
  private accepting = true;
  private peakBufferedBytes = 0;
  private overflows = 0;
  /** Subscribers with events to write at the end of this turn. */
  private readonly toWrite: Subscriber[] = [];

  constructor(
    private readonly hub: EventSource,
    private readonly options: EventStreamOptions,
  ) {
    this.ring = new EventRing(options.bufferSize, options.bufferBytes);
    this.perClient = new ConnectionCounts(options.maxSubscribersPerClient);
    this.clock = unrefClock(options.clock);
  }

  /** Starts recording in `"always"` mode. */
  start(): void {
    if (this.options.bufferMode === "always") this.record();
  }

  /** What the stream counts now. */
  stats(): EventStreamStats {
    return {
      subscribers: this.subscribers.size,
      bufferedEvents: this.ring.size,
      bufferedBytes: this.ring.byteLength,
      peakSubscriberBufferedBytes: this.peakBufferedBytes,
      overflows: this.overflows,
    };
  }

  /**
   * Throws CAPACITY when `client` cannot subscribe now: the server is full or stopping, or the client holds its
   * quota of subscribers (`refusalStatus` tells them apart). Checked before a handshake, and again by `subscribe`.
   */
  admit(client: string): void {
    if (!this.accepting) throw new BridgeError("CAPACITY", "The bus is stopping", { retryable: true });
    const limit = this.options.maxSubscribers;
    if (this.subscribers.size >= limit) throw new BridgeError("CAPACITY", `The bus has reached maxEventSubscribers (${limit})`, { retryable: true, limit });
    const quota = this.perClient.limit;
    if (this.perClient.of(client) >= quota)
      throw quotaExceeded(`${client} holds ${quota} event streams, its quota (maxEventSubscribersPerClient)`, quota, 1_000);
  }

  /**
   * Adds a subscriber: it gets what its `since` asks to replay (a `missed` frame first when that is not held
   * any more), then every event that passes its filter, in `seq` order. Returns the function its transport
   * calls when the connection is gone.
   */
  subscribe(request: EventStreamRequest, sink: EventSink, client: string): () => void {
    this.admit(client);
    this.listen();
    this.record();
    this.cancelIdle();
    this.perClient.open(client);
    const subscriber = new Subscriber(request.filter, sink, client);
    subscriber.cursor = this.replayStart(request.since, sink);
    this.subscribers.add(subscriber);
    if (this.subscribers.size === 1) this.scheduleHeartbeat();
    this.pump(subscriber);
    return () => this.remove(subscriber);
  }

  /** Refuses new subscribers and closes every one (the bus is stopping). */
  async close(): Promise<void> {
    this.accepting = false;
    const closing = [...this.subscribers].map((subscriber) => {
      // What it was given this turn goes out before the close.
      this.writePending(subscriber);
      subscriber.closed = true;
      this.perClient.close(subscriber.client);
      return subscriber.sink.close("stopping");
    });
    this.subscribers.clear();
    this.stopHeartbeat();
    this.cancelIdle();
    this.recording = false;
    this.stopListening();
    this.ring.clear();
    await Promise.all(closing);
  }

  private record(): void {
    if (this.options.bufferSize === 0 || this.recording) return;
    this.listen();
    this.recording = true;
  }

  private listen(): void {
    if (this.detach !== undefined) return;
    this.lastSeen = this.hub.lastSeq;
    this.detach = this.hub.on("*", (event) => this.onEvent(event));
  }

  private remove(subscriber: Subscriber): void {
    subscriber.closed = true;
    if (!this.subscribers.delete(subscriber)) return;
    this.perClient.close(subscriber.client);
    if (this.subscribers.size > 0) return;
    this.stopHeartbeat();
    if (!this.recording) this.stopListening();
    else if (this.options.bufferMode === "watched") this.idleTimer = this.clock.setTimeout(() => this.stopRecording(), this.options.bufferIdleMs);
  }

  /** Nobody came back within `bufferIdleMs`: the ring is emptied and nothing is built for the stream any more. */
  private stopRecording(): void {
    this.idleTimer = undefined;
    this.recording = false;
    this.ring.clear();
    this.stopListening();
  }

  private stopListening(): void {
    this.detach?.();
    this.detach = undefined;
  }

  private cancelIdle(): void {
    if (this.idleTimer !== undefined) this.clock.clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  /** The seq a new subscriber starts at; writes `missed` when the events right after `since` are not held. */
  private replayStart(since: number | undefined, sink: EventSink): number {
    const next = this.lastSeen + 1;
    if (since === undefined) return next;
    const oldest = this.ring.oldestSeq ?? next;
    // A seq this stream never gave out comes from before a restart of the bus: everything held is news.
    if (since + 1 >= oldest && since <= this.lastSeen) return since + 1;
    const message =
      since > this.lastSeen
        ? `No event ${since} was ever sent by this bus (it restarted since?): replaying from ${oldest}, the oldest held`
        : `Events ${since + 1} to ${oldest - 1} are no longer held (eventBufferSize): replaying from ${oldest}`;
    sink.writeControl({ type: "missed", since, oldestSeq: oldest, message });
    return oldest;
  }

  private onEvent(event: RuntimeEvent): void {
    this.lastSeen = event.seq;
    const { frame, payloadStart } = encodeTextFrame(jsonOf(event));
    const record: RecordedEvent = { seq: event.seq, frame, jsonStart: payloadStart, event };
    if (this.recording) this.ring.push(record);
    for (const subscriber of this.subscribers) {
      if (subscriber.cursor === record.seq && !subscriber.waiting) this.deliver(subscriber, record);
      // Behind: its events wait in the ring, as long as the ring holds them.
      else if (subscriber.cursor <= record.seq && this.ring.get(subscriber.cursor) === undefined) this.overflow(subscriber);
    }
  }

  /** Writes held events to a subscriber until it is caught up or its connection is full. */
  private pump(subscriber: Subscriber): void {
    while (!subscriber.closed && !subscriber.waiting && subscriber.cursor <= this.lastSeen) {
      const record = this.ring.get(subscriber.cursor);
      if (record === undefined) {
        this.overflow(subscriber);
        return;
      }
      this.deliver(subscriber, record);
    }
  }

  /** Adds an event to what a subscriber is written at the end of the turn; past its bound, it waits for that to leave. */
  private deliver(subscriber: Subscriber, record: RecordedEvent): void {
    subscriber.cursor = record.seq + 1;
    if (!subscriber.everything && !matchesFilter(subscriber.filter, keysOfRecord(record))) return;
    if (subscriber.pending.length === 0) {
      if (this.toWrite.length === 0) setImmediate(() => this.writeTurn());
      this.toWrite.push(subscriber);
    }
    subscriber.pending.push(record);
    subscriber.pendingBytes += record.frame.length;
    if (subscriber.sink.bufferedBytes + subscriber.pendingBytes >= this.options.maxBufferedBytes) subscriber.waiting = true;
  }

  /** Writes a subscriber its events of this turn now, ahead of the turn's end (it is closing). */
  private writePending(subscriber: Subscriber): void {
    if (subscriber.pending.length === 0 || subscriber.closed) return;
    const events = subscriber.pending;
    subscriber.pending = [];
    subscriber.pendingBytes = 0;
    subscriber.sink.writeEvents(new EventBatch(events));
  }

  /** Writes each subscriber its events of the turn in one write; those that get the same events share their bytes. */
  private writeTurn(): void {
    const batches = new Map<string, EventBatch>();
    for (const subscriber of this.toWrite.splice(0)) {
      const events = subscriber.pending;
      subscriber.pending = [];
      subscriber.pendingBytes = 0;
      // Closed meanwhile, or written already (it was closing).
      if (subscriber.closed || events.length === 0) continue;
      // Events come in `seq` order, each once: the first, the last and the count name the list.
      const name = `${(events[0] as RecordedEvent).seq}:${(events[events.length - 1] as RecordedEvent).seq}:${events.length}`;
      let batch = batches.get(name);
      if (batch === undefined) {
        batch = new EventBatch(events);
        batches.set(name, batch);
      }
      const { sink } = subscriber;
      sink.writeEvents(batch, subscriber.waiting ? () => this.resume(subscriber) : undefined);
      this.peakBufferedBytes = Math.max(this.peakBufferedBytes, sink.bufferedBytes);
    }
  }

  private resume(subscriber: Subscriber): void {
    subscriber.waiting = false;
    this.pump(subscriber);
  }

  private overflow(subscriber: Subscriber): void {
    this.overflows += 1;
    const lastSeq = subscriber.cursor - 1;
    // `lastSeq` is the last event it was given: what waits for the end of the turn goes out first.
    this.writePending(subscriber);
    this.remove(subscriber);
    subscriber.sink.writeControl({
      type: "overflow",
      lastSeq,
      message: `Too slow: event ${lastSeq + 1} is no longer held for this stream; reconnect with ?since=${lastSeq}`,
    });
    void subscriber.sink.close("overflow");
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer = this.clock.setTimeout(() => {
      for (const subscriber of this.subscribers) subscriber.sink.heartbeat();
      this.scheduleHeartbeat();
    }, this.options.heartbeatMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer !== undefined) this.clock.clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }
}
