/**
 * Mentions: which agent a message names as `@<agentId>`.
 */

/** Characters that continue an id: a mention must end where the id does (`@backend2` does not name `backend`). */
const ID_CHARACTER = /[\p{L}\p{N}_-]/u;

/**
 * The first agent of `agentIds` that `text` mentions as `@<agentId>`, or undefined. A mention starts the text
 * or follows a character that cannot end a word or an address (`me@backend.io` mentions no one), and ends where
 * the id ends (punctuation may follow: `@backend, please`). Where ids overlap (`@ops` and `@ops-lead`), the
 * longest one that fits wins. Ids are matched exactly, case included.
 */
export function firstMention(text: string, agentIds: readonly string[]): string | undefined {
  for (let at = text.indexOf("@"); at >= 0; at = text.indexOf("@", at + 1)) {
    const before = at === 0 ? "" : text[at - 1]!;
    if (before !== "" && (ID_CHARACTER.test(before) || before === "@" || before === ".")) continue;
    let found: string | undefined;
    for (const agentId of agentIds) {
      if (agentId === "" || !text.startsWith(agentId, at + 1)) continue;
      const after = text[at + 1 + agentId.length];
      if (after !== undefined && ID_CHARACTER.test(after)) continue;
      if (found === undefined || agentId.length > found.length) found = agentId;
    }
    if (found !== undefined) return found;
  }
  return undefined;
}
