/**
 * What the page knows, kept current from the event stream: the live actor tree (read once from `GET /actors`,
 * then changed by `actor.*` events after the listing's `seq`), the recent events, and the text each prompt
 * streamed. Views subscribe; changes are drawn at most once a frame.
 *
 * On a cluster node the stream has every node's events, but `GET /actors` lists this node's actors only: the tree
 * is this node's (its id from `GET /health`), and another node's `actor.*` events go to the log only (actor ids
 * are each node's own, and would collide).
 */
import { api, KeyRequired, readEvents, type StreamFrame } from "./api.js";

export interface ActorNode {
  id: string;
  parentId?: string;
  machine?: string;
  state?: string;
  status: string;
  /** When it last changed state (ms, page clock): the tree flashes recent changes. */
  changedAt: number;
  /** The state it left at its last transition. */
  from?: string;
}

interface ActorListing {
  seq: number;
  actors: Array<Omit<ActorNode, "changedAt">>;
  next_cursor?: string;
}

/** Events the log keeps. */
const LOG_SIZE = 2_000;
/** Actors the page reads from `GET /actors` at most (the stream adds those spawned later). */
const MAX_LISTED_ACTORS = 20_000;

export type Connection = "connecting" | "live" | "reconnecting" | "key";

export class Model {
  readonly actors = new Map<string, ActorNode>();
  readonly children = new Map<string, Set<string>>();
  readonly log: StreamFrame[] = [];
  /** Streamed text by request id, while its prompt runs. */
  readonly streamed = new Map<string, string>();
  connection: Connection = "connecting";
  /** Actors the first listing left out (past `MAX_LISTED_ACTORS`). */
  unlisted = 0;
  lastSeq = 0;
  /** The cluster node serving the page (undefined off a cluster): the node of the tree's actors. */
  nodeId: string | undefined;
  /** Bumped at every change: views compare it. */
  version = 0;
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(frame: StreamFrame) => void>();
  private scheduled = false;
  private abort: AbortController | undefined;

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Listens to every event as it comes (the playground follows its prompt). */
  onEvent(listener: (frame: StreamFrame) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  private changed(): void {
    this.version += 1;
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      for (const listener of this.listeners) listener();
    });
  }

  /**
   * Connects: subscribes to the stream first (keeping what comes), reads the tree, then applies what came
   * after the listing's seq. The subscription asks for every event the server still holds (`?since=0`): those
   * up to the listing's seq fill the log only (the listing has them already), so the log shows what happened
   * before the page loaded. Reconnects after a drop from the last seq seen; resolves false when a key is needed.
   */
  async connect(): Promise<boolean> {
    this.abort?.abort();
    const abort = new AbortController();
    this.abort = abort;
    this.connection = "connecting";
    this.changed();
    let early: StreamFrame[] | undefined = [];
    const streaming = readEvents(0, abort.signal, (frame) => (early === undefined ? this.apply(frame) : early.push(frame)));
    // Its failure is handled by `follow` (or dropped when the listing fails first): never an unhandled rejection.
    streaming.catch(() => undefined);
    try {
      await this.list();
    } catch (error) {
      abort.abort();
      if (error instanceof KeyRequired) return this.needKey();
      throw error;
    }
    this.log.length = 0;
    for (const frame of early) {
      if ((frame.seq ?? 0) > this.lastSeq) this.apply(frame);
      // Asked for everything held: a replay that does not reach back to seq 1 is expected, not news.
      else if (frame.seq !== undefined) this.record(frame);
    }
    early = undefined;
    this.connection = "live";
    this.changed();
    void this.follow(streaming, abort);
    return true;
  }

  private needKey(): false {
    this.connection = "key";
    this.changed();
    return false;
  }

  /** Keeps the stream open: when it ends or fails, reconnects from the last seq (a second later). */
  private async follow(streaming: Promise<void>, abort: AbortController): Promise<void> {
    for (;;) {
      try {
        await streaming;
      } catch (error) {
        if (error instanceof KeyRequired) {
          this.needKey();
          return;
        }
      }
      if (abort.signal.aborted) return;
      this.connection = "reconnecting";
      this.changed();
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      if (abort.signal.aborted) return;
      streaming = readEvents(this.lastSeq, abort.signal, (frame) => {
        if (this.connection !== "live") {
          this.connection = "live";
          this.changed();
        }
        this.apply(frame);
      });
      streaming.catch(() => undefined);
    }
  }

  private async list(): Promise<void> {
    this.nodeId = await serverNodeId();
    this.actors.clear();
    this.children.clear();
    let cursor: string | undefined;
    let seq: number | undefined;
    do {
      const page = await api<ActorListing>("GET", `/actors?limit=1000${cursor === undefined ? "" : `&cursor=${cursor}`}`);
      seq ??= page.seq;
      for (const actor of page.actors) this.add({ ...actor, changedAt: 0 });
      cursor = page.next_cursor;
    } while (cursor !== undefined && this.actors.size < MAX_LISTED_ACTORS);
    this.unlisted = cursor === undefined ? 0 : 1;
    this.lastSeq = seq ?? 0;
  }

  private add(actor: ActorNode): void {
    this.actors.set(actor.id, actor);
    if (actor.parentId === undefined) return;
    let siblings = this.children.get(actor.parentId);
    if (siblings === undefined) {
      siblings = new Set();
      this.children.set(actor.parentId, siblings);
    }
    siblings.add(actor.id);
  }

  private remove(id: string): void {
    const actor = this.actors.get(id);
    if (actor === undefined) return;
    for (const child of [...(this.children.get(id) ?? [])]) this.remove(child);
    this.children.delete(id);
    this.actors.delete(id);
    if (actor.parentId !== undefined) this.children.get(actor.parentId)?.delete(id);
  }

  /** One frame of the stream. */
  apply(frame: StreamFrame): void {
    if (frame.seq !== undefined) this.lastSeq = frame.seq;
    const id = this.isOwn(frame) ? frame.actorId : undefined;
    switch (frame.type) {
      case "actor.spawned":
        if (id !== undefined)
          this.add({
            id,
            status: "active",
            changedAt: performance.now(),
            ...(typeof frame.parentId === "string" ? { parentId: frame.parentId } : {}),
            ...(typeof frame.machine === "string" ? { machine: frame.machine } : {}),
            ...(typeof frame.state === "string" ? { state: frame.state } : {}),
          });
        break;
      case "actor.transition": {
        const actor = id === undefined ? undefined : this.actors.get(id);
        if (actor !== undefined) {
          actor.from = String(frame.from);
          actor.state = String(frame.to);
          actor.changedAt = performance.now();
        }
        break;
      }
      case "actor.stopped":
        if (id !== undefined) this.remove(id);
        break;
      case "prompt.delta": {
        const requestId = String(frame.requestId);
        this.streamed.set(requestId, (this.streamed.get(requestId) ?? "") + String(frame.delta));
        break;
      }
      case "overflow":
      case "missed":
        break;
    }
    this.record(frame);
    for (const listener of this.eventListeners) listener(frame);
    this.changed();
  }

  /** Whether the frame's event happened on the node serving the page (events off a cluster carry no node). */
  private isOwn(frame: StreamFrame): boolean {
    return frame.node === undefined || frame.node === this.nodeId;
  }

  /** Adds a frame to the log (the newest `LOG_SIZE` are kept). */
  private record(frame: StreamFrame): void {
    this.log.push(frame);
    if (this.log.length > LOG_SIZE) this.log.splice(0, this.log.length - LOG_SIZE);
  }
}

/** The id of the cluster node serving the page (`GET /health`'s `cluster.node`), or undefined off a cluster. */
async function serverNodeId(): Promise<string | undefined> {
  try {
    // A cluster node out of NATS or its store answers 503, with its id all the same.
    const health = (await (await fetch("/health")).json()) as { cluster?: { node?: unknown } };
    return typeof health.cluster?.node === "string" ? health.cluster.node : undefined;
  } catch {
    return undefined;
  }
}

/** The active state ids of a state as events carry it (`busy`, or JSON `{"running":"ready"}`), ancestors included. */
export function activeStateIds(state: string | undefined): Set<string> {
  const ids = new Set<string>();
  if (state === undefined) return ids;
  const visit = (value: unknown, prefix: string): void => {
    if (typeof value === "string") {
      ids.add(prefix + value);
      return;
    }
    if (value !== null && typeof value === "object") {
      for (const [key, inner] of Object.entries(value)) {
        ids.add(prefix + key);
        visit(inner, `${prefix}${key}.`);
      }
    }
  };
  if (state.startsWith("{")) {
    try {
      visit(JSON.parse(state), "");
    } catch {
      ids.add(state);
    }
  } else ids.add(state);
  return ids;
}
