/**
 * The result aggregator: what a workflow session produced, per step and agent (tasks, results, failures,
 * durations, token usage), with the completion summary and artifacts, as JSON or Markdown.
 */
import type { TaskUsage, WorkflowTask } from "../../machines/workflow.machine.js";
import { sessionNotFound } from "../errors.js";
import type { SessionManager, WorkflowSession } from "./session-manager.js";

/** One agent's share of one step. Durations are milliseconds from delegation to answer. */
export interface AgentStepSummary {
  agent_id: string;
  tasks: number;
  completed: number;
  failed: number;
  pending: number;
  results: Array<{ task_id: string; result: unknown }>;
  failures: Array<{ task_id: string; code: string; message: string }>;
  duration_ms: number;
  usage: TaskUsage;
}

/** One step of the workflow. */
export interface StepSummary {
  name: string;
  /** `current` is the step the session is at; once it has ended, that step is `completed` or `interrupted`. */
  status: "completed" | "current" | "pending" | "interrupted";
  required_agents: string[];
  agents: AgentStepSummary[];
}

/** What `summarize(sessionId, { format: "json" })` returns. */
export interface SessionSummary {
  session_id: string;
  status: WorkflowSession["status"];
  initiator: string;
  workflow: { current_step: string | null; completed_steps: string[]; pending_steps: string[] };
  steps: StepSummary[];
  totals: { tasks: number; completed: number; failed: number; pending: number; duration_ms: number; usage: TaskUsage };
  completion?: WorkflowSession["completion"];
  termination?: WorkflowSession["termination"];
}

/** Options of `summarize`. */
export interface SummarizeOptions {
  format?: "json" | "markdown";
}

function emptyUsage(): TaskUsage {
  return { input_tokens: 0, output_tokens: 0 };
}

function durationOf(task: WorkflowTask): number {
  return task.answered_at === undefined ? 0 : task.answered_at - task.delegated_at;
}

function agentSummary(agentId: string, tasks: WorkflowTask[]): AgentStepSummary {
  const summary: AgentStepSummary = {
    agent_id: agentId,
    tasks: tasks.length,
    completed: 0,
    failed: 0,
    pending: 0,
    results: [],
    failures: [],
    duration_ms: 0,
    usage: emptyUsage(),
  };
  for (const task of tasks) {
    summary.duration_ms += durationOf(task);
    if (task.status === "pending") summary.pending += 1;
    if (task.status === "completed") {
      summary.completed += 1;
      summary.results.push({ task_id: task.task_id, result: task.result });
    }
    if (task.status === "failed") {
      summary.failed += 1;
      summary.failures.push({ task_id: task.task_id, code: task.error?.code ?? "ERROR", message: task.error?.message ?? "" });
    }
    summary.usage.input_tokens += task.usage?.input_tokens ?? 0;
    summary.usage.output_tokens += task.usage?.output_tokens ?? 0;
  }
  return summary;
}

function stepStatus(session: WorkflowSession, name: string): StepSummary["status"] {
  const { workflow } = session;
  if (workflow.completed_steps.includes(name)) return "completed";
  if (workflow.pending_steps.includes(name)) return "pending";
  if (session.status === "active") return workflow.current_step === name ? "current" : "pending";
  return session.status === "completed" ? "completed" : "interrupted";
}

/** Builds the JSON summary of a session. */
function summaryOf(session: WorkflowSession): SessionSummary {
  const steps = session.workflow.steps.map((step): StepSummary => {
    const tasks = session.tasks.filter((task) => task.step === step.name);
    const agentIds = [...new Set([...step.required_agents, ...tasks.map((task) => task.to)])];
    return {
      name: step.name,
      status: stepStatus(session, step.name),
      required_agents: step.required_agents,
      agents: agentIds.map((agentId) =>
        agentSummary(
          agentId,
          tasks.filter((task) => task.to === agentId),
        ),
      ),
    };
  });
  const all = agentSummary("(all)", session.tasks);
  return {
    session_id: session.session_id,
    status: session.status,
    initiator: session.initiator,
    workflow: {
      current_step: session.workflow.current_step,
      completed_steps: session.workflow.completed_steps,
      pending_steps: session.workflow.pending_steps,
    },
    steps,
    totals: { tasks: all.tasks, completed: all.completed, failed: all.failed, pending: all.pending, duration_ms: all.duration_ms, usage: all.usage },
    ...(session.completion ? { completion: session.completion } : {}),
    ...(session.termination ? { termination: session.termination } : {}),
  };
}

function inline(value: unknown, maxLength = 200): string {
  const text = JSON.stringify(value) ?? "undefined";
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

/** Renders the summary as Markdown: a heading, the completion, then one table and its results per step. */
function markdownOf(summary: SessionSummary): string {
  const lines = [`# Session ${summary.session_id}: ${summary.status}`, "", `Initiator: ${summary.initiator}`, ""];
  if (summary.completion) {
    lines.push("## Summary", "", summary.completion.summary || "(none)", "");
    if (summary.completion.artifacts.length > 0)
      lines.push("Artifacts:", ...summary.completion.artifacts.map((artifact) => `- ${typeof artifact === "string" ? artifact : inline(artifact)}`), "");
  }
  if (summary.termination)
    lines.push(
      "## Terminated",
      "",
      `Reason: ${summary.termination.reason}`,
      ...(summary.termination.details === undefined ? [] : [`Details: ${inline(summary.termination.details)}`]),
      "",
    );
  lines.push("## Steps", "");
  for (const step of summary.steps) {
    lines.push(
      `### ${step.name} (${step.status})`,
      "",
      "| agent | tasks | completed | failed | pending | duration (ms) | tokens in | tokens out |",
      "| --- | --- | --- | --- | --- | --- | --- | --- |",
    );
    for (const agent of step.agents) {
      lines.push(
        `| ${agent.agent_id} | ${agent.tasks} | ${agent.completed} | ${agent.failed} | ${agent.pending} | ${agent.duration_ms} | ${agent.usage.input_tokens} | ${agent.usage.output_tokens} |`,
      );
    }
    const results = step.agents.flatMap((agent) => agent.results.map(({ task_id, result }) => `- ${agent.agent_id}, task ${task_id}: ${inline(result)}`));
    const failures = step.agents.flatMap((agent) =>
      agent.failures.map(({ task_id, code, message }) => `- ${agent.agent_id}, task ${task_id}: ${code} ${message}`),
    );
    if (results.length > 0) lines.push("", "Results:", ...results);
    if (failures.length > 0) lines.push("", "Failures:", ...failures);
    lines.push("");
  }
  const { totals } = summary;
  lines.push(
    "## Totals",
    "",
    `${totals.tasks} tasks: ${totals.completed} completed, ${totals.failed} failed, ${totals.pending} pending; ` +
      `${totals.duration_ms} ms of agent time; ${totals.usage.input_tokens} tokens in, ${totals.usage.output_tokens} tokens out.`,
    "",
  );
  return lines.join("\n");
}

/** Summaries of workflow sessions. Reach it as `bus.aggregator`. */
export class ResultAggregator {
  constructor(private readonly sessions: SessionManager) {}

  /** The session's results as JSON (default) or Markdown text. An unknown session is NOT_FOUND. */
  summarize(sessionId: string, options: { format: "markdown" }): string;
  summarize(sessionId: string, options?: { format?: "json" }): SessionSummary;
  summarize(sessionId: string, options?: SummarizeOptions): SessionSummary | string;
  summarize(sessionId: string, options: SummarizeOptions = {}): SessionSummary | string {
    const session = this.sessions.getSession(sessionId);
    if (session === undefined) throw sessionNotFound(sessionId);
    const summary = summaryOf(session);
    return options.format === "markdown" ? markdownOf(summary) : summary;
  }
}
