/**
 * The selected actor's state chart: its machine's graph (`GET /actors/:id/graph`) laid out by ELK and drawn
 * with the same code as `troupe graph --format svg`, its active states highlighted and its last transition
 * drawn stronger, redrawn at each `actor.transition`.
 */
import { useEffect, useMemo, useState } from "preact/hooks";
import { layoutGraph, type GraphLayout } from "../../graph/layout.js";
import type { StateGraph } from "../../graph/state-graph.js";
import { drawSvg } from "../../graph/svg.js";
import { api } from "./api.js";
import { useModel } from "./hooks.js";
import { activeStateIds, type ActorNode, type Model } from "./model.js";

/** Layouts by machine (a workflow's, built for its steps, by actor): each is asked for and laid out once. */
const layouts = new Map<string, Promise<GraphLayout>>();

function layoutKeyOf(actor: ActorNode): string {
  return actor.machine !== undefined && actor.machine !== "workflow" ? `machine:${actor.machine}` : `actor:${actor.id}`;
}

function layoutOf(actor: ActorNode): Promise<GraphLayout> {
  const key = layoutKeyOf(actor);
  let layout = layouts.get(key);
  if (layout === undefined) {
    layout = api<StateGraph>("GET", `/actors/${encodeURIComponent(actor.id)}/graph`).then(layoutGraph);
    layouts.set(key, layout);
    layout.catch(() => layouts.delete(key));
  }
  return layout;
}

/** The deepest active state of a state as events carry it. */
function leafOf(state: string | undefined): string | undefined {
  return [...activeStateIds(state)].sort((a, b) => b.split(".").length - a.split(".").length)[0];
}

type Drawn = { key: string; layout: GraphLayout } | { key: string; error: string };

export function StateChart({ model, actorId }: { model: Model; actorId: string | undefined }) {
  useModel(model);
  const actor = actorId === undefined ? undefined : model.actors.get(actorId);
  const [drawn, setDrawn] = useState<Drawn | undefined>();
  const key = actor === undefined ? undefined : layoutKeyOf(actor);
  useEffect(() => {
    if (actor === undefined || key === undefined) return;
    let current = true;
    layoutOf(actor).then(
      (layout) => current && setDrawn({ key, layout }),
      (error: Error) => current && setDrawn({ key, error: error.message }),
    );
    return () => {
      current = false;
    };
  }, [key]);
  const state = actor?.state;
  const from = actor?.from;
  const svg = useMemo(() => {
    if (drawn === undefined || !("layout" in drawn) || drawn.key !== key) return "";
    const source = leafOf(from);
    const target = leafOf(state);
    return drawSvg(drawn.layout, { active: activeStateIds(state), ...(source !== undefined && target !== undefined ? { taken: { source, target } } : {}) });
  }, [drawn, key, state, from]);
  const error = drawn !== undefined && "error" in drawn && drawn.key === key ? drawn.error : undefined;
  return (
    <section class="panel chart" aria-label="State chart">
      <header>
        <h2>State chart</h2>
        {actor === undefined ? (
          <span class="hint">{actorId === undefined ? "select an actor in the tree" : `${actorId} has stopped`}</span>
        ) : (
          <span class="subject">
            <strong>{actor.id}</strong> · {actor.machine ?? "actor"} · <span data-testid="chart-state">{state ?? actor.status}</span>
          </span>
        )}
      </header>
      {actor !== undefined && actor.state === undefined ? (
        <p class="hint">
          {actor.machine ?? "This actor"} is not a state machine: it runs until it is done ({actor.status}).
        </p>
      ) : error !== undefined ? (
        <p class="error">{error}</p>
      ) : (
        <div class="drawing" data-machine={actor?.machine} dangerouslySetInnerHTML={{ __html: svg }} />
      )}
    </section>
  );
}
