/**
 * Cutting text where a reader will not find half a character: a character outside the BMP is two UTF-16 units,
 * and a cut between them leaves a lone surrogate, which no store or wire keeps as it was.
 */

/** `end`, or one before it when the text would end there on the first half of a surrogate pair. */
export function wholeCharEnd(text: string, end: number): number {
  if (end <= 0 || end >= text.length) return Math.max(0, Math.min(end, text.length));
  const code = text.charCodeAt(end - 1);
  return code >= 0xd800 && code <= 0xdbff ? end - 1 : end;
}

/**
 * The UTF-8 bytes `JSON.stringify` writes for the characters of `text` (its quotes left out): `\n` is 2, a
 * control character 6, `é` 2, `€` 3, an emoji 4, a lone surrogate 6.
 */
export function jsonBytes(text: string): number {
  return jsonBytesEnd(text, Number.POSITIVE_INFINITY).bytes;
}

/**
 * The end of the longest start of `text`, at a whole character, whose JSON takes at most `budget` bytes, and
 * the bytes it takes.
 */
export function jsonBytesEnd(text: string, budget: number): { end: number; bytes: number } {
  let bytes = 0;
  let index = 0;
  while (index < text.length) {
    const code = text.charCodeAt(index);
    const paired = code >= 0xd800 && code <= 0xdbff && isLowSurrogate(text.charCodeAt(index + 1));
    const size = paired ? 4 : unitJsonBytes(code);
    if (bytes + size > budget) break;
    bytes += size;
    index += paired ? 2 : 1;
  }
  return { end: index, bytes };
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

/** One UTF-16 unit that is not half of a pair, as JSON writes it in UTF-8. */
function unitJsonBytes(code: number): number {
  if (code < 0x20) return code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
  if (code === 0x22 || code === 0x5c) return 2;
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  if (code >= 0xd800 && code <= 0xdfff) return 6;
  return 3;
}
