/**
 * troupe's visualizer and playground (SPEC §6), served at `/ui` by the bus: the live actor tree, the selected
 * actor's state chart, the workflows, the playground and the event log, all from the server's own API.
 */
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { storeKey } from "./api.js";
import { ActorTree } from "./tree.js";
import { StateChart } from "./chart.js";
import { EventLog } from "./event-log.js";
import { useModel } from "./hooks.js";
import { Model } from "./model.js";
import { Playground } from "./playground.js";
import { Workflows } from "./workflows.js";
import "./app.css";

function KeyPrompt({ refused, onKey }: { refused: boolean; onKey: () => void }) {
  const [key, setKey] = useState("");
  return (
    <form
      class="key-prompt"
      onSubmit={(event) => {
        event.preventDefault();
        storeKey(key);
        onKey();
      }}
    >
      <h1>troupe</h1>
      <p>This server needs its API key (the `x-agent-api-key` of `troupe serve --api-key`). It is kept in this tab only.</p>
      {refused ? <p class="error">That key was refused.</p> : null}
      <input type="password" value={key} onInput={(event) => setKey(event.currentTarget.value)} placeholder="API key" aria-label="API key" autoFocus />
      <button type="submit">Connect</button>
    </form>
  );
}

function App() {
  const model = useMemo(() => new Model(), []);
  useModel(model);
  const [selected, setSelected] = useState<string>();
  const [workflow, setWorkflow] = useState<string>();
  const [attempts, setAttempts] = useState(0);
  const [failure, setFailure] = useState<string>();
  useEffect(() => {
    model.connect().catch((error: Error) => setFailure(error.message));
  }, [attempts]);
  if (model.connection === "key") return <KeyPrompt refused={attempts > 0} onKey={() => setAttempts(attempts + 1)} />;
  const select = (id: string): void => {
    setSelected(id);
    if (model.actors.get(id)?.machine === "workflow") setWorkflow(id);
  };
  return (
    <div class="app">
      <header class="top">
        <h1>troupe</h1>
        <span class={`connection connection-${model.connection}`} data-testid="connection">
          {model.connection}
        </span>
        {failure === undefined ? null : <span class="error">{failure}</span>}
      </header>
      <ActorTree model={model} selected={selected} onSelect={select} />
      <main class="center">
        <StateChart model={model} actorId={selected} />
        <Workflows
          model={model}
          selected={workflow}
          onSelect={(id) => {
            setWorkflow(id);
            if (model.actors.has(id)) setSelected(id);
          }}
        />
      </main>
      <Playground
        model={model}
        onSelect={setSelected}
        onWorkflow={(id) => {
          setWorkflow(id);
          setSelected(id);
        }}
      />
      <EventLog model={model} />
    </div>
  );
}

render(<App />, document.getElementById("app")!);
