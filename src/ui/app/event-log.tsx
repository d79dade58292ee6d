/** The event log: the latest events of the stream, newest first, filtered by kind and by text. */
import { useState } from "preact/hooks";
import { displayId, type StreamFrame } from "./api.js";
import { useModel } from "./hooks.js";
import type { Model } from "./model.js";

const KINDS = ["all", "actor", "prompt", "tool", "message", "agent", "workflow", "worker", "server", "cluster"] as const;
/** Rows drawn at most (the log keeps more for filters). */
const SHOWN = 300;

function summaryOf(frame: StreamFrame): string {
  const { seq: _seq, ts: _ts, type: _type, actorId: _actorId, ...rest } = frame;
  const text = JSON.stringify(rest);
  // JSON writes U+001F (in a message's key) as an escape.
  const readable = displayId(text.replaceAll("\\u001f", "\u001f"));
  return readable.length > 200 ? `${readable.slice(0, 199)}…` : readable;
}

export function EventLog({ model }: { model: Model }) {
  useModel(model);
  const [kind, setKind] = useState<(typeof KINDS)[number]>("all");
  const [text, setText] = useState("");
  const needle = text.trim().toLowerCase();
  const rows: StreamFrame[] = [];
  for (let index = model.log.length - 1; index >= 0 && rows.length < SHOWN; index -= 1) {
    const frame = model.log[index]!;
    if (kind !== "all" && !frame.type.startsWith(`${kind}.`)) continue;
    if (needle !== "" && !JSON.stringify(frame).toLowerCase().includes(needle)) continue;
    rows.push(frame);
  }
  return (
    <section class="panel log" aria-label="Event log">
      <header>
        <h2>Events</h2>
        <select value={kind} onChange={(event) => setKind(event.currentTarget.value as (typeof KINDS)[number])} aria-label="Event kind">
          {KINDS.map((each) => (
            <option value={each}>{each}</option>
          ))}
        </select>
        <input
          type="search"
          placeholder="filter: session, agent, text"
          value={text}
          onInput={(event) => setText(event.currentTarget.value)}
          aria-label="Filter events"
        />
        <span class="hint">seq {model.lastSeq}</span>
      </header>
      <div class="events">
        <table>
          <tbody>
            {rows.map((frame) => (
              <tr key={frame.seq ?? `${frame.type}-${Math.random()}`} data-type={frame.type} data-seq={frame.seq}>
                <td class="seq">{frame.seq ?? ""}</td>
                <td class="time">{frame.ts === undefined ? "" : new Date(frame.ts).toLocaleTimeString()}</td>
                <td class="type">{frame.type}</td>
                <td class="actor">{displayId(frame.actorId ?? "")}</td>
                <td class="fields">{summaryOf(frame)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
