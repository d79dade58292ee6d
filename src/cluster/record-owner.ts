/**
 * Who owns the records a node writes in a cluster: the node's id (written into each workflow and bridge session
 * record it owns) and the fence of its writes (its node lease, src/cluster/ownership.ts). Nothing of NATS: the
 * session manager and the runtime take one without loading anything of NATS.
 */
import { BridgeError } from "../errors.js";
import type { Fence } from "../store/store.js";

/** The owner of the records of one node of a cluster. */
export interface RecordOwner {
  /** The node's id, as the records it owns name it (`node`). */
  readonly nodeId: string;
  /**
   * The fence of this node's writes while it holds its lease, `undefined` once it lost it: a node without its
   * lease writes nothing (its write is skipped), and a write of a tenure another node took over is refused.
   */
  fence(): Fence | undefined;
}

/**
 * Throws TRANSPORT (503, `unavailable`: as every refusal of a node without its lease, docs/cluster.md) when `owner`
 * does not hold its lease now: what it would create could not be stored, and would vanish with this node.
 */
export function checkOwnerHoldsLease(owner: RecordOwner | undefined): void {
  if (owner === undefined || owner.fence() !== undefined) return;
  throw new BridgeError("TRANSPORT", `Node ${owner.nodeId} does not hold its cluster lease now: create the session on another node, or again shortly`, {
    retryable: true,
    unavailable: true,
  });
}
