/**
 * The workflow view: the bus's workflow sessions (`GET /sessions`), and the chosen one's steps in order with
 * their agents and tasks, done, current or pending; read again at each `workflow.*` event.
 */
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import type { Model } from "./model.js";

interface WorkflowTask {
  task_id: string;
  step: string;
  agent_id: string;
  status: string;
}

export interface WorkflowSession {
  session_id: string;
  status: string;
  initiator: string;
  dispatch: string;
  workflow: { current_step: string | null; completed_steps: string[]; pending_steps: string[]; steps: Array<{ name: string; required_agents: string[] }> };
  tasks: WorkflowTask[];
  created_at: number;
  /** On a cluster: the node that runs it. */
  node?: string;
}

/** Workflows the view lists (the newest). */
const LISTED = 30;

function stepStatus(session: WorkflowSession, step: string): string {
  if (session.workflow.completed_steps.includes(step)) return "done";
  if (session.workflow.current_step === step) return session.status === "active" ? "current" : session.status;
  return session.status === "active" ? "pending" : "skipped";
}

export function Workflows({ model, selected, onSelect }: { model: Model; selected: string | undefined; onSelect: (id: string) => void }) {
  const [sessions, setSessions] = useState<WorkflowSession[]>([]);
  const [error, setError] = useState<string>();
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = (): void => {
      timer = undefined;
      // The newest; on a cluster, of the serving node (the cluster's are listed by id, not by age).
      const node = model.nodeId === undefined ? "" : `&node=${encodeURIComponent(model.nodeId)}`;
      api<{ sessions: WorkflowSession[] }>("GET", `/sessions?limit=${LISTED}&order=newest${node}`).then(
        (answer) => {
          setSessions(answer.sessions);
          setError(undefined);
        },
        (failure: Error) => setError(failure.message),
      );
    };
    // Once the page is live: on a cluster, it knows its node then (and asks for that node's workflows only).
    let live = false;
    const loadWhenLive = (): void => {
      const now = model.connection === "live";
      if (now && !live) load();
      live = now;
    };
    loadWhenLive();
    const unsubscribe = model.subscribe(loadWhenLive);
    const stop = model.onEvent((frame) => {
      if (frame.type.startsWith("workflow.") && timer === undefined) timer = setTimeout(load, 150);
    });
    return () => {
      stop();
      unsubscribe();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [model]);
  const shown = sessions.find((session) => session.session_id === selected) ?? sessions[0];
  return (
    <section class="panel workflows" aria-label="Workflows">
      <header>
        <h2>Workflows</h2>
        {error === undefined ? null : <span class="error">{error}</span>}
      </header>
      {sessions.length === 0 ? <p class="hint">No workflow yet: start one from the playground.</p> : null}
      <ul class="workflow-list">
        {sessions.map((session) => (
          <li
            key={session.session_id}
            class={session === shown ? "selected" : ""}
            onClick={() => onSelect(session.session_id)}
            data-workflow-id={session.session_id}
          >
            <span class={`badge status-${session.status}`}>{session.status}</span> {session.session_id.slice(0, 8)} · {session.workflow.current_step ?? "—"}
            {session.node === undefined ? null : <span class="node"> · {session.node}</span>}
          </li>
        ))}
      </ul>
      {shown === undefined ? null : (
        <ol class="steps" data-testid="workflow-steps" data-workflow-id={shown.session_id} data-status={shown.status}>
          {shown.workflow.steps.map((step) => {
            const tasks = shown.tasks.filter((task) => task.step === step.name);
            const status = stepStatus(shown, step.name);
            return (
              <li key={step.name} class={`step step-${status}`} data-step={step.name} data-step-status={status}>
                <strong>{step.name}</strong>
                <span class="agents">{step.required_agents.join(", ") || "no agent"}</span>
                <span class="tasks">{tasks.length === 0 ? status : tasks.map((task) => task.status).join(", ")}</span>
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}
