/**
 * Auto-dispatched tasks (SPEC §3.7): the `task_request` envelopes that a workflow machine's `tasks_dispatch`
 * asks for, one per required agent of the step it entered, sent from the initiator in the workflow session.
 */
import type { DispatchedTask, StepResults, WorkflowEmitted } from "../../machines/workflow.machine.js";
import { formatDuration } from "../protocol/durations.js";
import type { EnvelopeInput } from "../protocol/envelope.js";

/** What a workflow machine emits when it enters a step whose task troupe sends. */
export type TasksDispatch = Extract<WorkflowEmitted, { type: "tasks_dispatch" }>;

/** A result as an agent reading text wants it: its `text` when it has one, else its JSON. */
function resultText(result: unknown): string {
  const text = (result as { text?: unknown } | null)?.text;
  return typeof text === "string" ? text : (JSON.stringify(result) ?? "");
}

function resultLines(results: StepResults): string[] {
  return Object.entries(results).flatMap(([step, byAgent]) =>
    Object.entries(byAgent).map(([agentId, result]) => `- ${step}, ${agentId}: ${resultText(result)}`),
  );
}

/**
 * The prompt of a task given as text: the task, then the step, the shared context and the earlier results,
 * so that an agent answering text (an LLM, an ACP coding agent) gets the whole job in one prompt.
 */
function taskPrompt(dispatch: Pick<TasksDispatch, "step" | "shared_context" | "results">, task: string): string {
  const lines = [task, "", `Workflow step: ${dispatch.step}`];
  if (Object.keys(dispatch.shared_context).length > 0) lines.push(`Shared context: ${JSON.stringify(dispatch.shared_context)}`);
  const results = resultLines(dispatch.results);
  if (results.length > 0) lines.push("Results of earlier steps:", ...results);
  return lines.join("\n");
}

/**
 * The request of each task of one dispatch. Payload `{ step, task, shared_context, results }`, plus `prompt`
 * (see `taskPrompt`) when the task is text; `metadata.task_id` names the task; a step timeout bounds the delivery.
 */
export function taskRequestsOf(
  dispatch: TasksDispatch,
  options: { at: number; frameworkOf(agentId: string): string },
): Array<{ task: DispatchedTask; request: EnvelopeInput }> {
  const { sessionId, from, step, task, shared_context, results, timeoutMs } = dispatch;
  const payload = { step, task, shared_context, results, ...(typeof task === "string" ? { prompt: taskPrompt(dispatch, task) } : {}) };
  return dispatch.tasks.map((each) => ({
    task: each,
    request: {
      message_id: each.message_id,
      timestamp: new Date(options.at).toISOString(),
      sender: { agent_id: from, framework: options.frameworkOf(from), session_id: sessionId },
      recipient: { agent_id: each.to, framework: options.frameworkOf(each.to) },
      message_type: "task_request",
      priority: "medium",
      payload,
      ...(timeoutMs === undefined ? {} : { routing: { timeout: formatDuration(timeoutMs) } }),
      metadata: { task_id: each.task_id },
    },
  }));
}
