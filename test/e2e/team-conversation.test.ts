/**
 * The bundled team of agents/ in a scripted multi-turn conversation (issue 12): the orchestrator calls a tool
 * it got from the inlined frontend, delegates to the delegated backend and to an ACP worker and uses their
 * answers, saves a memory that a conversation finds after a restart on SQLite; per_thread vs shared
 * isolation, the mention trigger with thread follow-ups, and the idle timeout on simulated time. The models
 * are the mock provider's scripted tool calls, through the real tool loop, bus and delivery.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import {
  buildTeam,
  conversationTools,
  createRuntime,
  loadAgentTeam,
  mock,
  openSqliteStore,
  utilityTools,
  type CommunicationBus,
  type MockStep,
  type PromptContext,
  type Runtime,
} from "../../src/index.js";
import type { ToolRequest } from "../../src/tools/tool-call.js";
import { startSuiteBus } from "../bus/support.js";
import { projectRoot } from "../cli/support.js";
import { fixtureWorker } from "../support/workers.js";

const running: Array<{ runtime: Runtime; bus: CommunicationBus }> = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const { runtime, bus } of running.splice(0)) {
    await bus.stop();
    await runtime.stop();
  }
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** The last round's first result, as the model reads it. */
function lastResult(tools: ToolRequest | undefined): string {
  return tools?.rounds.at(-1)?.results[0]?.content ?? "";
}

/** The team's models: what each agent says or calls for each prompt, reading the results of its calls. */
function script(ctx: PromptContext, tools?: ToolRequest): MockStep {
  const { agentId } = ctx.session;
  const round = tools?.rounds.length ?? 0;
  if (agentId === "backend") return { text: `backend: GET /todos and POST /todos for "${ctx.prompt}"` };
  if (agentId !== "orchestrator") return { text: `${agentId} heard "${ctx.prompt}"` };
  const count = /How many words are in: (.+)\?$/.exec(ctx.prompt);
  if (count) return round === 0 ? { toolCalls: [{ name: "word_count", args: { text: count[1] } }] } : { text: `word_count says ${lastResult(tools)}` };
  const ask = /^Ask (\w+) to (.+)$/.exec(ctx.prompt);
  if (ask) {
    return round === 0
      ? { toolCalls: [{ name: "delegate_to_agent", args: { agent: ask[1], task: ask[2] } }] }
      : { text: `${ask[1]} answered: ${lastResult(tools)}` };
  }
  if (ctx.prompt.startsWith("Remember that ")) {
    return round === 0
      ? { toolCalls: [{ name: "memory_save", args: { content: ctx.prompt.slice("Remember that ".length) } }] }
      : { text: `Saved: ${lastResult(tools)}` };
  }
  if (ctx.prompt.startsWith("What do I prefer")) {
    return round === 0 ? { toolCalls: [{ name: "memory_search", args: { query: "prefer" } }] } : { text: `From memory: ${lastResult(tools)}` };
  }
  return { text: `orchestrator heard "${ctx.prompt}" after ${ctx.history.length} messages` };
}

async function startTeam(dir: string, clock: SimulatedClock): Promise<Runtime> {
  const tools = [...utilityTools(clock), ...conversationTools];
  const providers = [mock({ script })];
  const team = loadAgentTeam(join(projectRoot, "agents"), { toolNames: tools.map((tool) => tool.name), providerIds: ["mock"] });
  const built = buildTeam(team, { providers, tools, delegateTargets: [{ id: "coder", description: "An ACP coding agent" }] });
  const runtime = createRuntime({
    agents: built.agents,
    defaultAgentId: built.defaultAgentId,
    workers: [fixtureWorker("coder")],
    clock,
    store: () => openSqliteStore({ dir }),
  });
  await runtime.start();
  const bus = await startSuiteBus({ runtime, clock });
  running.push({ runtime, bus });
  return runtime;
}

describe("the bundled team in a conversation", () => {
  it("calls an inlined tool, delegates to backend and to a worker, remembers across a restart, and routes by thread, mention and idle time", async () => {
    const dir = mkdtempSync(join(tmpdir(), "troupe-team-"));
    dirs.push(dir);
    const clock = new SimulatedClock();
    clock.set(1_700_000_000_000);
    let runtime = await startTeam(dir, clock);
    const say = (threadId: string, text: string) => runtime.converse({ userId: "ada", threadId, text });

    // An inline tool call: word_count came with the inlined frontend.
    const counted = await say("t1", "How many words are in: ship the todo app today?");
    expect(counted).toMatchObject({ agentId: "orchestrator", handoffs: [] });
    expect(counted.text).toContain("word_count says");
    expect(JSON.parse(counted.text.slice("word_count says ".length))).toMatchObject({ words: 5 });

    // A delegation to the delegated backend and back, through delegate_to_agent and the bus.
    const designed = await say("t1", "Ask backend to design the todo API");
    expect(designed.text).toBe('backend answered: backend: GET /todos and POST /todos for "design the todo API"');
    expect(designed.handoffs).toEqual(["backend"]);
    expect(designed.sessionId).toBe(counted.sessionId);

    // A delegation to an ACP worker.
    const coded = await say("t1", "Ask coder to implement the todo API");
    expect(coded.text).toBe("coder answered: Echo: implement the todo API");
    expect(coded.handoffs).toEqual(["coder"]);

    // Memory saved in this conversation.
    expect((await say("t1", "Remember that I prefer tabs over spaces")).text).toMatch(/^Saved: \{"saved":true,.*"content":"I prefer tabs over spaces"/);

    // per_thread (the orchestrator's isolation): another thread is another session, with its own history.
    const elsewhere = await say("t2", "hello");
    expect(elsewhere.agentId).toBe("orchestrator");
    expect(elsewhere.sessionId).not.toBe(counted.sessionId);
    expect(elsewhere.text).toBe('orchestrator heard "hello" after 0 messages');

    // The mention trigger (backend's): only @backend starts it; a follow-up in its thread continues it; shared
    // isolation picks up the same session in another thread.
    const mentioned = await say("t3", "@backend which database?");
    expect(mentioned.agentId).toBe("backend");
    const followUp = await say("t3", "and which indexes?");
    expect(followUp).toMatchObject({ agentId: "backend", sessionId: mentioned.sessionId });
    const sharedElsewhere = await say("t4", "@backend and the cache?");
    expect(sharedElsewhere.sessionId).toBe(mentioned.sessionId);
    expect((await say("t5", "backend, are you there?")).agentId).toBe("orchestrator");

    // Idle timeout (30 minutes for the orchestrator): the conversation ends; the thread's next message starts a new session.
    clock.increment(31 * 60_000);
    await new Promise((resolve) => setImmediate(resolve));
    const after = await say("t1", "still here?");
    expect(after.agentId).toBe("orchestrator");
    expect(after.sessionId).not.toBe(counted.sessionId);
    expect(after.text).toBe('orchestrator heard "still here?" after 0 messages');

    // A restart on the same SQLite folder: memory is still there for ada and the orchestrator.
    const { runtime: old, bus } = running.pop()!;
    await bus.stop();
    await old.stop();
    runtime = await startTeam(dir, clock);
    const recalled = await say("t9", "What do I prefer?");
    expect(recalled.text).toContain("From memory:");
    expect(recalled.text).toContain("I prefer tabs over spaces");
  }, 60_000);
});
