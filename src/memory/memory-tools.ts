/**
 * The built-in long-term memory tools (SPEC §4): `memory_save`, `memory_search`, `memory_list`,
 * `memory_delete`. Each works on the memory of the agent whose model calls it (`ToolContext.agentId`) about
 * the user of the session (`metadata.userId`, which `runtime.converse` sets), in the store of the runtime that
 * runs the prompt. Give them to an agent like any tool: `createMultiProviderAgent({ ..., tools: memoryTools })`.
 */
import { z } from "zod";
import { BridgeError } from "../errors.js";
import { promptServices } from "../runtime/prompt-scope.js";
import { defineTool } from "../tools/define-tool.js";
import type { Tool, ToolContext } from "../tools/tool.js";
import { DEFAULT_MEMORY_LIMITS, type MemoryBook, type MemoryScope } from "./memory-book.js";

const tag = z.string().min(1).max(64);
const memoryId = z.string().regex(/^m[0-9a-z]{18}$/, "a memory id as memory_save, memory_list or memory_search answered it");

/** The memory and scope of a tool call: the session must name its user. */
function scopeOf(tool: string, ctx: ToolContext): { memory: MemoryBook; scope: MemoryScope } {
  const { userId } = ctx.session.metadata;
  if (typeof userId !== "string" || userId === "") {
    throw new BridgeError(
      "CONFIG",
      `${tool}: the session has no metadata.userId: memory is kept per user, in conversations (runtime.converse) or sessions created with metadata.userId`,
      {
        tool,
        field: "metadata.userId",
      },
    );
  }
  return { memory: promptServices(ctx.session, tool).memory, scope: { agentId: ctx.agentId, userId } };
}

/** `memory_save`: keeps a fact about the user for later conversations. */
export const memorySave = defineTool({
  name: "memory_save",
  description:
    "Save a fact about the user to long-term memory (kept across conversations and restarts): preferences, decisions, names, anything worth recalling later.",
  parameters: z.strictObject({
    content: z.string().min(1).max(DEFAULT_MEMORY_LIMITS.maxContentChars).describe("The fact, in one or a few sentences"),
    tags: z.array(tag).max(16).optional().describe("Words to find it by, e.g. project names"),
  }),
  execute: async ({ content, tags }, ctx) => {
    const { memory, scope } = scopeOf("memory_save", ctx);
    return { saved: true, memory: await memory.save(scope, content, tags ?? []) };
  },
});

/** `memory_search`: finds memories by words. */
export const memorySearch = defineTool({
  name: "memory_search",
  description: "Search long-term memory about the user by words; the memories holding most of them come first.",
  parameters: z.strictObject({
    query: z.string().min(1).max(1000).describe("Words to look for"),
    limit: z.number().int().min(1).max(50).optional().describe("At most this many memories (default 10)"),
  }),
  execute: async ({ query, limit }, ctx) => {
    const { memory, scope } = scopeOf("memory_search", ctx);
    return { memories: await memory.search(scope, query, { limit: limit ?? 10 }) };
  },
});

/** `memory_list`: the newest memories, optionally by tag. */
export const memoryList = defineTool({
  name: "memory_list",
  description: "List long-term memories about the user, newest first, optionally only those with a tag.",
  parameters: z.strictObject({
    tag: tag.optional().describe("Only memories with this tag"),
    limit: z.number().int().min(1).max(100).optional().describe("At most this many memories (default 20)"),
  }),
  execute: async ({ tag: onlyTag, limit }, ctx) => {
    const { memory, scope } = scopeOf("memory_list", ctx);
    return memory.list(scope, { limit: limit ?? 20, ...(onlyTag === undefined ? {} : { tag: onlyTag }) });
  },
});

/** `memory_delete`: forgets one memory. */
export const memoryDelete = defineTool({
  name: "memory_delete",
  description: "Delete one long-term memory about the user by its id (when it is wrong or the user asks to forget it).",
  parameters: z.strictObject({ id: memoryId.describe("The memory's id") }),
  execute: async ({ id }, ctx) => {
    const { memory, scope } = scopeOf("memory_delete", ctx);
    await memory.delete(scope, id);
    return { deleted: true, id };
  },
});

/** The four memory tools, as an agent's `tools` take them. */
export const memoryTools: readonly Tool[] = [memorySave, memorySearch, memoryList, memoryDelete];
