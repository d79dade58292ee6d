/**
 * Registrations across a cluster (docs/cluster.md, "Registrations on every node"). The shared store
 * (`agents/<id>`) is the truth; each node holds every registration, read from the store (all of them at its start,
 * each one since when it hears of it or meets it). A node that changes one (registers, re-registers, deregisters)
 * tells the others once the change is durable, on core NATS (`troupe.registrations`, the agent's id only), and every
 * node reads it again from the store: it is given, replaced or forgotten there at once.
 *
 * Core NATS delivers at most once, so a node may miss a nudge (it was cut from NATS, or the node that changed the
 * registration could not publish it). What bounds the damage: a node trusts a registration it read for at most
 * `maxAgeMs` (the lease time); its next use after that (a message to the agent, its token checked, its socket
 * opened) reads it again first. And a node whose connection to NATS comes back reads every registration again
 * (one list of the store), giving, replacing and forgetting what changed meanwhile.
 */
import type { Subscription } from "@nats-io/transport-node";
import type { Clock } from "../clock.js";
import type { ClusterNode } from "../cluster/node.js";
import { toBridgeError } from "../errors.js";
import { isAgentId } from "../protocol/envelope.js";
import type { StoredRegistration } from "./agent-registry.js";

const SUBJECT = "troupe.registrations";
/** How long telling the others may wait for the NATS server to confirm it has the nudge. */
const ANNOUNCE_FLUSH_MS = 2_000;

/** What the cluster's registrations need from the bus. */
export interface ClusterRegistrationsOptions {
  node: ClusterNode;
  clock: Pick<Clock, "now">;
  /** How long a registration read from the store is trusted without a nudge (the lease time). */
  maxAgeMs: number;
  /** Whether this node holds the agent's registration. */
  holds(agentId: string): boolean;
  /** Reads the agent's registration from the store (undefined when it has none). */
  read(agentId: string): Promise<StoredRegistration | undefined>;
  /** Reads every registration from the store (when NATS comes back). */
  readAll(): Promise<StoredRegistration[]>;
  /** The registrations this node holds. */
  held(): Iterable<string>;
  /** Makes what the store said this node's: the agent given its actor, or taken it and its socket. */
  apply(agentId: string, stored: StoredRegistration | undefined): void;
}

/** One agent's read under way: `again` when it must be read once more after it, `overtaken` when a change here came after it began. */
interface Reading {
  done: Promise<void>;
  again: boolean;
  overtaken: boolean;
}

/** This node's side of the registrations shared by the cluster. */
export class ClusterRegistrations {
  /** When (this node's clock) each registration held here was last read or written here: bounded by them. */
  private readonly checkedAt = new Map<string, number>();
  /** The reads under way, one per agent. */
  private readonly reading = new Map<string, Reading>();
  private readonly subscription: Subscription;
  private readonly stopFollowingState: () => void;
  /** Telling the others failed and said so: the next failures of the same outage are not reported again. */
  private announceFailing = false;
  /** While every registration is read again: the agents changed here since it began (their reads are newer). */
  private changedDuringResync: Set<string> | undefined;
  /** The read of every registration under way: another asking for one joins it. */
  private readingEverything: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly options: ClusterRegistrationsOptions) {
    const { node } = options;
    this.subscription = node.connection.nats.subscribe(SUBJECT, {
      callback: (error, message) => {
        if (error !== null) return;
        let nudge: { from?: unknown; agentId?: unknown };
        try {
          nudge = message.json();
        } catch {
          return;
        }
        const { from, agentId } = nudge ?? {};
        if (from === node.nodeId || !isAgentId(agentId)) return;
        // Stale from now on: a use that comes before the read below ends waits for a read of its own.
        this.checkedAt.delete(agentId);
        this.readInBackground(agentId);
      },
    });
    // The connection tells only changes: "connected" is NATS back after an outage, whose nudges are lost, so every
    // registration is read again.
    this.stopFollowingState = node.connection.onStateChange((state) => {
      if (state === "connected") void this.resync();
    });
  }

  /** Whether this node read (or wrote) the agent's registration within `maxAgeMs`. */
  isCurrent(agentId: string): boolean {
    const checkedAt = this.checkedAt.get(agentId);
    return checkedAt !== undefined && this.options.clock.now() - checkedAt < this.options.maxAgeMs;
  }

  /**
   * Reads the agents' registrations from the store and applies them here; a read of one already under way is
   * joined (and made again after it when it began before this call). Rejects with the store's error.
   */
  async read(agentIds: readonly string[]): Promise<void> {
    await Promise.all([...new Set(agentIds)].map((agentId) => this.readOne(agentId)));
  }

  /**
   * This node changed the agent's registration in memory (its store write enqueued): a read begun before does
   * not count, and the other nodes hear of it once `durable` resolves. Resolves once they were told (or that
   * failed, which is only reported: they read it again within `maxAgeMs`); never rejects.
   */
  changed(agentId: string, durable: Promise<void>): Promise<void> {
    const reading = this.reading.get(agentId);
    if (reading !== undefined) reading.overtaken = true;
    this.changedDuringResync?.add(agentId);
    if (this.options.holds(agentId)) this.checkedAt.set(agentId, this.options.clock.now());
    else this.checkedAt.delete(agentId);
    return durable.then(
      () => this.announce(agentId),
      () => undefined,
    );
  }

  /** Stops hearing nudges (the bus is stopping); reads under way apply nothing more. */
  stop(): void {
    this.stopped = true;
    this.subscription.unsubscribe();
    this.stopFollowingState();
  }

  private readOne(agentId: string): Promise<void> {
    const running = this.reading.get(agentId);
    if (running !== undefined) {
      running.again = true;
      return running.done;
    }
    const reading: Reading = { done: Promise.resolve(), again: false, overtaken: false };
    reading.done = (async () => {
      try {
        do {
          reading.again = false;
          reading.overtaken = false;
          // Begun while every registration is read again: newer than what that read will say of this one.
          const newerThan = this.changedDuringResync;
          const stored = await this.options.read(agentId);
          if (this.stopped) return;
          // Changed here after the read began: what the store said is older than what this node holds.
          if (reading.overtaken) {
            reading.again = true;
            continue;
          }
          this.options.apply(agentId, stored);
          newerThan?.add(agentId);
          if (stored === undefined) this.checkedAt.delete(agentId);
          else this.checkedAt.set(agentId, this.options.clock.now());
        } while (reading.again);
      } finally {
        this.reading.delete(agentId);
      }
    })();
    this.reading.set(agentId, reading);
    return reading.done;
  }

  /**
   * Reads every registration from the store and makes this node's what changed: given, replaced, or forgotten
   * (a deregistered agent's socket closed), each trusted for `maxAgeMs` from then on. Those changed here meanwhile,
   * or being read after a nudge, are left as they are. What a node does as it starts, and when NATS comes back.
   * Rejects with the store's error; one under way is joined (its outcome is the caller's too).
   */
  readEverything(): Promise<void> {
    this.readingEverything ??= this.readAllNow().finally(() => (this.readingEverything = undefined));
    return this.readingEverything;
  }

  private async readAllNow(): Promise<void> {
    const changed = new Set<string>();
    this.changedDuringResync = changed;
    try {
      const stored = await this.options.readAll();
      if (this.stopped) return;
      const now = this.options.clock.now();
      const present = new Set<string>();
      for (const registration of stored) {
        const agentId = registration.descriptor.agent_id;
        present.add(agentId);
        if (changed.has(agentId) || this.reading.has(agentId)) continue;
        this.options.apply(agentId, registration);
        this.checkedAt.set(agentId, now);
      }
      for (const agentId of [...this.options.held()]) {
        if (present.has(agentId) || changed.has(agentId) || this.reading.has(agentId)) continue;
        this.options.apply(agentId, undefined);
        this.checkedAt.delete(agentId);
      }
    } finally {
      this.changedDuringResync = undefined;
    }
  }

  /** `readEverything` after NATS came back: a failure is reported, and each registration is read again at its next use. */
  private async resync(): Promise<void> {
    try {
      await this.readEverything();
    } catch (error) {
      this.checkedAt.clear();
      process.emitWarning(`troupe: the registrations could not be read again after NATS came back: ${toBridgeError(error).message}; each is at its next use`, {
        code: "TROUPE_CLUSTER",
      });
    }
  }

  private readInBackground(agentId: string): void {
    this.readOne(agentId).catch((error: unknown) =>
      process.emitWarning(`troupe: the registration of ${agentId} could not be read again: ${toBridgeError(error).message}; it is at its next use`, {
        code: "TROUPE_CLUSTER",
      }),
    );
  }

  /** Tells the other nodes that the agent's registration changed; resolves once the NATS server has it (or it failed). */
  private async announce(agentId: string): Promise<void> {
    const { connection, nodeId } = this.options.node;
    let timer: NodeJS.Timeout | undefined;
    try {
      connection.nats.publish(SUBJECT, JSON.stringify({ from: nodeId, agentId }));
      if (connection.state() === "connected") {
        await Promise.race([
          connection.nats.flush(),
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${ANNOUNCE_FLUSH_MS} ms`)), ANNOUNCE_FLUSH_MS);
          }),
        ]);
      }
      this.announceFailing = false;
    } catch (error) {
      if (!this.announceFailing) {
        process.emitWarning(
          `troupe: the other nodes were not told that the registration of ${agentId} changed (${toBridgeError(error).message}): each reads it again at its first use of it after ${this.options.maxAgeMs} ms`,
          { code: "TROUPE_CLUSTER" },
        );
      }
      this.announceFailing = true;
    } finally {
      clearTimeout(timer);
    }
  }
}
