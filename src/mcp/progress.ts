/**
 * Progress notifications of one tool call whose client sent a `progressToken`: the text the prompt streams.
 * Each notification carries the new text as `message` and, as `progress`, the characters streamed so far
 * (it grows with every notification, as MCP requires; the total is unknown). The deltas go through the
 * bus's `DeltaStream`: gathered per turn of the event loop (a model that emits every word at once sends one
 * notification, not one per word) and held while the previous notification is still being written, so a
 * client that reads slowly makes them fewer and larger, never queued without bound.
 */
import type { ProgressToken, ServerNotification } from "@modelcontextprotocol/sdk/types.js";
import { DeltaStream } from "../bus/delta-stream.js";

/** Sends a notification that relates to the call (the SDK's `extra.sendNotification`). */
export type SendNotification = (notification: ServerNotification) => Promise<void>;

/** The progress of one call. */
export interface ProgressReporter {
  /** Takes a piece of streamed text. */
  push(delta: string): void;
  /** The call is over: what is held goes now, before the result; nothing goes after. */
  end(): void;
}

/** Reports a call's streamed text to `progressToken`. */
export function reportProgress(progressToken: ProgressToken, send: SendNotification): ProgressReporter {
  let streamedChars = 0;
  let sent = 0;
  const writing = new Set<string>();
  const stream = new DeltaStream({
    send: (delta) => {
      streamedChars += delta.length;
      sent += 1;
      const notificationId = String(sent);
      writing.add(notificationId);
      // A notification that cannot be written means the client is gone: the call's own end will tell.
      send({ method: "notifications/progress", params: { progressToken, progress: streamedChars, message: delta } })
        .catch(() => undefined)
        .finally(() => writing.delete(notificationId));
      return notificationId;
    },
    hasRoom: () => true,
    isWaiting: (notificationId) => writing.has(notificationId),
  });
  return {
    push: (delta) => {
      if (delta !== "") stream.push(delta);
    },
    end: () => stream.end(),
  };
}
