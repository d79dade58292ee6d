/**
 * The event stream's wire (SPEC §5): where it is served, its query, and the frames that are not events.
 *
 * Every event is one frame, the event itself as JSON: `{ seq, ts, type, actorId, ... }`. Two frames are not
 * events and carry no `seq`: `missed` (first, when a replay cannot start where it was asked to) and `overflow`
 * (last, before a consumer too slow to keep up is closed). See docs/events.md.
 */

/** `ws://host:port/events` and `GET /events` (server-sent events). */
export const EVENTS_PATH = "/events";

/** The query parameters of the stream; any other is CONFIG (400). */
export const EVENT_QUERY_PARAMS = ["types", "session", "agent", "workflow", "since"] as const;

/** The header an `EventSource` sends when it reconnects: the `id` (seq) of the last event it received. */
export const LAST_EVENT_ID_HEADER = "last-event-id";

/** First frame of a replay that cannot start right after `since`: events between were dropped or never kept. */
export interface MissedFrame {
  type: "missed";
  /** The `since` that was asked for. */
  since: number;
  /** The oldest event the stream still has: the replay starts there. */
  oldestSeq: number;
  message: string;
}

/** Last frame to a consumer that fell behind what the bus keeps for it; the stream closes after it. */
export interface OverflowFrame {
  type: "overflow";
  /** The last event written to this consumer: reconnect with `?since=<lastSeq>`. */
  lastSeq: number;
  message: string;
}

/** A frame of the stream that is not an event. */
export type EventStreamControlFrame = MissedFrame | OverflowFrame;
