/**
 * Text too long for one NATS message, cut into pieces that each fit one (what a node sends another: a forwarded
 * prompt's text and an A2A answer on their streams, ./node-streams.ts; a node request's answer, ./node.ts).
 */

import { wholeCharEnd } from "../../machines/text.js";

/** The most bytes one character of text takes once written as a JSON string (a control character as `\u001f`). */
const MAX_BYTES_PER_CHAR = 6;

/**
 * `text` in pieces, in order, each of which takes at most `maxBytes` bytes written as a JSON string (quotes
 * aside): its characters are counted at their worst, so a piece fits whatever it holds. A character outside the
 * BMP stays whole (its two UTF-16 units in one piece). None for an empty text.
 */
export function* textPieces(text: string, maxBytes: number): Generator<string> {
  const pieceChars = Math.max(2, Math.floor(maxBytes / MAX_BYTES_PER_CHAR));
  for (let start = 0; start < text.length;) {
    const end = wholeCharEnd(text, start + pieceChars);
    yield text.slice(start, end);
    start = end;
  }
}
