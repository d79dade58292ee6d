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
