/**
 * Long-term memory (SPEC §4): the `memory_*` tools, called as the tool loop calls them (parse the model's
 * arguments, execute with the call's `ToolContext`) from inside a conversation's prompt, kept per agent and
 * user in the store, found again in later conversations and after a restart on SQLite.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import {
  createMemoryStore,
  createRuntime,
  MemoryBook,
  memoryDelete,
  memoryList,
  memorySave,
  memorySearch,
  openSqliteStore,
  type Agent,
  type PromptContext,
  type Runtime,
  type RuntimeOptions,
} from "../../src/index.js";
import type { Tool } from "../../src/tools/tool.js";
import { CLOCK_START, settle, startTeam, toolContextOf } from "../conversations/support.js";

const MINUTE = 60_000;
const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function temporaryDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), "troupe-memory-"));
  directories.push(directory);
  return directory;
}

/** Calls a tool as the tool loop does: the model's arguments parsed, then executed with the call's context. */
async function callTool(tool: Tool, args: unknown, ctx: PromptContext, agentId: string): Promise<unknown> {
  return tool.execute(tool.parse(args), toolContextOf(ctx, agentId));
}

/**
 * An agent that plays a model calling the memory tools: `remember <fact> [#tag]`, `recall <words>`,
 * `list [#tag]`, `forget <id>`, after an optional leading `@<agentId>`. It answers with the tool's result as JSON, or the tool's error, as the loop
 * would hand it back to the model.
 */
function keeper(id = "keeper"): Agent {
  return {
    id,
    prompt: async (ctx) => {
      const [command = "", ...rest] = ctx.prompt.replace(/^@\S+ /, "").split(" ");
      const tags = rest.filter((word) => word.startsWith("#")).map((word) => word.slice(1));
      const words = rest.filter((word) => !word.startsWith("#")).join(" ");
      try {
        const result =
          command === "remember"
            ? await callTool(memorySave, { content: words, ...(tags.length > 0 ? { tags } : {}) }, ctx, id)
            : command === "recall"
              ? await callTool(memorySearch, { query: words }, ctx, id)
              : command === "list"
                ? await callTool(memoryList, tags.length > 0 ? { tag: tags[0] } : {}, ctx, id)
                : await callTool(memoryDelete, { id: words }, ctx, id);
        return { text: JSON.stringify(result) };
      } catch (error) {
        const { type, message } = error as { type: string; message: string };
        return { text: `error ${type}: ${message}` };
      }
    },
  };
}

interface MemoryAnswer {
  memories: Array<{ id: string; content: string; tags: string[]; createdAt: number; score?: number }>;
  total?: number;
}

/** The contents a recall or list answered. */
function contentsOf(text: string): string[] {
  return (JSON.parse(text) as MemoryAnswer).memories.map((memory) => memory.content);
}

async function say(runtime: Runtime, userId: string, text: string): Promise<string> {
  return (await runtime.converse({ userId, text })).text;
}

describe("memory tools in conversations", () => {
  it("save a fact in one conversation that a later conversation of the same user finds", async () => {
    const { runtime, clock } = await startTeam({ agents: [keeper()], defaultAgentId: "keeper" });
    const saved = JSON.parse(await say(runtime, "ada", "remember prefers tabs over spaces #style"));
    const first = await runtime.converse({ userId: "ada", text: "list" });

    clock.increment(30 * MINUTE);
    await settle();
    expect(runtime.conversation(first.sessionId)).toBeUndefined();
    const later = await runtime.converse({ userId: "ada", text: "recall tabs" });

    expect(saved).toEqual({
      saved: true,
      memory: { id: expect.stringMatching(/^m[0-9a-z]{18}$/), content: "prefers tabs over spaces", tags: ["style"], createdAt: CLOCK_START },
    });
    expect(later.sessionId).not.toBe(first.sessionId);
    expect(JSON.parse(later.text)).toEqual({ memories: [{ ...saved.memory, score: 1 }] });
  });

  it("keep each agent's memory of each user apart", async () => {
    const { runtime } = await startTeam({ agents: [keeper(), keeper("other")], defaultAgentId: "keeper" });
    await say(runtime, "ada", "remember ada likes tea");
    await say(runtime, "grace", "remember grace likes coffee");

    expect(contentsOf(await say(runtime, "ada", "recall likes"))).toEqual(["ada likes tea"]);
    expect(contentsOf(await say(runtime, "grace", "recall likes"))).toEqual(["grace likes coffee"]);
    expect(contentsOf(await say(runtime, "ada", "@other recall likes"))).toEqual([]);
    expect((await runtime.memory.list({ agentId: "keeper", userId: "ada" })).total).toBe(1);
  });

  it("keep users whose ids hold the separator apart", async () => {
    const { runtime } = await startTeam({ agents: [keeper()], defaultAgentId: "keeper" });
    await say(runtime, "a:b", "remember first");
    await say(runtime, "a", "remember second");

    expect(contentsOf(await say(runtime, "a", "list"))).toEqual(["second"]);
    expect(contentsOf(await say(runtime, "a:b", "list"))).toEqual(["first"]);
  });

  it("list newest first, filter by tag, rank a search by the words a memory holds, and delete", async () => {
    const { runtime, clock } = await startTeam({ agents: [keeper()], defaultAgentId: "keeper" });
    await say(runtime, "ada", "remember the billing service runs on postgres #billing");
    clock.increment(1_000);
    await say(runtime, "ada", "remember deploys go out on tuesdays");
    clock.increment(1_000);
    const { memory } = JSON.parse(await say(runtime, "ada", "remember billing deploys need a review #billing"));

    expect(contentsOf(await say(runtime, "ada", "list"))).toEqual([
      "billing deploys need a review",
      "deploys go out on tuesdays",
      "the billing service runs on postgres",
    ]);
    expect(contentsOf(await say(runtime, "ada", "list #billing"))).toEqual(["billing deploys need a review", "the billing service runs on postgres"]);
    const ranked = JSON.parse(await say(runtime, "ada", "recall billing DEPLOYS")) as MemoryAnswer;
    expect(ranked.memories.map((each) => [each.content, each.score])).toEqual([
      ["billing deploys need a review", 2],
      ["deploys go out on tuesdays", 1],
      ["the billing service runs on postgres", 1],
    ]);

    expect(JSON.parse(await say(runtime, "ada", `forget ${memory.id}`))).toEqual({ deleted: true, id: memory.id });
    expect(contentsOf(await say(runtime, "ada", "list #billing"))).toEqual(["the billing service runs on postgres"]);
    expect(await say(runtime, "ada", `forget ${memory.id}`)).toBe(`error NOT_FOUND: Memory not found: ${memory.id}`);
  });

  it("answer the model CONFIG naming the field for bad arguments", async () => {
    const { runtime } = await startTeam({ agents: [keeper()], defaultAgentId: "keeper" });

    expect(await say(runtime, "ada", "forget ../../etc")).toMatch(/^error CONFIG: id: /);
    expect(await say(runtime, "ada", `remember ${"x".repeat(4001)}`)).toMatch(/^error CONFIG: content: /);
    expect(() => memorySearch.parse({ query: "x", limit: 500 })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "limit" }) }),
    );
    expect(() => memoryList.parse({ extra: true })).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "extra" }) }));
  });

  it("answer CONFIG in a session that names no user, and outside a prompt", async () => {
    const { runtime } = await startTeam({ agents: [keeper()], defaultAgentId: "keeper" });

    const withoutUser = await runtime.bridge.tasksDelegate({ prompt: "remember nothing" });
    const withUser = await runtime.bridge.tasksDelegate({ prompt: "remember something", metadata: { userId: "ada" } });

    expect(withoutUser.text).toMatch(/^error CONFIG: memory_save: the session has no metadata.userId/);
    expect(JSON.parse(withUser.text)).toMatchObject({ saved: true });
    const session = { sessionId: "s", agentId: "keeper", metadata: { userId: "ada" } };
    const outside = {
      session,
      agentId: "keeper",
      requestId: "r",
      callId: "c",
      signal: new AbortController().signal,
      ask: () => Promise.reject(new Error("no")),
    };
    await expect(async () => memoryList.execute({}, outside)).rejects.toMatchObject({ type: "CONFIG", message: expect.stringContaining("inside a prompt") });
  });

  it("are plain tools: a name, a description and a JSON Schema a provider can send", () => {
    expect([memorySave, memorySearch, memoryList, memoryDelete].map((tool) => tool.name)).toEqual([
      "memory_save",
      "memory_search",
      "memory_list",
      "memory_delete",
    ]);
    expect(memorySave.inputSchema).toMatchObject({
      type: "object",
      properties: { content: { type: "string" }, tags: { type: "array" } },
      required: ["content"],
      additionalProperties: false,
    });
  });
});

describe("memory in the store", () => {
  it("survives a restart on SQLite, and the conversation sessions the restart brought back are closed", async () => {
    const dir = temporaryDirectory();
    const options = (clock: SimulatedClock): RuntimeOptions => ({ agents: [keeper()], defaultAgentId: "keeper", clock, store: () => openSqliteStore({ dir }) });
    const clock = new SimulatedClock();
    clock.set(CLOCK_START);

    const before = createRuntime(options(clock));
    await before.start();
    await say(before, "ada", "remember the staging password is in the vault #ops");
    const { sessionId } = await before.converse({ userId: "ada", text: "list" });
    await before.stop();

    const after = createRuntime(options(clock));
    await after.start();
    try {
      expect(after.restoredSessions().map((session) => session.sessionId)).toEqual([sessionId]);
      expect(after.hasSession(sessionId)).toBe(false);
      const found = await after.converse({ userId: "ada", text: "recall vault" });
      expect(found.sessionId).not.toBe(sessionId);
      expect(contentsOf(found.text)).toEqual(["the staging password is in the vault"]);
    } finally {
      await after.stop();
    }
  });

  it("is encrypted at rest in an encrypted store", async () => {
    const dir = temporaryDirectory();
    const runtime = createRuntime({
      agents: [keeper()],
      defaultAgentId: "keeper",
      store: () => openSqliteStore({ dir, encryptionKey: "a passphrase of sixteen characters" }),
    });
    await runtime.start();
    try {
      await say(runtime, "ada", "remember the launch codes are 0000");
      expect(await runtime.memory.search({ agentId: "keeper", userId: "ada" }, "launch")).toHaveLength(1);
    } finally {
      await runtime.stop();
    }

    const bytes = readdirSync(dir)
      .map((file) => readFileSync(join(dir, file)).toString("latin1"))
      .join("");
    expect(bytes).not.toContain("launch codes");
  });

  it("bounds each scope: CAPACITY past maxMemoriesPerScope, CONFIG past maxContentChars", async () => {
    const store = createMemoryStore();
    const memory = new MemoryBook(() => store, { now: () => CLOCK_START }, { maxMemoriesPerScope: 2, maxContentChars: 10 });
    const ada = { agentId: "keeper", userId: "ada" };
    await memory.save(ada, "one");
    await memory.save(ada, "two");

    await expect(memory.save(ada, "three")).rejects.toMatchObject({ type: "CAPACITY", details: { limit: 2 } });
    await expect(memory.save({ ...ada, userId: "grace" }, "far too long")).rejects.toMatchObject({ type: "CONFIG", details: { field: "content" } });
    expect((await memory.save({ ...ada, userId: "grace" }, "three")).content).toBe("three");
    await store.close();
  });
});
