/**
 * Random ids for what the runtime keeps: sessions, prompts, commands.
 */
import { randomUUID } from "node:crypto";

/**
 * A random UUID as one flat string. Node 20's `randomUUID()` joins its text from pieces, and V8 keeps the
 * joined string as a tree of about 30 cons strings (486 bytes against 62 flat, measured here) until something
 * flattens it: a session id lives as long as its session, and 100,000 of them would hold 40 MB of trees.
 * Reading one character flattens it.
 */
export function randomId(): string {
  const id = randomUUID();
  id.charCodeAt(0);
  return id;
}
