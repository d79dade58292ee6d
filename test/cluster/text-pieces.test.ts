/** Text cut into pieces that each fit a NATS message (src/cluster/text-pieces.ts). */
import { describe, expect, it } from "vitest";
import { textPieces } from "../../src/cluster/text-pieces.js";

describe("text pieces", () => {
  it("cut a text into pieces that each fit once written as JSON, in order, and join back into it", () => {
    // Every UTF-8 length, a quote, a backslash and a control character (6 bytes as a JSON string).
    const text = `a"\\é\u0001€\u{1F600}`.repeat(5_000);
    const pieces = [...textPieces(text, 1_000)];
    expect(pieces.length).toBeGreaterThan(1);
    expect(pieces.join("")).toBe(text);
    for (const piece of pieces) {
      expect(Buffer.byteLength(JSON.stringify(piece)) - 2).toBeLessThanOrEqual(1_000);
      // A character outside the BMP is never cut in two.
      expect(piece).toBe(Buffer.from(piece, "utf8").toString("utf8"));
    }
  });

  it("give one piece for a text that fits and none for an empty one", () => {
    expect([...textPieces("short", 1_000)]).toEqual(["short"]);
    expect([...textPieces("", 1_000)]).toEqual([]);
  });
});
