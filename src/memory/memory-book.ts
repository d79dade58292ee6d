/**
 * Long-term memory (SPEC §4): what an agent keeps about a user beyond one conversation, in the store's
 * `memory` collection, so it survives the session and a restart (and is encrypted at rest like every value of
 * an encrypted store).
 *
 * Memories are scoped per agent and user: a record's id is `<agent>:<user>:<memory id>`, each part
 * URI-encoded so that no id (`opencode://backend`) can reach into another scope, and one scope is listed by
 * that prefix. Memory ids start with their creation time, so a scope lists oldest first.
 */
import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { Store } from "../store/store.js";

/** Whose memory: an agent's, about one user. */
export interface MemoryScope {
  agentId: string;
  userId: string;
}

/** One memory, as the tools answer it. */
export interface Memory {
  id: string;
  content: string;
  tags: string[];
  /** Epoch milliseconds. */
  createdAt: number;
}

/** A memory with how well it matched a search: the number of the query's words it holds. */
export interface MemoryMatch extends Memory {
  score: number;
}

/** The bounds of one scope. */
export interface MemoryLimits {
  /** Memories one agent keeps about one user; past it `save` is CAPACITY until one is deleted. Default 1000. */
  maxMemoriesPerScope: number;
  /** Largest memory content, in characters. Default 4000. */
  maxContentChars: number;
}

/** The defaults of `MemoryLimits`. */
export const DEFAULT_MEMORY_LIMITS: MemoryLimits = { maxMemoriesPerScope: 1000, maxContentChars: 4000 };

/** What the store holds per memory. */
interface StoredMemory extends Memory {
  agentId: string;
  userId: string;
}

/** The prefix of every record of one scope. */
function scopePrefix(scope: MemoryScope): string {
  return `${encodeURIComponent(scope.agentId)}:${encodeURIComponent(scope.userId)}:`;
}

/** Words of a text for matching: lower-case letters and digits. */
function wordsOf(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

function publicView({ id, content, tags, createdAt }: StoredMemory): Memory {
  return { id, content, tags, createdAt };
}

/** The long-term memory of a runtime's agents, over its store. */
export class MemoryBook {
  constructor(
    /** The store, read at each call: the runtime opens it only at `start()`. */
    private readonly store: () => Store,
    private readonly clock: Pick<Clock, "now">,
    readonly limits: MemoryLimits = DEFAULT_MEMORY_LIMITS,
  ) {}

  /** Keeps a memory; resolves once it is durable. CONFIG for content over `maxContentChars`, CAPACITY for a full scope. */
  async save(scope: MemoryScope, content: string, tags: string[] = []): Promise<Memory> {
    if (content.length > this.limits.maxContentChars) {
      throw new BridgeError("CONFIG", `content: ${content.length} characters exceeds the ${this.limits.maxContentChars} a memory may hold`, {
        field: "content",
        limit: this.limits.maxContentChars,
      });
    }
    const store = this.store();
    const prefix = scopePrefix(scope);
    const held = await store.list("memory", { prefix });
    if (held.length >= this.limits.maxMemoriesPerScope) {
      throw new BridgeError(
        "CAPACITY",
        `Memory is full: agent ${scope.agentId} keeps ${this.limits.maxMemoriesPerScope} memories about this user; delete one first`,
        {
          retryable: false,
          limit: this.limits.maxMemoriesPerScope,
        },
      );
    }
    const createdAt = this.clock.now();
    // Time first (fixed width), so that a scope lists in the order its memories were made.
    const id = `m${createdAt.toString(36).padStart(10, "0")}${randomBytes(4).toString("hex")}`;
    const memory: StoredMemory = { id, content, tags: [...new Set(tags)], createdAt, agentId: scope.agentId, userId: scope.userId };
    store.put("memory", prefix + id, memory);
    await store.flush();
    return publicView(memory);
  }

  /** The scope's memories, newest first; only those tagged `tag` when given. */
  async list(scope: MemoryScope, options: { tag?: string; limit?: number } = {}): Promise<{ memories: Memory[]; total: number }> {
    const all = (await this.read(scope)).filter((memory) => options.tag === undefined || memory.tags.includes(options.tag));
    const newestFirst = all.reverse();
    return { memories: newestFirst.slice(0, options.limit ?? newestFirst.length).map(publicView), total: all.length };
  }

  /**
   * The scope's memories that hold words of `query` (in their content or tags, case-insensitively), the ones
   * holding most first, then the newest. A query without words matches as a plain substring.
   */
  async search(scope: MemoryScope, query: string, options: { limit?: number } = {}): Promise<MemoryMatch[]> {
    const terms = [...new Set(wordsOf(query))];
    const needle = query.toLowerCase();
    const matches: MemoryMatch[] = [];
    for (const memory of await this.read(scope)) {
      const haystack = `${memory.content}\n${memory.tags.join("\n")}`.toLowerCase();
      const score = terms.length === 0 ? Number(haystack.includes(needle)) : terms.filter((term) => haystack.includes(term)).length;
      if (score > 0) matches.push({ ...publicView(memory), score });
    }
    matches.sort((left, right) => right.score - left.score || right.createdAt - left.createdAt || (right.id < left.id ? -1 : 1));
    return matches.slice(0, options.limit ?? matches.length);
  }

  /** Forgets one memory; resolves once that is durable. NOT_FOUND when the scope holds no memory `id`. */
  async delete(scope: MemoryScope, id: string): Promise<void> {
    const store = this.store();
    const key = scopePrefix(scope) + id;
    if ((await store.get("memory", key)) === undefined) {
      throw new BridgeError("NOT_FOUND", `Memory not found: ${id}`, { id });
    }
    store.delete("memory", key);
    await store.flush();
  }

  /** Every memory of a scope, oldest first. */
  private async read(scope: MemoryScope): Promise<StoredMemory[]> {
    const records = await this.store().list("memory", { prefix: scopePrefix(scope) });
    return records.map((record) => record.value as StoredMemory);
  }
}
