/**
 * Sizes and cuts of text as records keep it: the bytes `JSON.stringify` writes, and cuts at whole characters.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonBytes, jsonBytesEnd } from "../../machines/text.js";

/** What JSON.stringify writes for `text`, in UTF-8, without its quotes. */
const written = (text: string): number => Buffer.byteLength(JSON.stringify(text)) - 2;
/** Any UTF-16 text, lone surrogates and control characters included. */
const anyText = fc.string({
  unit: fc.oneof(fc.constantFrom("\ud83d", "\ude00", "😀", "\u0001", "\n", '"'), fc.string({ unit: "binary", maxLength: 1 })),
  maxLength: 64,
});

describe("jsonBytes", () => {
  it("counts the UTF-8 bytes JSON.stringify writes for every kind of character", () => {
    expect(["a", '"', "\n", "\u0001", "é", "€", "😀", "\ud800", "\udc00"].map(jsonBytes)).toEqual([1, 2, 2, 6, 2, 3, 4, 6, 6]);
    fc.assert(fc.property(anyText, (text) => jsonBytes(text) === written(text)));
  });
});

describe("jsonBytesEnd", () => {
  it("ends at a whole character where the next one would pass the budget", () => {
    expect(jsonBytesEnd("a😀b", 4)).toEqual({ end: 1, bytes: 1 });
    expect(jsonBytesEnd("a😀b", 5)).toEqual({ end: 3, bytes: 5 });
    fc.assert(
      fc.property(anyText, fc.nat(80), (text, budget) => {
        const { end, bytes } = jsonBytesEnd(text, budget);
        expect(bytes).toBe(written(text.slice(0, end)));
        expect(bytes).toBeLessThanOrEqual(budget);
        // No pair is cut in two, and the next character (both halves of a pair) would not fit.
        const pairAt = (index: number): boolean => /^[\ud800-\udbff][\udc00-\udfff]$/.test(text.slice(index, index + 2));
        expect(end > 0 && pairAt(end - 1)).toBe(false);
        if (end < text.length) expect(written(text.slice(0, end + (pairAt(end) ? 2 : 1)))).toBeGreaterThan(budget);
      }),
    );
  });
});
