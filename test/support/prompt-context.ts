/**
 * Prompt contexts for calling a provider directly, without a runtime, and what it streamed.
 */
import type { HistoryMessage } from "../../machines/index.js";
import { BridgeError, type PromptContext, type RuntimeParams, type ToolReport } from "../../src/index.js";

/** A context for one prompt and the deltas the provider emitted into it. */
export interface TestPromptContext {
  ctx: PromptContext;
  deltas: string[];
  warnings: string[];
  /** What the tool loop reported (`tool.called`, `tool.completed`), in order. */
  toolReports: ToolReport[];
  /** Aborts `ctx.signal`, as `sessions_cancel` would. */
  cancel(): void;
}

/** Builds a prompt context; every field has a harmless default. */
export function promptContext(
  options: { prompt?: string; history?: HistoryMessage[]; runtimeParams?: RuntimeParams; metadata?: Record<string, unknown> } = {},
): TestPromptContext {
  const controller = new AbortController();
  const deltas: string[] = [];
  const warnings: string[] = [];
  const toolReports: ToolReport[] = [];
  return {
    ctx: {
      session: { sessionId: "session-1", agentId: "agent-1", metadata: options.metadata ?? {} },
      prompt: options.prompt ?? "Hello",
      requestId: "request-1",
      runtimeParams: options.runtimeParams ?? {},
      history: options.history ?? [],
      signal: controller.signal,
      emit: (delta) => deltas.push(delta),
      warn: (message) => warnings.push(message),
      reportTool: (report) => toolReports.push(report),
      ask: () => Promise.reject(new BridgeError("CONFIG", "this prompt context has no bus")),
    },
    deltas,
    warnings,
    toolReports,
    cancel: () => controller.abort(),
  };
}
