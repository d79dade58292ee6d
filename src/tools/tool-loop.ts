/**
 * The tool loop (SPEC §4): call the model with the tools, run the calls it asks for, send their results back,
 * and call it again, until it answers without calls or `maxToolRounds` is used up. One loop for every
 * provider: each provider only maps tools, calls and results onto its API's own format.
 */
import type { Usage } from "../../machines/session.machine.js";
import type { AgentReply, PromptContext } from "../agents/agent.js";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError } from "../errors.js";
import type { ProviderReply } from "../providers/provider.js";
import type { ToolDeclaration, ToolRequest, ToolRound } from "./tool-call.js";
import { runToolCalls } from "./tool-execution.js";
import type { ToolRegistry } from "./tool-registry.js";

/** Rounds of tool calls in one prompt when an agent sets no `maxToolRounds`. */
export const DEFAULT_MAX_TOOL_ROUNDS = 8;

/** Put between the texts of two rounds, in the streamed deltas and in the answer alike. */
const ROUND_SEPARATOR = "\n\n";

/** What the loop runs. */
export interface ToolLoopOptions {
  /** One call of the model: a provider's `complete`. */
  complete(ctx: PromptContext, tools?: ToolRequest): Promise<ProviderReply>;
  /** The tools the model may call; none: one call, no loop. */
  tools: ToolRegistry;
  /** Most rounds of tool calls before the model must answer in text. Default `DEFAULT_MAX_TOOL_ROUNDS`. */
  maxToolRounds?: number;
  /** Times the calls for `tool.completed`. Default: the system clock. */
  clock?: Clock;
}

/** Usage of several calls, summed; `undefined` only when no call reported any. */
function addUsage(total: Usage | undefined, more: Usage | undefined): Usage | undefined {
  if (more === undefined) return total;
  if (total === undefined) return { ...more };
  return { inputTokens: total.inputTokens + more.inputTokens, outputTokens: total.outputTokens + more.outputTokens };
}

/**
 * The answer across rounds: each round's text, joined by a blank line. Its deltas stream as they come, the
 * separator included, so the deltas of a prompt still add up to its text.
 */
class Transcript {
  private readonly texts: string[] = [];

  constructor(private readonly emit: (delta: string) => void) {}

  /** The text so far. */
  get text(): string {
    return this.texts.join(ROUND_SEPARATOR);
  }

  /** The `emit` of the next round: it opens with the separator when both this round and an earlier one speak. */
  roundEmitter(): (delta: string) => void {
    let spoken = false;
    return (delta) => {
      if (delta === "") return;
      if (!spoken && this.texts.length > 0) this.emit(ROUND_SEPARATOR);
      spoken = true;
      this.emit(delta);
    };
  }

  /** Records a round's whole text. */
  add(text: string): void {
    if (text !== "") this.texts.push(text);
  }
}

/** Checks `maxToolRounds`: a positive integer (to give a model no tools, give it none). */
export function checkMaxToolRounds(maxToolRounds: number | undefined, field = "maxToolRounds"): number {
  if (maxToolRounds === undefined) return DEFAULT_MAX_TOOL_ROUNDS;
  if (!Number.isInteger(maxToolRounds) || maxToolRounds < 1) {
    throw new BridgeError("CONFIG", `${field}: must be a positive integer, got ${String(maxToolRounds)}`, { field });
  }
  return maxToolRounds;
}

/**
 * Answers one prompt with tools. Each round the model is called with the tools and the rounds so far; the
 * calls it asks for run concurrently (`runToolCalls`), and their results go back to it. After
 * `maxToolRounds` rounds, one last call tells the model it may call no tool (`choice: "none"`), so it answers
 * in text with what it has; a `prompt.warning` says so. If it asks for tools all the same (a server that
 * ignores the choice), they are not run: the answer is its text with `stopReason: "tool_use"`.
 *
 * The answer's text is every round's text, joined by a blank line; its usage is the sum of every call's; its
 * stop reason is the last call's. Cancelling the prompt aborts a running tool and rejects with CANCELLED.
 */
export async function runToolLoop(ctx: PromptContext, options: ToolLoopOptions): Promise<AgentReply> {
  const maxToolRounds = checkMaxToolRounds(options.maxToolRounds);
  const clock = options.clock ?? systemClock;
  const declarations: ToolDeclaration[] = options.tools.list().map(({ name, description, inputSchema }) => ({ name, description, inputSchema }));
  const transcript = new Transcript(ctx.emit);
  const rounds: ToolRound[] = [];
  let usage: Usage | undefined;
  for (;;) {
    const mayCallTools = rounds.length < maxToolRounds;
    if (!mayCallTools) ctx.warn(`maxToolRounds ${maxToolRounds} reached: the model is asked to answer without tools`);
    const request: ToolRequest | undefined =
      declarations.length === 0 ? undefined : { tools: declarations, choice: mayCallTools ? "auto" : "none", rounds: [...rounds] };
    const reply = await options.complete({ ...ctx, emit: transcript.roundEmitter() }, request);
    usage = addUsage(usage, reply.usage);
    transcript.add(reply.text);
    const calls = reply.toolCalls ?? [];
    // Without tools no results can be sent back: the calls of a model given none are its answer, as before.
    if (calls.length === 0 || request === undefined || !mayCallTools) {
      if (calls.length > 0 && request !== undefined)
        ctx.warn(`the model asked for ${calls.map((call) => call.name).join(", ")} after maxToolRounds ${maxToolRounds}: not run`);
      return { text: transcript.text, stopReason: reply.stopReason ?? "end_turn", ...(usage === undefined ? {} : { usage }) };
    }
    const results = await runToolCalls(calls, { ctx, tools: options.tools, round: rounds.length + 1, clock });
    rounds.push({ text: reply.text, calls, ...(reply.modelTurn === undefined ? {} : { modelTurn: reply.modelTurn }), results });
  }
}
