/**
 * Structured logs from the event hub (SPEC §6.1): each event becomes one log line at a level chosen per type,
 * with the correlation fields of what it concerns (`sessionId`, `requestId`, `message_id`, `agentId`,
 * `workflow`). Nothing else in troupe calls a logger: what happens is an event, and the log is one reader of
 * them. The logger is the caller's (pino's fits); this module never loads one.
 */
import type { RuntimeEvent, RuntimeEventListener, RuntimeEventType } from "./event-hub.js";

/** The levels troupe logs at, from the most detailed. */
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error"] as const;

/** A level troupe logs at. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What troupe needs of a logger: pino's `Logger` is one. */
export type EventLogger = Record<LogLevel, (fields: Record<string, unknown>, message: string) => void> & {
  isLevelEnabled(level: string): boolean;
};

/** Where events come from: a `Runtime` or a `CommunicationBus`. */
export interface EventSource {
  on<T extends RuntimeEventType | "*">(type: T, listener: RuntimeEventListener<T>): () => void;
}

/** Options of `logRuntimeEvents`. */
export interface EventLogOptions {
  /** The agent of a bridge session, so that prompt lines carry `agentId` (e.g. from `runtime.sessionStatus`). */
  agentOfSession?: (sessionId: string) => string | undefined;
}

interface LogLine {
  level: LogLevel;
  message: string;
  fields: Record<string, unknown>;
}

type Rule<T extends RuntimeEventType> = {
  /** The most detailed level this type is logged at: below it, nobody listens for the type. */
  level: LogLevel;
  line: (event: RuntimeEvent<T>, options: EventLogOptions) => LogLine;
};

type Rules = { [T in RuntimeEventType]?: Rule<T> };

/** The correlation fields of a prompt's line. */
function promptFields(
  event: RuntimeEvent<"prompt.started" | "prompt.delta" | "prompt.warning" | "prompt.completed" | "prompt.failed" | "prompt.cancelled">,
  options: EventLogOptions,
) {
  const agentId = event.type === "prompt.delta" ? undefined : options.agentOfSession?.(event.sessionId);
  return { sessionId: event.sessionId, requestId: event.requestId, ...(agentId === undefined ? {} : { agentId }) };
}

/** A rule that always logs at `level`. */
const at = <T extends RuntimeEventType>(level: LogLevel, line: (event: RuntimeEvent<T>, options: EventLogOptions) => Omit<LogLine, "level">): Rule<T> => ({
  level,
  line: (event, options) => ({ level, ...line(event, options) }),
});

/** Every event type that is logged, its level and its line. Types left out (actor.*) are too many to log. */
const RULES: Rules = {
  "prompt.started": at("debug", (event, options) => ({ message: "prompt started", fields: promptFields(event, options) })),
  "prompt.delta": at("trace", (event, options) => ({ message: "prompt delta", fields: { ...promptFields(event, options), delta: event.delta } })),
  "prompt.warning": at("warn", (event, options) => ({ message: `prompt warning: ${event.message}`, fields: promptFields(event, options) })),
  "prompt.completed": at("info", (event, options) => ({
    message: "prompt completed",
    fields: { ...promptFields(event, options), stopReason: event.stopReason, ...(event.usage ? { usage: event.usage } : {}) },
  })),
  "prompt.failed": at("warn", (event, options) => ({
    message: `prompt failed: ${event.error.type}: ${event.error.message}`,
    fields: { ...promptFields(event, options), error: { type: event.error.type, message: event.error.message, sessionValid: event.error.sessionValid } },
  })),
  "prompt.cancelled": at("info", (event, options) => ({
    message: `prompt cancelled (${event.cause})`,
    fields: { ...promptFields(event, options), cause: event.cause },
  })),
  "tool.called": at("debug", (event) => ({
    message: `tool ${event.tool} called`,
    fields: { sessionId: event.sessionId, requestId: event.requestId, agentId: event.agentId, tool: event.tool, callId: event.callId, round: event.round },
  })),
  "tool.completed": {
    level: "info",
    line: (event) => ({
      level: event.ok || event.error?.kind === "cancelled" ? "info" : "warn",
      message: event.ok ? `tool ${event.tool} completed` : `tool ${event.tool} failed (${event.error?.kind}): ${event.error?.message}`,
      fields: {
        sessionId: event.sessionId,
        requestId: event.requestId,
        agentId: event.agentId,
        tool: event.tool,
        callId: event.callId,
        ok: event.ok,
        durationMs: event.durationMs,
      },
    }),
  },
  "message.accepted": at("debug", (event) => ({ message: "message accepted", fields: { message_id: event.messageId, agentId: event.target } })),
  "message.queued": at("debug", (event) => ({
    message: "message queued until its recipient connects",
    fields: { message_id: event.messageId, agentId: event.target },
  })),
  "message.delivered": at("debug", (event) => ({
    message: "message delivered",
    fields: { message_id: event.messageId, agentId: event.target, attempts: event.attempts },
  })),
  "message.acknowledged": at("debug", (event) => ({
    message: "message acknowledged",
    fields: { message_id: event.messageId, agentId: event.target, attempts: event.attempts },
  })),
  "message.retrying": at("warn", (event) => ({
    message: `message delivery failed, retry ${event.retries} in ${event.delayMs} ms: ${event.error}`,
    fields: { message_id: event.messageId, agentId: event.target, retries: event.retries, delayMs: event.delayMs },
  })),
  "message.dead": at("warn", (event) => ({
    message: `message dead after ${event.attempts} attempts (${event.cause}): ${event.error}`,
    fields: { message_id: event.messageId, attempts: event.attempts, cause: event.cause },
  })),
  "workflow.created": at("info", (event) => ({ message: "workflow created", fields: { workflow: event.sessionId } })),
  "workflow.participant_added": at("debug", (event) => ({
    message: "workflow participant added",
    fields: { workflow: event.sessionId, agentId: event.participant.agent_id },
  })),
  "workflow.participant_removed": at("debug", (event) => ({
    message: "workflow participant removed",
    fields: { workflow: event.sessionId, agentId: event.agentId },
  })),
  "workflow.step": at("info", (event) => ({
    message: `workflow step ${event.previous_step} → ${event.workflow.current_step ?? "(none)"}`,
    fields: { workflow: event.sessionId, step: event.workflow.current_step, previousStep: event.previous_step, cause: event.cause },
  })),
  "workflow.context_updated": at("debug", (event) => ({ message: "workflow shared context updated", fields: { workflow: event.sessionId } })),
  "workflow.task_delegated": at("info", (event) => ({
    message: `workflow task delegated to ${event.task.to}`,
    fields: { workflow: event.sessionId, message_id: event.task.message_id, agentId: event.task.to, taskId: event.task.task_id, step: event.task.step },
  })),
  "workflow.task_completed": at("info", (event) => ({
    message: `workflow task ${event.task.status}`,
    fields: {
      workflow: event.sessionId,
      message_id: event.task.message_id,
      agentId: event.task.answered_by ?? event.task.to,
      taskId: event.task.task_id,
      step: event.task.step,
    },
  })),
  "workflow.completed": at("info", (event) => ({ message: "workflow completed", fields: { workflow: event.sessionId } })),
  "workflow.terminated": at("warn", (event) => ({
    message: `workflow terminated: ${event.reason}`,
    fields: { workflow: event.sessionId, reason: event.reason },
  })),
  "workflow.evicted": at("debug", (event) => ({ message: "workflow evicted", fields: { workflow: event.sessionId } })),
  "agent.online": at("info", (event) => ({ message: "agent online", fields: { agentId: event.agentId, kind: event.kind } })),
  "agent.offline": {
    level: "info",
    line: (event) => ({
      level: event.unavailable ? "warn" : "info",
      message: event.unavailable ? "agent unavailable: it will not come back" : "agent offline",
      fields: { agentId: event.agentId, kind: event.kind },
    }),
  },
  "agent.busy": at("debug", (event) => ({ message: "agent busy", fields: { agentId: event.agentId } })),
  "agent.ready": at("debug", (event) => ({ message: "agent ready", fields: { agentId: event.agentId } })),
  "worker.started": at("info", (event) => ({
    message: `worker process started (pid ${event.pid})`,
    fields: { agentId: event.workerId, worker: event.workerId, pid: event.pid },
  })),
  "worker.stderr": at("info", (event) => ({ message: event.line, fields: { agentId: event.workerId, worker: event.workerId, stream: "stderr" } })),
  "worker.exited": {
    level: "info",
    line: (event) => ({
      level: event.stopped ? "info" : event.spawnError === undefined ? "warn" : "error",
      message: event.stopped ? `worker process stopped (${event.reason})` : `worker ${event.workerId} ${event.reason}`,
      fields: {
        agentId: event.workerId,
        worker: event.workerId,
        code: event.code,
        signal: event.signal,
        ...(event.spawnError === undefined ? {} : { spawnError: event.spawnError }),
        ...(event.stderr === "" ? {} : { stderr: event.stderr }),
      },
    }),
  },
  "server.error": at("error", (event) => ({
    message: `${event.method} ${event.path} failed with an internal error: ${event.message}`,
    fields: { method: event.method, path: event.path, ...(event.stack === undefined ? {} : { stack: event.stack }) },
  })),
  "cluster.node_joined": at("info", (event) => ({
    message: `cluster node ${event.node} joined (NATS server ${event.server})`,
    fields: { node: event.node, server: event.server },
  })),
  "cluster.node_left": at("info", (event) => ({
    message: `cluster node ${event.node} leaving: its work goes to the other nodes once it is stored`,
    fields: { node: event.node },
  })),
  "cluster.lease_lost": at("warn", (event) => ({
    message: `cluster node ${event.node} lost its lease (${event.reason}): its workflows and bridge sessions stop here`,
    fields: { node: event.node, cause: event.cause },
  })),
  "cluster.lease_regained": at("info", (event) => ({
    message: `cluster node ${event.node} has its lease again: ${event.workflows} workflow(s) and ${event.sessions} bridge session(s) still its own run again`,
    fields: { node: event.node, workflows: event.workflows, sessions: event.sessions },
  })),
  "cluster.takeover": at("info", (event) => ({
    message: `cluster node ${event.node} took over node ${event.fromNode}: ${event.workflows} workflow(s), ${event.sessions} bridge session(s)`,
    fields: { node: event.node, fromNode: event.fromNode, workflows: event.workflows, sessions: event.sessions },
  })),
  "cluster.nats_disconnected": at("warn", (event) => ({
    message: `cluster node ${event.node} lost NATS (${event.server}): it refuses messages until NATS is back`,
    fields: { node: event.node, server: event.server },
  })),
  "cluster.nats_reconnected": at("info", (event) => ({
    message: `cluster node ${event.node} has NATS again (${event.server}) after ${event.downMs} ms`,
    fields: { node: event.node, server: event.server, downMs: event.downMs },
  })),
  "cluster.scan_failed": at("warn", (event) => ({
    message: `cluster node ${event.node} could not scan the cluster for dead nodes (trying again): ${event.error}`,
    fields: { node: event.node },
  })),
};

/**
 * Writes the events of `source` to `logger`, one line each, from the types whose level the logger has
 * enabled (only those are listened to: a quiet logger costs nothing). Returns the function that stops.
 */
export function logRuntimeEvents(source: EventSource, logger: EventLogger, options: EventLogOptions = {}): () => void {
  const stops = (Object.entries(RULES) as Array<[RuntimeEventType, Rule<RuntimeEventType>]>)
    .filter(([, rule]) => logger.isLevelEnabled(rule.level))
    .map(([type, rule]) =>
      source.on(type, (event) => {
        const { level, message, fields } = rule.line(event, options);
        logger[level]({ event: type, ...fields }, message);
      }),
    );
  return () => {
    for (const stop of stops) stop();
  };
}
