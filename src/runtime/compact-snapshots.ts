/**
 * Machine snapshots that share what is the same in all of them, for actors that sit idle in great numbers.
 *
 * Every snapshot XState 5 makes holds a `tags` set, a `historyValue` record, a `children` record and the
 * array of its active state nodes, each new, even when empty or the same as in every other actor of the
 * machine: about 380 bytes of an idle session's heap (a `Set` and its table alone are 150). XState never
 * changes them in place (it builds new ones for the next snapshot), so one frozen empty record, one empty tag
 * set and one node array per state serve every actor of the logic. The snapshots are otherwise XState's own:
 * nothing is copied out of them.
 */
import type { AnyStateMachine, AnyStateNode } from "xstate";

interface SnapshotParts {
  tags: Set<string>;
  historyValue: Record<string, unknown>;
  children: Record<string, unknown>;
  _nodes: AnyStateNode[];
}

const NO_TAGS: Set<string> = new Set();
const NOTHING: Record<string, unknown> = Object.freeze({});

function isEmpty(record: Record<string, unknown>): boolean {
  for (const _key in record) return false;
  return true;
}

/** The logic of `machine` with the parts of its snapshots shared (see above); spawn it in place of `machine`. */
export function compactSnapshots<TMachine extends AnyStateMachine>(machine: TMachine): TMachine {
  /** One array per configuration of active states, found by its last (deepest) node. */
  const nodeArrays = new Map<AnyStateNode, AnyStateNode[]>();
  const sharedNodes = (nodes: AnyStateNode[]): AnyStateNode[] => {
    const last = nodes[nodes.length - 1];
    if (last === undefined) return nodes;
    const known = nodeArrays.get(last);
    if (known === undefined) {
      const shared = Object.freeze([...nodes]) as AnyStateNode[];
      nodeArrays.set(last, shared);
      return shared;
    }
    return known.length === nodes.length && known.every((node, index) => node === nodes[index]) ? known : nodes;
  };
  const compact = <T>(snapshot: T): T => {
    const parts = snapshot as unknown as SnapshotParts;
    if (parts.tags.size === 0) parts.tags = NO_TAGS;
    if (isEmpty(parts.historyValue)) parts.historyValue = NOTHING;
    if (isEmpty(parts.children)) parts.children = NOTHING;
    parts._nodes = sharedNodes(parts._nodes);
    return snapshot;
  };
  const logic = Object.create(machine) as TMachine;
  logic.getInitialSnapshot = (actorScope, input) => compact(machine.getInitialSnapshot(actorScope, input));
  logic.transition = (snapshot, event, actorScope) => compact(machine.transition(snapshot, event, actorScope));
  return logic;
}
