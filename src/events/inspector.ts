/**
 * Turns XState's inspection stream into `actor.*` events, and tells the runtime about every actor's states.
 */
import type { AnyActor, AnyActorRef, EventObject, InspectionEvent } from "xstate";
import type { EventHub } from "./event-hub.js";

/** What the runtime wants to know about actors besides the event stream. */
export interface ActorObserver {
  /** An actor was created (before it starts). */
  created(actorRef: AnyActor): void;
  /**
   * A machine actor entered `to` (from `from`, undefined at start) or stopped (`to` undefined). `snapshot` is the
   * one the transition leads to (the actor's own is still the previous one while the transition is taken);
   * none when it stopped.
   */
  stateChanged(actorRef: AnyActor, from: string | undefined, to: string | undefined, snapshot?: { context?: unknown }): void;
  /**
   * A machine actor has a new snapshot (after each transition, at its start, and at its end when it is done
   * or failed; not when it is stopped): what the store writes from. Its actions, emitted events and delays of
   * that transition have run.
   */
  snapshot?(actorRef: AnyActor, snapshot: { status: string; value?: unknown; context?: unknown }): void;
}

interface InternalActorRef {
  _parent?: AnyActor;
  src?: unknown;
}

/** The parent of an actor. XState keeps it internal; troupe pins the XState version that has it. */
export function parentOf(actorRef: AnyActor): AnyActor | undefined {
  return (actorRef as unknown as InternalActorRef)._parent;
}

/** Where an actor's emitted events go: called as XState calls its actor scope's `emit`, a method of the scope. */
export type EmitRoute = (this: { self: AnyActorRef }, event: EventObject) => void;

/** An `EmitRoute` that hands each event and the actor that emitted it to `handler`. */
export function emitRoute(handler: (event: EventObject, actorRef: AnyActorRef) => void): EmitRoute {
  return function route(event) {
    handler(event, this.self);
  };
}

/**
 * Routes what an actor emits to `route` instead of to its listeners (`actor.on`): for the many actors only the
 * runtime listens to, one function shared by all of them instead of a listener set, a bound copy of the
 * listener and its closure on each (about 300 bytes per actor). Call it when the actor is created
 * (`ActorObserver.created`), before it can emit. XState keeps the scope internal; troupe pins the XState
 * version that has it.
 */
export function routeEmitted(actorRef: AnyActor, route: EmitRoute): void {
  (actorRef as unknown as { _actorScope: { emit: EmitRoute } })._actorScope.emit = route;
}

/** The logic name an actor was spawned or invoked from (`"session"`, `"runPrompt"`…), if any. */
export function sourceOf(actorRef: AnyActor): string | undefined {
  const src = (actorRef as unknown as InternalActorRef).src;
  return typeof src === "string" ? src : undefined;
}

/** The machine an actor runs: its source name, else the id of the machine logic (a workflow is built per session). */
export function machineOf(actorRef: AnyActor): string | undefined {
  const source = sourceOf(actorRef);
  if (source !== undefined) return source;
  return isMachineActor(actorRef) ? (actorRef.logic as { id?: string }).id : undefined;
}

function isMachineActor(actorRef: AnyActor): boolean {
  return "root" in actorRef.logic;
}

/**
 * The id an actor has in events: its system id when it has one (`supervisor`, a session's id, `message:<id>`,
 * `agent:<id>`); a shard's shard id (`shard-0`, `workflows-0`); else its id for machine actors, or its id under
 * its parent for others (a prompt run: `<sessionId>/prompt`).
 */
export function actorIdOf(actorRef: AnyActor): string {
  // A pooled child's local id is its slot in its shard; the system knows it by its system id.
  // Read from its options: XState sets `systemId` only after it reports the actor's creation.
  const options = (actorRef as unknown as { options?: { systemId?: string; input?: { shardId?: unknown } } }).options;
  const systemId = options?.systemId ?? actorRef.systemId;
  if (systemId !== undefined) return systemId;
  // A shard's local id is its number; it is spawned with the shard id it is known by (see `shardLocalId`).
  const shardId = options?.input?.shardId;
  if (typeof shardId === "string") return shardId;
  const parent = parentOf(actorRef);
  return parent === undefined || isMachineActor(actorRef) ? actorRef.id : `${actorIdOf(parent)}/${actorRef.id}`;
}

/** A machine actor's state as events carry it: its name, or JSON for nested or parallel states. */
export function stateKeyOf(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value !== null && typeof value === "object") return JSON.stringify(value);
  return undefined;
}

interface StateNodeView {
  key: string;
  type: string;
  states: Record<string, StateNodeView>;
  initial?: { target: StateNodeView[] };
}

/** The value a state node starts in: the chain of initial states below it (every region of a parallel one). */
function initialValueOf(node: StateNodeView): unknown {
  if (node.type === "parallel") return Object.fromEntries(Object.values(node.states).map((child) => [child.key, initialValueOf(child)]));
  const child = node.initial?.target[0];
  if (child === undefined) return undefined;
  const inner = Object.keys(child.states).length === 0 ? undefined : initialValueOf(child);
  return inner === undefined ? child.key : { [child.key]: inner };
}

/**
 * The state a machine actor will start in, known when it is created (before its first snapshot): the state
 * it is restored in, else its machine's initial state. Undefined for actors that are not machines.
 */
function initialStateOf(actorRef: AnyActor): string | undefined {
  const restored = (actorRef as unknown as { options?: { snapshot?: { value?: unknown } } }).options?.snapshot?.value;
  if (restored !== undefined) return stateKeyOf(restored);
  return isMachineActor(actorRef) ? stateKeyOf(initialValueOf((actorRef.logic as unknown as { root: StateNodeView }).root)) : undefined;
}

/** Creates the `inspect` callback of a runtime's root actor. */
export function createInspector(
  hub: EventHub,
  userInspect: ((event: InspectionEvent) => void) | undefined,
  observer: ActorObserver,
): (event: InspectionEvent) => void {
  const lastState = new WeakMap<AnyActor, string>();
  /** The state `actor.spawned` said a machine actor starts in, until its first snapshot confirms or corrects it. */
  const announcedState = new WeakMap<AnyActor, string>();
  /** Actors reported stopped: a failed one can be seen both by its error event and by its snapshot. */
  const stopped = new WeakSet<AnyActor>();
  const reportStopped = (actorRef: AnyActor, reason: string): void => {
    if (stopped.has(actorRef)) return;
    stopped.add(actorRef);
    const from = lastState.get(actorRef);
    lastState.delete(actorRef);
    observer.stateChanged(actorRef, from, undefined);
    // Every message's delivery actor passes here: its id and fields are built only for a listener.
    if (hub.wants("actor.stopped")) hub.emit("actor.stopped", actorIdOf(actorRef), { reason });
  };
  return (inspection) => {
    userInspect?.(inspection);
    const actorRef = inspection.actorRef as AnyActor;
    if (inspection.type === "@xstate.event") {
      // A machine actor that throws while it takes a transition fails without a snapshot: XState only sends
      // its parent `xstate.error.actor.<id>`, which is where it is seen to stop.
      const source = inspection.sourceRef as AnyActor | undefined;
      if (source !== undefined && lastState.has(source) && inspection.event.type === `xstate.error.actor.${source.id}`) reportStopped(source, "error");
      return;
    }
    if (inspection.type === "@xstate.actor") {
      observer.created(actorRef);
      if (hub.wants("actor.spawned")) {
        const parent = parentOf(actorRef);
        const machine = machineOf(actorRef);
        const state = initialStateOf(actorRef);
        if (state !== undefined) announcedState.set(actorRef, state);
        hub.emit("actor.spawned", actorIdOf(actorRef), {
          ...(parent ? { parentId: actorIdOf(parent) } : {}),
          ...(machine ? { machine } : {}),
          ...(state === undefined ? {} : { state }),
        });
      }
      return;
    }
    if (inspection.type === "@xstate.microstep") {
      // Microsteps are reported while the transition is taken, before its deferred effects (an invoked
      // prompt starting, its deltas) run, so transitions come out in the order they happen.
      const to = stateKeyOf((inspection.snapshot as { value?: unknown }).value);
      const from = lastState.get(actorRef);
      if (to === undefined || from === undefined || to === from) return;
      lastState.set(actorRef, to);
      observer.stateChanged(actorRef, from, to, inspection.snapshot as { context?: unknown });
      if (hub.wants("actor.transition")) hub.emit("actor.transition", actorIdOf(actorRef), { from, to, event: inspection.event.type });
      return;
    }
    if (inspection.type !== "@xstate.snapshot") return;
    const snapshot = inspection.snapshot as { status: string; value?: unknown; context?: { releaseReason?: string | null } };
    const from = lastState.get(actorRef);
    if (inspection.event.type !== "xstate.stop" && snapshot.value !== undefined) observer.snapshot?.(actorRef, snapshot);
    if (inspection.event.type === "xstate.stop" || snapshot.status === "done" || snapshot.status === "error") {
      reportStopped(actorRef, snapshot.context?.releaseReason ?? (inspection.event.type === "xstate.stop" ? "stopped" : snapshot.status));
      return;
    }
    // The first snapshot of a machine actor (its initial state).
    const initial = stateKeyOf(snapshot.value);
    if (from === undefined && initial !== undefined) {
      lastState.set(actorRef, initial);
      observer.stateChanged(actorRef, undefined, initial, snapshot);
      // Eventless transitions at start can leave a machine elsewhere than its initial state: say where.
      const announced = announcedState.get(actorRef);
      announcedState.delete(actorRef);
      if (announced !== undefined && announced !== initial && hub.wants("actor.transition")) {
        hub.emit("actor.transition", actorIdOf(actorRef), { from: announced, to: initial, event: "xstate.init" });
      }
    }
  };
}
