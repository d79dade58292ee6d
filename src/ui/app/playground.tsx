/**
 * The playground: talk to the team as a user does (`POST /converse`), or pick an agent, open a session, prompt it and watch the answer stream (its `prompt.delta`
 * events) while its actor moves busy → idle in the tree and the chart; start a workflow from a form.
 * Everything goes through the bus's own API: `POST /bridge/*` and `POST /sessions`.
 */
import { useEffect, useState } from "preact/hooks";
import { api } from "./api.js";
import { useModel } from "./hooks.js";
import type { Model } from "./model.js";

interface AgentDescriptor {
  id: string;
  name: string;
  description: string;
  status: string;
  defaultProvider?: string;
}

interface PromptResult {
  text: string;
  stopReason: string;
  usage?: { inputTokens: number; outputTokens: number };
}

/** Who starts a workflow from the page: the bus's orchestrator endpoint, which needs no socket. */
const INITIATOR = "troupe://orchestrator";

function busIdOf(agentId: string): string {
  return agentId.includes("://") ? agentId : `troupe://${agentId}`;
}

interface StepRow {
  name: string;
  agent: string;
  task: string;
}

function SessionPanel({ model, agents, onSelect }: { model: Model; agents: AgentDescriptor[]; onSelect: (id: string) => void }) {
  useModel(model);
  const [agentId, setAgentId] = useState<string>("");
  const [sessionId, setSessionId] = useState<string>();
  const [prompt, setPrompt] = useState("Say hello in five words");
  const [requestId, setRequestId] = useState<string>();
  const [result, setResult] = useState<PromptResult>();
  const [error, setError] = useState<string>();
  const chosen = agentId !== "" ? agentId : (agents[0]?.id ?? "");
  const session = sessionId === undefined ? undefined : model.actors.get(sessionId);
  const running = requestId !== undefined && result === undefined && error === undefined;
  const streamed = requestId === undefined ? "" : (model.streamed.get(requestId) ?? "");

  const failed = (failure: Error): void => setError(failure.message);
  const open = (): void => {
    setError(undefined);
    api<{ sessionId: string }>("POST", "/bridge/sessions_create", { agentId: chosen }).then((created) => {
      setSessionId(created.sessionId);
      setResult(undefined);
      setRequestId(undefined);
      onSelect(created.sessionId);
    }, failed);
  };
  const send = (event: Event): void => {
    event.preventDefault();
    if (sessionId === undefined) return;
    const id = crypto.randomUUID();
    setRequestId(id);
    setResult(undefined);
    setError(undefined);
    onSelect(sessionId);
    api<PromptResult>("POST", "/bridge/sessions_prompt", { sessionId, prompt, requestId: id }).then(setResult, failed);
  };
  const cancel = (): void => {
    if (sessionId !== undefined) api("POST", "/bridge/sessions_cancel", { sessionId }).catch(failed);
  };
  const close = (): void => {
    if (sessionId === undefined) return;
    api("POST", "/bridge/sessions_close", { sessionId }).then(() => {
      setSessionId(undefined);
      setRequestId(undefined);
      setResult(undefined);
    }, failed);
  };
  return (
    <div class="card">
      <h3>Session</h3>
      <div class="line">
        <label>
          Agent{" "}
          <select value={chosen} onChange={(event) => setAgentId(event.currentTarget.value)} aria-label="Agent" data-testid="agent-select">
            {agents.map((agent) => (
              <option value={agent.id} title={agent.description}>
                {agent.name === agent.id ? agent.id : `${agent.name} (${agent.id})`}
              </option>
            ))}
          </select>
        </label>
        <button onClick={open} disabled={chosen === ""} data-testid="open-session">
          Open session
        </button>
      </div>
      {sessionId === undefined ? null : (
        <>
          <p class="session-line">
            <span class="mono" data-testid="session-id" onClick={() => onSelect(sessionId)}>
              {sessionId}
            </span>{" "}
            <span class={`state state-${session?.state ?? "gone"}`} data-testid="session-state">
              {session?.state ?? "closed"}
            </span>
            <button class="small" onClick={close}>
              Close
            </button>
          </p>
          <form onSubmit={send}>
            <textarea value={prompt} rows={3} onInput={(event) => setPrompt(event.currentTarget.value)} aria-label="Prompt" data-testid="prompt" />
            <div class="line">
              <button type="submit" disabled={running || session === undefined} data-testid="send-prompt">
                Send
              </button>
              <button type="button" onClick={cancel} disabled={!running}>
                Cancel
              </button>
            </div>
          </form>
        </>
      )}
      {requestId === undefined ? null : (
        <div class="answer">
          <pre data-testid="answer">
            {result?.text ?? streamed}
            {running ? <span class="caret">▍</span> : null}
          </pre>
          {result === undefined ? null : (
            <p class="hint" data-testid="usage">
              {result.stopReason}
              {result.usage === undefined ? "" : ` · ${result.usage.inputTokens} in / ${result.usage.outputTokens} out tokens`}
            </p>
          )}
        </div>
      )}
      {error === undefined ? null : <p class="error">{error}</p>}
    </div>
  );
}

function WorkflowForm({ agents, onStarted }: { agents: AgentDescriptor[]; onStarted: (id: string) => void }) {
  const first = agents[0]?.id ?? "";
  const [rows, setRows] = useState<StepRow[]>(() =>
    ["design", "implementation", "review"].map((name) => ({ name, agent: "", task: `Do the ${name} of a todo-list app` })),
  );
  const [error, setError] = useState<string>();
  const [started, setStarted] = useState<string>();
  const update = (index: number, change: Partial<StepRow>): void => setRows(rows.map((row, at) => (at === index ? { ...row, ...change } : row)));
  const start = (event: Event): void => {
    event.preventDefault();
    setError(undefined);
    const steps = rows.map((row) => ({ name: row.name.trim(), required_agents: [busIdOf(row.agent || first)], task: row.task }));
    // The initiator is a participant already: listing it again is refused, and it may do a step like any other.
    const participants = [...new Set(steps.flatMap((step) => step.required_agents))]
      .filter((agentId) => agentId !== INITIATOR)
      .map((agent_id) => ({ agent_id, role: "worker" }));
    api<{ session_id: string }>("POST", "/sessions", { initiator: INITIATOR, participants, steps, dispatch: "auto" }).then(
      (created) => {
        setStarted(created.session_id);
        onStarted(created.session_id);
      },
      (failure: Error) => setError(failure.message),
    );
  };
  return (
    <form class="card" onSubmit={start} data-testid="workflow-form">
      <h3>Workflow</h3>
      {rows.map((row, index) => (
        <div class="step-row">
          <input
            class="step-name"
            value={row.name}
            onInput={(event) => update(index, { name: event.currentTarget.value })}
            aria-label={`Step ${index + 1} name`}
          />
          <select
            class="step-agent"
            value={row.agent || first}
            onChange={(event) => update(index, { agent: event.currentTarget.value })}
            aria-label={`Step ${index + 1} agent`}
          >
            {agents.map((agent) => (
              <option value={agent.id}>{agent.id}</option>
            ))}
          </select>
          <input
            class="step-task"
            value={row.task}
            onInput={(event) => update(index, { task: event.currentTarget.value })}
            aria-label={`Step ${index + 1} task`}
          />
          <button
            type="button"
            class="small step-remove"
            onClick={() => setRows(rows.filter((_, at) => at !== index))}
            disabled={rows.length === 1}
            aria-label="Remove step"
          >
            −
          </button>
        </div>
      ))}
      <div class="line">
        <button type="button" class="small" onClick={() => setRows([...rows, { name: `step-${rows.length + 1}`, agent: "", task: "" }])}>
          + step
        </button>
        <button type="submit" disabled={first === ""} data-testid="start-workflow">
          Start workflow
        </button>
        {started === undefined ? null : <span class="hint mono">{started.slice(0, 8)} started</span>}
      </div>
      {error === undefined ? null : <p class="error">{error}</p>}
    </form>
  );
}

interface ConverseResult {
  agentId: string;
  sessionId: string;
  text: string;
  handoffs: string[];
}

interface Turn {
  text: string;
  threadId: string;
  answer?: ConverseResult;
  error?: string;
}

/** A conversation as a person has it (`POST /converse`): `@agent` addresses an agent, threads keep their own. */
function ConversationPanel({ onSelect }: { onSelect: (id: string) => void }) {
  const [userId, setUserId] = useState("you");
  const [threadId, setThreadId] = useState("main");
  const [text, setText] = useState("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const pending = turns.some((turn) => turn.answer === undefined && turn.error === undefined);
  const send = (event: Event): void => {
    event.preventDefault();
    if (text.trim() === "") return;
    const turn: Turn = { text, threadId };
    setTurns((all) => [...all, turn]);
    setText("");
    const settle = (change: Partial<Turn>): void => setTurns((all) => all.map((each) => (each === turn ? { ...each, ...change } : each)));
    api<ConverseResult>("POST", "/converse", { userId, threadId, text }).then(
      (answer) => {
        settle({ answer });
        onSelect(answer.sessionId);
      },
      (failure: Error) => settle({ error: failure.message }),
    );
  };
  return (
    <form class="card conversation" onSubmit={send} data-testid="conversation">
      <h3>Conversation</h3>
      <div class="line">
        <label>
          User <input value={userId} size={8} onInput={(event) => setUserId(event.currentTarget.value)} aria-label="User" />
        </label>
        <label>
          Thread <input value={threadId} size={8} onInput={(event) => setThreadId(event.currentTarget.value)} aria-label="Thread" />
        </label>
      </div>
      <ol class="turns">
        {turns.map((turn) => (
          <li class="turn" data-testid="turn">
            <p class="said">
              <span class="hint">{turn.threadId} ›</span> {turn.text}
            </p>
            {turn.answer !== undefined ? (
              <p class="answered">
                <strong data-testid="turn-agent">{turn.answer.agentId}</strong>
                {turn.answer.handoffs.length === 0 ? "" : <span class="hint"> (asked {turn.answer.handoffs.join(", ")})</span>}:{" "}
                <span data-testid="turn-text">{turn.answer.text}</span>
              </p>
            ) : turn.error !== undefined ? (
              <p class="error">{turn.error}</p>
            ) : (
              <p class="hint">…</p>
            )}
          </li>
        ))}
      </ol>
      <div class="line">
        <input
          class="grow"
          value={text}
          onInput={(event) => setText(event.currentTarget.value)}
          placeholder="Message; @agent to address one"
          aria-label="Message"
        />
        <button type="submit" disabled={pending || text.trim() === ""} data-testid="send-message">
          Send
        </button>
      </div>
    </form>
  );
}

export function Playground({ model, onSelect, onWorkflow }: { model: Model; onSelect: (id: string) => void; onWorkflow: (id: string) => void }) {
  const [agents, setAgents] = useState<AgentDescriptor[]>([]);
  const [error, setError] = useState<string>();
  useEffect(() => {
    api<{ agents: AgentDescriptor[] }>("POST", "/bridge/agents_discover", {}).then(
      (answer) => setAgents(answer.agents),
      (failure: Error) => setError(failure.message),
    );
  }, []);
  return (
    <section class="panel playground" aria-label="Playground">
      <header>
        <h2>Playground</h2>
        {error === undefined ? null : <span class="error">{error}</span>}
      </header>
      <ConversationPanel onSelect={onSelect} />
      <SessionPanel model={model} agents={agents} onSelect={onSelect} />
      <WorkflowForm agents={agents} onStarted={onWorkflow} />
    </section>
  );
}
