/**
 * The live actor tree read from the actors themselves (their snapshots and children), never from a copy:
 * what `GET /actors` lists and `/ui` draws. Ids are those of the event stream (`actorIdOf`), so a client
 * keeps the tree current from `actor.spawned`, `actor.transition` and `actor.stopped`.
 */
import type { AnyActor, AnyStateMachine } from "xstate";
import { actorIdOf, machineOf, stateKeyOf } from "./inspector.js";

/** One live actor. */
export interface ActorView {
  /** Its id in events. */
  id: string;
  /** Its parent's id; absent for the root (`supervisor`). */
  parentId?: string;
  /** The machine or logic it runs (`session`, `delivery`, `runPrompt`…), when known. */
  machine?: string;
  /** A machine actor's state, as `actor.transition` reports it (a string, or JSON for nested states). */
  state?: string;
  /** `active`, `done`, `error` or `stopped`. */
  status: string;
}

interface SnapshotView {
  status: string;
  value?: unknown;
  children?: Record<string, AnyActor | undefined>;
}

function snapshotOf(actorRef: AnyActor): SnapshotView {
  return actorRef.getSnapshot() as SnapshotView;
}

/** Every actor below `root` (and `root` itself), parents before their children, in spawn order. */
export function* actorViews(root: AnyActor): Generator<() => ActorView> {
  const pending: Array<{ actorRef: AnyActor; parentId: string | undefined }> = [{ actorRef: root, parentId: undefined }];
  for (let next = 0; next < pending.length; next += 1) {
    const { actorRef, parentId } = pending[next]!;
    const snapshot = snapshotOf(actorRef);
    const id = actorIdOf(actorRef);
    yield () => {
      const machine = machineOf(actorRef);
      const state = stateKeyOf(snapshot.value);
      return {
        id,
        ...(parentId === undefined ? {} : { parentId }),
        ...(machine === undefined ? {} : { machine }),
        ...(state === undefined ? {} : { state }),
        status: snapshot.status,
      };
    };
    for (const child of Object.values(snapshot.children ?? {})) if (child !== undefined) pending.push({ actorRef: child, parentId: id });
  }
}

/** The actor with this event id below `root`: a system id is found at once, any other by a walk. */
export function findActor(root: AnyActor, id: string): AnyActor | undefined {
  const bySystemId = root.system.get(id) as AnyActor | undefined;
  if (bySystemId !== undefined) return bySystemId;
  const pending = [root];
  for (let next = 0; next < pending.length; next += 1) {
    const actorRef = pending[next]!;
    if (actorIdOf(actorRef) === id) return actorRef;
    for (const child of Object.values(snapshotOf(actorRef).children ?? {})) if (child !== undefined) pending.push(child);
  }
  return undefined;
}

/** The machine an actor runs, if it is a machine actor (a workflow's is built for its steps). */
export function machineLogicOf(actorRef: AnyActor): AnyStateMachine | undefined {
  return "root" in actorRef.logic ? (actorRef.logic as AnyStateMachine) : undefined;
}
