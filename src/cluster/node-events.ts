/**
 * What a node reports of its part in its cluster: `cluster.*` events on the runtime's hub (docs/cluster.md,
 * "Cluster events"), so that they reach the node's log, its `/events` and `/ui`, and the other nodes' streams
 * through the cluster's event fan-out (src/events/cluster-events.ts). Each carries `node`, and its actor is the
 * node (`node:<id>`).
 */
import type { Clock } from "../clock.js";
import type { ClusterEventType, EventHub, RuntimeEventMap } from "../events/event-hub.js";
import type { ClusterConnection } from "./nats-connection.js";

/** Reports one happening of this node: the event's fields but `node`, which it adds. */
export type ClusterAnnounce = <T extends ClusterEventType>(type: T, fields: Omit<RuntimeEventMap[T], "node">) => void;

/** The announcer of node `nodeId`'s events on `hub`. */
export function clusterAnnouncer(hub: Pick<EventHub, "emit">, nodeId: string): ClusterAnnounce {
  const actorId = `node:${nodeId}`;
  return (type, fields) => hub.emit(type, actorId, { ...fields, node: nodeId } as RuntimeEventMap[typeof type]);
}

/**
 * Announces each loss of the node's connection to NATS (`cluster.nats_disconnected`) and its return
 * (`cluster.nats_reconnected`, with how long it was down on `clock`). Answers the function that stops following.
 */
export function announceNatsState(connection: ClusterConnection, announce: ClusterAnnounce, clock: Pick<Clock, "now">): () => void {
  let downSince: number | undefined;
  return connection.onStateChange((state) => {
    if (state === "disconnected") {
      downSince = clock.now();
      announce("cluster.nats_disconnected", { server: connection.server() });
    } else if (state === "connected" && downSince !== undefined) {
      announce("cluster.nats_reconnected", { server: connection.server(), downMs: clock.now() - downSince });
      downSince = undefined;
    }
  });
}
