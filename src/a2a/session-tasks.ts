/**
 * A2A tasks of the runtime's own agents (in-process, workers, remote A2A agents): each message is a prompt
 * in the bridge session of its context (./contexts.ts), sent through `runtime.bridge` with a signal, so that
 * `tasks/cancel` is `sessions_cancel` and the provider call really stops.
 *
 * The task's state follows the prompt's: `submitted` while it waits in the session's queue, `working` once the
 * session runs it (`prompt.started`), then `completed` with the answer as an artifact, `input-required`
 * with the agent's question (an agent that answers with the stop reason `input_required`; the client's next
 * message into the task is the session's next prompt), `canceled`, or `failed` with the error. While the
 * client streams, each delta is an artifact update.
 */
import { randomUUID } from "node:crypto";
import { TaskState } from "@a2a-js/sdk";
import type { AgentExecutor, ExecutionEventBus, RequestContext } from "@a2a-js/sdk/server";
import { toBridgeError } from "../errors.js";
import type { Runtime } from "../runtime/runtime.js";
import { agentScopedKey } from "./agent-scoped-key.js";
import type { A2aContexts } from "./contexts.js";
import { hasPromptText, textOfParts } from "./parts.js";
import { INPUT_REQUIRED_STOP_REASON } from "./stop-reasons.js";
import { TaskEvents } from "./task-events.js";

/** Where the transport notes that the client streams (`SendStreamingMessage`): only then are deltas sent. */
export const STREAMING_STATE_KEY = "troupe.a2a.streaming";

/** A running task: what aborts its prompts, and how many of its messages run (a client may send more into it). */
interface RunningTask {
  cancel: AbortController;
  turns: number;
}

/** The prompts of running tasks, by agent and task: what `tasks/cancel` aborts. */
export class SessionTasks {
  private readonly running = new Map<string, RunningTask>();

  constructor(
    private readonly runtime: Runtime,
    private readonly contexts: A2aContexts,
  ) {}

  /** Tasks running now. */
  get size(): number {
    return this.running.size;
  }

  /** The SDK's executor for one agent. */
  executorFor(agentId: string): AgentExecutor {
    return {
      execute: (context, bus) => this.execute(agentId, context, bus),
      cancelTask: (taskId, bus) => Promise.resolve(this.cancel(agentId, taskId, bus)),
    };
  }

  private async execute(agentId: string, context: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { taskId, contextId, userMessage } = context;
    const events = new TaskEvents(bus, taskId, contextId, this.runtime.clock);
    const key = agentScopedKey(agentId, taskId);
    const running = this.running.get(key) ?? { cancel: new AbortController(), turns: 0 };
    running.turns += 1;
    this.running.set(key, running);
    try {
      if (!hasPromptText(userMessage.parts)) {
        events.submitted(context.task, userMessage);
        return events.status(TaskState.TASK_STATE_REJECTED, "The message has no text: this agent reads text (or JSON data)");
      }
      // The context's session first, then the task: on a cluster node, the context's record is durable before its
      // client hears of the task (and may ask another node about it).
      const lease = await this.contexts.acquire(agentId, contextId).finally(() => events.submitted(context.task, userMessage));
      const { sessionId } = lease;
      const requestId = randomUUID();
      const stopWatching = this.runtime.on("prompt.started", (event) => {
        if (event.sessionId === sessionId && event.requestId === requestId) events.status(TaskState.TASK_STATE_WORKING);
      });
      let streamed = false;
      const onDelta = (delta: string): void => {
        events.artifact(requestId, delta, streamed, false);
        streamed = true;
      };
      try {
        const reply = await this.runtime.bridge.sessionsPrompt(
          { sessionId, prompt: textOfParts(userMessage.parts), requestId },
          { signal: running.cancel.signal, ...(context.context.state.get(STREAMING_STATE_KEY) === true ? { onDelta } : {}) },
        );
        if (reply.stopReason === INPUT_REQUIRED_STOP_REASON) return events.status(TaskState.TASK_STATE_INPUT_REQUIRED, reply.text);
        events.artifact(requestId, reply.text, false, true);
        events.status(TaskState.TASK_STATE_COMPLETED, undefined, { stopReason: reply.stopReason, ...(reply.usage ? { usage: reply.usage } : {}) });
      } finally {
        stopWatching();
        lease.release();
      }
    } catch (error) {
      const failure = toBridgeError(error, "UPSTREAM");
      if (failure.type === "CANCELLED") return events.status(TaskState.TASK_STATE_CANCELED, failure.message);
      // A session that cannot answer again (its agent refused, its worker crashed) is closed: the context starts afresh.
      if (failure.details.sessionValid === false) this.contexts.drop(agentId, contextId);
      events.status(TaskState.TASK_STATE_FAILED, failure.message, { error: failure.toJSON() });
    } finally {
      running.turns -= 1;
      if (running.turns === 0) this.running.delete(key);
    }
  }

  /**
   * Aborts the task's prompt: the bridge cancels it in its session, and the task ends `canceled` when the
   * prompt does. A task that runs nothing any more ends `canceled` at once.
   */
  private cancel(agentId: string, taskId: string, bus: ExecutionEventBus): void {
    const running = this.running.get(agentScopedKey(agentId, taskId));
    if (running !== undefined) return running.cancel.abort();
    new TaskEvents(bus, taskId, "", this.runtime.clock).status(TaskState.TASK_STATE_CANCELED);
  }
}
