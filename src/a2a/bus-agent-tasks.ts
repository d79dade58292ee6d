/**
 * A2A tasks of the bus's remote agents (those that register and connect over WebSocket, SPEC §3.3): each
 * message is a sync `task_request` from `troupe://a2a` through the bus's own delivery (queue, retries,
 * timeout), whose `task_response` completes the task and whose `error` fails it. The request carries the A2A
 * context and task ids (`payload.a2a`) so that the agent can keep its own conversation per context.
 * `tasks/cancel` sends the agent a `status_update` `{ status: "cancelled" }` for the request (as an abandoned
 * `ctx.ask` does) and ends the task `canceled` at once. Such an agent answers once: nothing streams.
 */
import { randomUUID } from "node:crypto";
import { TaskState } from "@a2a-js/sdk";
import type { AgentExecutor, ExecutionEventBus, RequestContext } from "@a2a-js/sdk/server";
import type { CommunicationBus } from "../bus/bus.js";
import type { Clock } from "../clock.js";
import { toBridgeError } from "../errors.js";
import { frameworkOf, type EnvelopeInput } from "../protocol/envelope.js";
import { RUNTIME_FRAMEWORK } from "../runtime/bus-agents.js";
import { agentScopedKey } from "./agent-scoped-key.js";
import { hasPromptText, textOfParts } from "./parts.js";
import { TaskEvents } from "./task-events.js";

/** The sender of the requests the A2A endpoint sends to bus agents (and the recipient of their answers). */
export const A2A_SENDER_ID = `${RUNTIME_FRAMEWORK}://a2a`;

/** A request in flight: its message id, and what ends its task when it is cancelled. */
interface PendingRequest {
  messageId: string;
  events: TaskEvents;
  cancelled: boolean;
}

/** The requests of running tasks, by agent and task (a client may send more than one message into a task). */
export class BusAgentTasks {
  private readonly running = new Map<string, Set<PendingRequest>>();

  constructor(
    private readonly bus: CommunicationBus,
    private readonly clock: Clock,
  ) {}

  /** The SDK's executor for one registered agent. */
  executorFor(agentId: string): AgentExecutor {
    return {
      execute: (context, bus) => this.execute(agentId, context, bus),
      cancelTask: (taskId, bus) => Promise.resolve(this.cancel(agentId, taskId, bus)),
    };
  }

  private async execute(agentId: string, context: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { taskId, contextId, userMessage } = context;
    const events = new TaskEvents(bus, taskId, contextId, this.clock);
    events.submitted(context.task, userMessage);
    if (!hasPromptText(userMessage.parts)) return events.status(TaskState.TASK_STATE_REJECTED, "The message has no text: this agent reads text (or JSON data)");
    const key = agentScopedKey(agentId, taskId);
    const request: PendingRequest = { messageId: `a2a_${randomUUID()}`, events, cancelled: false };
    const requests = this.running.get(key) ?? new Set<PendingRequest>();
    this.running.set(key, requests.add(request));
    events.status(TaskState.TASK_STATE_WORKING);
    try {
      const sent = await this.bus.send(
        this.envelope(agentId, request.messageId, "task_request", {
          prompt: textOfParts(userMessage.parts),
          a2a: { context_id: contextId, task_id: taskId },
        }),
      );
      if (request.cancelled) return;
      const answer = sent.response;
      const payload = answer?.payload ?? {};
      if (answer?.message_type === "error") {
        const message = typeof payload["message"] === "string" ? payload["message"] : `${agentId} answered with an error`;
        return events.status(TaskState.TASK_STATE_FAILED, message, { error: { code: payload["code"] ?? "UPSTREAM", message } });
      }
      const text = typeof payload["text"] === "string" ? payload["text"] : JSON.stringify(payload);
      events.artifact(request.messageId, text, false, true);
      events.status(TaskState.TASK_STATE_COMPLETED);
    } catch (error) {
      if (request.cancelled) return;
      const failure = toBridgeError(error, "UPSTREAM");
      events.status(TaskState.TASK_STATE_FAILED, failure.message, { error: failure.toJSON() });
    } finally {
      requests.delete(request);
      if (requests.size === 0) this.running.delete(key);
    }
  }

  /** Tells the agent nobody waits for its answers any more, and ends the task. */
  private cancel(agentId: string, taskId: string, bus: ExecutionEventBus): void {
    const requests = [...(this.running.get(agentScopedKey(agentId, taskId)) ?? [])];
    if (requests.length === 0) return new TaskEvents(bus, taskId, "", this.clock).status(TaskState.TASK_STATE_CANCELED);
    for (const request of requests) {
      request.cancelled = true;
      this.bus
        .send(
          this.envelope(agentId, `cancel_${randomUUID()}`, "status_update", { status: "cancelled", reason: "cancelled by the A2A client" }, request.messageId),
        )
        // The task is cancelled whatever the bus says (it may be stopping): the agent only misses the news.
        .catch(() => undefined);
    }
    requests[0]!.events.status(TaskState.TASK_STATE_CANCELED, "Cancelled by the client");
  }

  private envelope(
    agentId: string,
    messageId: string,
    type: "task_request" | "status_update",
    payload: Record<string, unknown>,
    inReplyTo?: string,
  ): EnvelopeInput {
    return {
      message_id: messageId,
      timestamp: new Date(this.clock.now()).toISOString(),
      sender: { agent_id: A2A_SENDER_ID, framework: RUNTIME_FRAMEWORK },
      recipient: { agent_id: agentId, framework: frameworkOf(agentId) },
      message_type: type,
      payload,
      routing: { delivery_mode: type === "task_request" ? "sync" : "async" },
      metadata: inReplyTo === undefined ? { task_id: messageId } : { in_reply_to: inReplyTo, task_id: inReplyTo },
    };
  }
}
