/**
 * One round of tool calls: each call's arguments parsed and checked, the tools run at once, and every outcome
 * — a value, a throw, an unknown tool, bad arguments — turned into a result the model reads. Only cancelling
 * the prompt ends a round without results.
 */
import type { PromptContext } from "../agents/agent.js";
import type { Clock } from "../clock.js";
import { messageOf, promptCancelled } from "../errors.js";
import { parseArguments, type ToolCall, type ToolFailure, type ToolFailureKind, type ToolResult } from "./tool-call.js";
import type { ToolRegistry } from "./tool-registry.js";
import type { ToolContext } from "./tool.js";

/** What a round's calls need besides the calls. */
export interface ToolRoundContext {
  /** The prompt: its session, request, signal, `ask`, and `reportTool` for the events. */
  ctx: PromptContext;
  tools: ToolRegistry;
  /** The round, from 1, as the events report it. */
  round: number;
  /** Times each call for `tool.completed`. */
  clock: Clock;
}

/** What a tool returned, as the model reads it: a string as it is, anything else as JSON (`undefined` as `null`). */
function resultContent(value: unknown): string {
  if (typeof value === "string") return value;
  return JSON.stringify(value ?? null) ?? "null";
}

/**
 * Settles with `work`, or rejects with CANCELLED as soon as `signal` aborts: a tool that ignores its signal
 * cannot hold the prompt. Its own later outcome is dropped (the race has already subscribed to it).
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(promptCancelled());
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(promptCancelled());
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([work, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

/** Runs one call to its result, reporting `tool.called` and `tool.completed`. Rejects only with CANCELLED. */
async function runToolCall(call: ToolCall, { ctx, tools, round, clock }: ToolRoundContext): Promise<ToolResult> {
  const startedAt = clock.now();
  const parsed = parseArguments(call.argumentsJson);
  ctx.reportTool({ type: "tool.called", tool: call.name, callId: call.callId, round, args: parsed.ok ? parsed.value : call.argumentsJson });
  const complete = (content: string, error?: ToolFailure): ToolResult => {
    ctx.reportTool({
      type: "tool.completed",
      tool: call.name,
      callId: call.callId,
      round,
      ok: error === undefined,
      durationMs: clock.now() - startedAt,
      ...(error === undefined ? {} : { error }),
    });
    return { callId: call.callId, name: call.name, content, isError: error !== undefined };
  };
  const fail = (kind: ToolFailureKind, message: string): ToolResult => complete(message, { kind, message });

  const tool = tools.get(call.name);
  if (tool === undefined) {
    const known = tools.names();
    return fail("unknown_tool", `Unknown tool ${JSON.stringify(call.name)}: the tools are ${known.length === 0 ? "none" : known.join(", ")}`);
  }
  if (!parsed.ok) return fail("bad_arguments", `Invalid arguments for ${tool.name}: ${parsed.message}`);
  let args: unknown;
  try {
    args = tool.parse(parsed.value);
  } catch (error) {
    return fail("bad_arguments", `Invalid arguments for ${tool.name}: ${messageOf(error)}`);
  }
  const toolCtx: ToolContext = {
    session: ctx.session,
    agentId: ctx.session.agentId,
    requestId: ctx.requestId,
    callId: call.callId,
    signal: ctx.signal,
    ask: ctx.ask,
  };
  let value: unknown;
  try {
    // Through a promise, so that a tool that throws synchronously is reported as one that rejects.
    value = await untilAborted(
      Promise.resolve().then(() => tool.execute(args, toolCtx)),
      ctx.signal,
    );
  } catch (error) {
    if (ctx.signal.aborted) {
      complete("", { kind: "cancelled", message: "Prompt cancelled" });
      throw promptCancelled();
    }
    return fail("threw", messageOf(error));
  }
  let content: string;
  try {
    content = resultContent(value);
  } catch (error) {
    return fail("threw", `the result is not JSON: ${messageOf(error)}`);
  }
  return complete(content);
}

/**
 * Runs the calls of one round concurrently and answers their results in the order of the calls. A tool that
 * throws, an unknown tool and bad arguments become error results for the model; cancelling the prompt
 * aborts every running tool (through `ctx.signal`) and rejects with CANCELLED at once.
 */
export async function runToolCalls(calls: readonly ToolCall[], round: ToolRoundContext): Promise<ToolResult[]> {
  if (round.ctx.signal.aborted) throw promptCancelled();
  return Promise.all(calls.map((call) => runToolCall(call, round)));
}
