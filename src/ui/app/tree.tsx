/**
 * The live actor tree: supervisor → shards and pools → sessions, workflows, deliveries, agents, prompt runs.
 * Virtualized (only the rows in view are in the page), so 100,000 actors cost what 40 do; a filter shows the
 * matching actors flat; a parent can be folded.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { displayId } from "./api.js";
import { useModel } from "./hooks.js";
import type { ActorNode, Model } from "./model.js";

const ROW_HEIGHT = 24;
/** Rows drawn above and below the visible ones, so a scroll does not show a gap. */
const OVERSCAN = 12;

interface Row {
  actor: ActorNode;
  depth: number;
  childCount: number;
}

function rowsOf(model: Model, folded: ReadonlySet<string>, filter: string): Row[] {
  const rows: Row[] = [];
  const needle = filter.trim().toLowerCase();
  if (needle !== "") {
    for (const actor of model.actors.values()) {
      const text = `${actor.id} ${actor.machine ?? ""} ${actor.state ?? ""}`.toLowerCase();
      if (text.includes(needle)) rows.push({ actor, depth: 0, childCount: model.children.get(actor.id)?.size ?? 0 });
    }
    return rows;
  }
  const visit = (actor: ActorNode, depth: number): void => {
    const children = model.children.get(actor.id);
    rows.push({ actor, depth, childCount: children?.size ?? 0 });
    if (children === undefined || folded.has(actor.id)) return;
    for (const childId of children) {
      const child = model.actors.get(childId);
      if (child !== undefined) visit(child, depth + 1);
    }
  };
  for (const actor of model.actors.values()) {
    if (actor.parentId === undefined || !model.actors.has(actor.parentId)) visit(actor, 0);
  }
  return rows;
}

/** The state shown for an actor: its state, or its status for actors that are not machines. */
function stateText(actor: ActorNode): string {
  if (actor.state === undefined) return actor.status;
  return actor.state.startsWith("{") ? actor.state.replace(/[{}"]/g, "").replace(/:/g, ".") : actor.state;
}

export function ActorTree({ model, selected, onSelect }: { model: Model; selected: string | undefined; onSelect: (id: string) => void }) {
  const version = useModel(model);
  const [folded, setFolded] = useState<ReadonlySet<string>>(new Set());
  const [filter, setFilter] = useState("");
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  const viewport = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = viewport.current;
    if (element === null) return;
    const observer = new ResizeObserver(() => setHeight(element.clientHeight));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  const rows = useMemo(() => rowsOf(model, folded, filter), [version, folded, filter]);
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(rows.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
  const now = performance.now();
  const toggle = (id: string): void => {
    const next = new Set(folded);
    if (!next.delete(id)) next.add(id);
    setFolded(next);
  };
  return (
    <section class="panel tree" aria-label="Actors">
      <header>
        <h2>
          Actors{" "}
          <span class="count" data-testid="actor-count">
            {model.actors.size}
          </span>
        </h2>
        <input
          type="search"
          placeholder="filter: id, machine, state"
          value={filter}
          onInput={(event) => setFilter(event.currentTarget.value)}
          aria-label="Filter actors"
        />
      </header>
      <div class="rows" ref={viewport} onScroll={(event) => setScrollTop(event.currentTarget.scrollTop)}>
        <div style={{ height: `${rows.length * ROW_HEIGHT}px`, position: "relative" }}>
          {rows.slice(first, last).map((row, index) => {
            const { actor } = row;
            const recent = now - actor.changedAt < 1_500;
            const state = stateText(actor);
            return (
              <div
                key={actor.id}
                class={`row${actor.id === selected ? " selected" : ""}${recent ? " recent" : ""}`}
                style={{ top: `${(first + index) * ROW_HEIGHT}px`, paddingLeft: `${6 + row.depth * 14}px` }}
                data-actor-id={actor.id}
                data-state={state}
                onClick={() => onSelect(actor.id)}
                title={displayId(actor.id)}
              >
                {row.childCount > 0 ? (
                  <button
                    class="fold"
                    aria-label={folded.has(actor.id) ? "Unfold" : "Fold"}
                    onClick={(event) => {
                      event.stopPropagation();
                      toggle(actor.id);
                    }}
                  >
                    {folded.has(actor.id) ? "▸" : "▾"}
                  </button>
                ) : (
                  <span class="fold" />
                )}
                <span class="id">{displayId(actor.id)}</span>
                {actor.machine === undefined ? null : <span class="machine">{actor.machine}</span>}
                {row.childCount > 0 ? <span class="children">{row.childCount}</span> : null}
                <span class={`state state-${state.split(".")[0]}`}>{state}</span>
              </div>
            );
          })}
        </div>
      </div>
      {model.unlisted > 0 ? <footer>Showing the first 20,000 actors listed, and every one spawned since.</footer> : null}
    </section>
  );
}
