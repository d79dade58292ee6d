/**
 * The event stream's ring buffer: bounded by count and by bytes, found by seq.
 */
import { describe, expect, it } from "vitest";
import { EventRing, type RecordedEvent } from "../../src/events/event-ring.js";

function recorded(seq: number, bytes = 10): RecordedEvent {
  return { seq, frame: Buffer.alloc(bytes), jsonStart: 2, event: { seq, ts: 0, type: "agent.busy", actorId: "agent:a", agentId: "a", kind: "remote" } };
}

describe("EventRing", () => {
  it("keeps the last maxEvents events, found by seq", () => {
    const ring = new EventRing(3, 1_000);
    for (let seq = 1; seq <= 5; seq += 1) ring.push(recorded(seq));
    expect(ring.size).toBe(3);
    expect(ring.oldestSeq).toBe(3);
    expect([1, 2, 3, 4, 5, 6].map((seq) => ring.get(seq)?.seq)).toEqual([undefined, undefined, 3, 4, 5, undefined]);
  });

  it("drops the oldest past maxBytes, but always keeps the newest", () => {
    const ring = new EventRing(100, 25);
    ring.push(recorded(1, 10));
    ring.push(recorded(2, 10));
    ring.push(recorded(3, 10));
    expect([ring.oldestSeq, ring.size, ring.byteLength]).toEqual([2, 2, 20]);
    ring.push(recorded(4, 40));
    expect([ring.oldestSeq, ring.size, ring.byteLength]).toEqual([4, 1, 40]);
  });

  it("starts again when an event does not follow the newest", () => {
    const ring = new EventRing(10, 1_000);
    ring.push(recorded(1));
    ring.push(recorded(2));
    ring.push(recorded(7));
    expect([ring.oldestSeq, ring.size, ring.get(2)]).toEqual([7, 1, undefined]);
  });

  it("holds nothing with maxEvents 0", () => {
    const ring = new EventRing(0, 1_000);
    ring.push(recorded(1));
    expect([ring.size, ring.oldestSeq, ring.get(1)]).toEqual([0, undefined, undefined]);
  });
});
