/**
 * The whole cluster's events on each node's event stream (docs/cluster.md): every event carries the id of the
 * node it happened on (`node`), and a node's `/events` (and so `/ui`) shows the events of every node.
 *
 * Events go between nodes over core NATS, on `troupe.events.<node>`, only while some node watches: a node whose
 * stream has subscribers says so on `troupe.events.watch` every few seconds, and every node publishes its events
 * for as long as it heard that lately. A node merges the others' events into its own numbering (`seq` is each
 * node's), never publishes an event it did not make (no loops), and builds nothing while nobody watches.
 *
 * A node's `cluster.*` events (rare and small) are always built: one made while no watch was heard since the node
 * (re)connected to NATS (its `cluster.node_joined`, its `cluster.nats_disconnected` and `_reconnected`) is kept, at
 * most `MAX_HELD_CLUSTER_EVENTS` of them for at most three watch periods, and published when the next watch is heard:
 * by then the watching node's subscription is known to NATS, so the event reaches it.
 */
import type { Subscription } from "@nats-io/transport-node";
import type { Clock } from "../clock.js";
import type { ClusterConnection } from "../cluster/nats-connection.js";
import { EventHub, RUNTIME_EVENT_TYPES, type RuntimeEvent, type RuntimeEventListener, type RuntimeEventType } from "./event-hub.js";

/** How often a watching node says so; a node publishes its events for three of these after it last heard it. */
const WATCH_EVERY_MS = 2_000;
const SUBJECT_PREFIX = "troupe.events";
const WATCH_SUBJECT = `${SUBJECT_PREFIX}.watch`;
const KNOWN_TYPES: ReadonlySet<unknown> = new Set(RUNTIME_EVENT_TYPES);
const CLUSTER_TYPES = RUNTIME_EVENT_TYPES.filter((type) => type.startsWith("cluster."));
/** The most `cluster.*` events kept for a watch to come (a node's own, between two watches): the oldest go first. */
const MAX_HELD_CLUSTER_EVENTS = 32;

/** What the event stream reads of its source: the hub's `on` and `lastSeq`. */
export type EventSource = Pick<EventHub, "on" | "lastSeq">;

/** A node's events and the other nodes', numbered here, for this node's event stream. */
export class ClusterEvents implements EventSource {
  /** The merged events, numbered on this node. */
  private readonly merged: EventHub;
  private listeners = 0;
  private connection: ClusterConnection | undefined;
  private nodeId = "";
  /** Stops listening to the runtime's hub: set while this node's events are wanted (here, or by a watching node). */
  private detachLocal: (() => void) | undefined;
  private remote: Subscription | undefined;
  private watches: Subscription | undefined;
  private watchTimer: unknown;
  /** Until when (this node's clock) another node watches: its events go out until then. */
  private watchedUntil = 0;
  private expiryTimer: unknown;
  /** This node's `cluster.*` events made while no watch was heard since it (re)connected, and when they were made. */
  private held: { payload: string; madeAt: number }[] = [];
  /** Stops following this node's `cluster.*` events and its connection's state: set while joined. */
  private detachCluster: (() => void) | undefined;

  constructor(
    private readonly local: EventHub,
    private readonly clock: Clock,
  ) {
    this.merged = new EventHub(clock);
  }

  get lastSeq(): number {
    return this.merged.lastSeq;
  }

  /** Joins the cluster: from now on events carry `nodeId`, and go to and come from the other nodes. */
  join(connection: ClusterConnection, nodeId: string): void {
    this.connection = connection;
    this.nodeId = nodeId;
    this.local.setNode(nodeId);
    this.watches = connection.nats.subscribe(WATCH_SUBJECT, {
      callback: (error, message) => {
        if (error !== null || message.string() === nodeId) return;
        this.watchedUntil = this.clock.now() + 3 * WATCH_EVERY_MS;
        this.followLocal();
        if (this.expiryTimer === undefined) this.expiryTimer = this.clock.setTimeout(() => this.checkWatched(), 3 * WATCH_EVERY_MS);
        this.publishHeld();
      },
    });
    const offClusterEvents = CLUSTER_TYPES.map((type) => this.local.on(type, (event) => this.onLocalCluster(event)));
    const offState = connection.onStateChange((state) => {
      // Until a watch is heard again, the watching nodes may not be back on NATS: what this node says is kept.
      if (state !== "connected") this.watchedUntil = 0;
    });
    this.detachCluster = () => {
      for (const off of offClusterEvents) off();
      offState();
    };
    if (this.listeners > 0) this.startWatching();
  }

  /** Leaves the cluster (the bus is stopping). */
  leave(): void {
    this.detachCluster?.();
    this.detachCluster = undefined;
    this.held = [];
    this.stopWatching();
    this.watches?.unsubscribe();
    this.watches = undefined;
    if (this.expiryTimer !== undefined) this.clock.clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    this.watchedUntil = 0;
    this.connection = undefined;
    this.local.setNode(undefined);
    if (this.listeners === 0) this.unfollowLocal();
  }

  on<T extends RuntimeEventType | "*">(type: T, listener: RuntimeEventListener<T>): () => void {
    const off = this.merged.on(type, listener);
    this.listeners += 1;
    if (this.listeners === 1) {
      this.followLocal();
      this.startWatching();
    }
    let removed = false;
    return () => {
      if (removed) return;
      removed = true;
      off();
      this.listeners -= 1;
      if (this.listeners > 0) return;
      this.stopWatching();
      if (this.clock.now() >= this.watchedUntil) this.unfollowLocal();
    };
  }

  private followLocal(): void {
    this.detachLocal ??= this.local.on("*", (event) => this.onLocal(event));
  }

  private unfollowLocal(): void {
    this.detachLocal?.();
    this.detachLocal = undefined;
  }

  /** No node watched for a while: this node's events stay here (and are built only for a listener here). */
  private checkWatched(): void {
    this.expiryTimer = undefined;
    const leftMs = this.watchedUntil - this.clock.now();
    if (leftMs > 0) {
      this.expiryTimer = this.clock.setTimeout(() => this.checkWatched(), leftMs);
      return;
    }
    if (this.listeners === 0) this.unfollowLocal();
  }

  private onLocal(event: RuntimeEvent): void {
    const { seq: _seq, type, actorId, ...stamped } = event;
    if (this.listeners > 0) this.merged.emit(type, actorId, stamped);
    // `cluster.*` events go out by `onLocalCluster`, watched or not.
    if (this.clock.now() >= this.watchedUntil || type.startsWith("cluster.")) return;
    this.publish(JSON.stringify({ type, actorId, ...stamped }));
  }

  /** One of this node's `cluster.*` events: published now while watched, else kept for the next watch heard. */
  private onLocalCluster(event: RuntimeEvent): void {
    const { seq: _seq, ...unnumbered } = event;
    const payload = JSON.stringify(unnumbered);
    if (this.clock.now() < this.watchedUntil && this.connection?.state() === "connected") {
      this.publish(payload);
      return;
    }
    this.held.push({ payload, madeAt: this.clock.now() });
    if (this.held.length > MAX_HELD_CLUSTER_EVENTS) this.held.shift();
  }

  /** A watch was heard: the `cluster.*` events kept for it go out, those older than three watch periods are dropped. */
  private publishHeld(): void {
    if (this.held.length === 0) return;
    const since = this.clock.now() - 3 * WATCH_EVERY_MS;
    const held = this.held;
    this.held = [];
    for (const { payload, madeAt } of held) if (madeAt >= since) this.publish(payload);
  }

  private publish(payload: string): void {
    const connection = this.connection;
    if (connection === undefined || connection.state() !== "connected") return;
    try {
      connection.nats.publish(`${SUBJECT_PREFIX}.node.${Buffer.from(this.nodeId).toString("base64url")}`, payload);
    } catch {
      // NATS is closing: the other nodes miss this event, as they would any event of a node they cannot reach.
    }
  }

  /** This node has subscribers: it hears the other nodes' events, and tells them to send them. */
  private startWatching(): void {
    const connection = this.connection;
    if (connection === undefined || this.remote !== undefined) return;
    const own = `${SUBJECT_PREFIX}.node.${Buffer.from(this.nodeId).toString("base64url")}`;
    this.remote = connection.nats.subscribe(`${SUBJECT_PREFIX}.node.*`, {
      callback: (error, message) => {
        if (error !== null || message.subject === own || this.listeners === 0) return;
        let event: RuntimeEvent & { node?: string };
        try {
          event = message.json();
        } catch {
          return;
        }
        if (!KNOWN_TYPES.has(event?.type) || typeof event.actorId !== "string" || typeof event.node !== "string") return;
        const { type, actorId, ...fields } = event;
        this.merged.emit(type, actorId, fields);
      },
    });
    const announce = (): void => {
      try {
        connection.nats.publish(WATCH_SUBJECT, this.nodeId);
      } catch {
        // Closing: nobody to tell.
      }
      this.watchTimer = this.clock.setTimeout(announce, WATCH_EVERY_MS);
    };
    announce();
  }

  private stopWatching(): void {
    this.remote?.unsubscribe();
    this.remote = undefined;
    if (this.watchTimer !== undefined) this.clock.clearTimeout(this.watchTimer);
    this.watchTimer = undefined;
  }
}
