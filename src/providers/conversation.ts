/**
 * The conversation a provider sends: the session's rolling history, then the new prompt.
 */
import type { HistoryMessage } from "../../machines/session.machine.js";

/**
 * The turns to send, oldest first. Empty turns are dropped (Anthropic refuses empty text), and so are
 * assistant turns before the first user turn: a window cut mid-exchange would otherwise open with an
 * answer whose question fell out of it, which Anthropic and Gemini refuse.
 */
export function conversationOf(history: readonly HistoryMessage[], prompt: string): HistoryMessage[] {
  const turns = history.filter((message) => message.content !== "");
  const firstUser = turns.findIndex((message) => message.role === "user");
  return [...(firstUser === -1 ? [] : turns.slice(firstUser)), { role: "user", content: prompt }];
}
