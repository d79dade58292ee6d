/**
 * Which task or context an A2A JSON-RPC request names, read as the SDK's transport reads it (its own `fromJSON` for
 * v1.0, the v0.3 layer's fields for v0.3): on a cluster node, what decides which node answers it (docs/cluster.md,
 * "A2A across nodes"). A message naming a task goes where the task is; one naming only a context, where the context
 * is; `ListTasks` filtered by a context, there too. Anything else (a new context, a malformed request) is answered
 * where it was asked.
 */
import { CancelTaskRequest, GetTaskRequest, ListTasksRequest, SendMessageRequest, SubscribeToTaskRequest } from "@a2a-js/sdk";
import {
  LEGACY_METHOD_MESSAGE_SEND,
  LEGACY_METHOD_MESSAGE_STREAM,
  LEGACY_METHOD_TASKS_CANCEL,
  LEGACY_METHOD_TASKS_GET,
  LEGACY_METHOD_TASKS_RESUBSCRIBE,
} from "@a2a-js/sdk/compat/v0_3";

/** A task, or (when a request names no task) a context, of the agent the request is for. */
export type RequestTarget = { taskId: string } | { contextId: string };

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A message's task when it names one, else its context when it names one. */
function messageTarget(taskId: unknown, contextId: unknown): RequestTarget | undefined {
  if (typeof taskId === "string" && taskId !== "") return { taskId };
  if (typeof contextId === "string" && contextId !== "") return { contextId };
  return undefined;
}

function taskTarget(taskId: unknown): RequestTarget | undefined {
  return typeof taskId === "string" && taskId !== "" ? { taskId } : undefined;
}

/** The task or context request `body` names (`legacy`: spoken in v0.3); `undefined` when it names none. */
export function requestTargetOf(body: unknown, legacy: boolean): RequestTarget | undefined {
  if (!isRecord(body) || !isRecord(body.params)) return undefined;
  const { method, params } = body;
  try {
    if (legacy) {
      switch (method) {
        case LEGACY_METHOD_TASKS_GET:
        case LEGACY_METHOD_TASKS_CANCEL:
        case LEGACY_METHOD_TASKS_RESUBSCRIBE:
          return taskTarget(params.id);
        case LEGACY_METHOD_MESSAGE_SEND:
        case LEGACY_METHOD_MESSAGE_STREAM: {
          const message = isRecord(params.message) ? params.message : {};
          return messageTarget(message.taskId, message.contextId);
        }
        default:
          return undefined;
      }
    }
    switch (method) {
      case "GetTask":
        return taskTarget(GetTaskRequest.fromJSON(params).id);
      case "CancelTask":
        return taskTarget(CancelTaskRequest.fromJSON(params).id);
      case "SubscribeToTask":
        return taskTarget(SubscribeToTaskRequest.fromJSON(params).id);
      case "SendMessage":
      case "SendStreamingMessage": {
        const { message } = SendMessageRequest.fromJSON(params);
        return messageTarget(message?.taskId, message?.contextId);
      }
      case "ListTasks":
        return messageTarget(undefined, ListTasksRequest.fromJSON(params).contextId);
      default:
        return undefined;
    }
  } catch {
    // Parameters the SDK cannot read: the node asked answers with the SDK's error, as every node would.
    return undefined;
  }
}
