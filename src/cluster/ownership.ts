/**
 * Who runs what in a cluster (docs/cluster.md, "Ownership and failover"): each node holds one lease,
 * `node:<nodeId>`, and runs the workflows and bridge sessions whose records name it. The lease fences every write
 * of those records; a keeper renews it every third of the lease time and, the moment it is lost (a renewal
 * refused, its time run out, a fenced write refused), stops the node's workflows and bridge sessions without
 * writing. A scan, every half lease time, takes the lease of each node that stopped renewing (the lease table
 * decides), moves that node's records to this one under the dead node's lease (so the dead node, should it wake,
 * is fenced out), and restores them as a restart does. Messages accepted here that concern a workflow another
 * node runs go to that node. A dead node's agents are connected nowhere any more: the node that takes it over
 * removes their presence entries.
 */
import { a2aRecordId, loadA2aTasks, type A2aTaskRecord } from "../a2a/a2a-records.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { inReplyToOf, messageKeyOf, taskIdOf, type MessageEnvelope } from "../protocol/envelope.js";
import type { Clock } from "../clock.js";
import { pendingRecordId, pendingRecordOf, SessionRecords, type LoadedSession } from "../runtime/session-records.js";
import type { Fence, Store } from "../store/store.js";
import { loadWorkflows, workflowPages, type WorkflowRecord } from "../workflows/workflow-records.js";
import type { LeaseLossCause } from "../events/event-hub.js";
import type { Lease } from "./leases.js";
import type { ClusterNode } from "./node.js";
import type { ClusterAnnounce } from "./node-events.js";
import type { RecordOwner } from "./record-owner.js";

/** The lease a node holds for itself, and whose loss ends everything it runs. */
export function nodeResource(nodeId: string): string {
  return `node:${nodeId}`;
}

/** Where each node of the cluster says it exists (`meta` records), so that the others watch its lease. */
const NODE_RECORD_PREFIX = "cluster/nodes/";
/** The node-to-node request that checks and observes a message for a workflow on the node that runs it. */
const WORKFLOW_TOPIC = "workflow";
/** The node-to-node request that answers an HTTP request for a workflow (`/sessions/:id…`) on the node that runs it. */
const WORKFLOW_ROUTE_TOPIC = "workflow-route";
/**
 * How far back the node that takes a workflow over (or takes its own lease back) reads the answers the cluster
 * kept, in lease times: a dead node is taken over within about 1.7 of them; what it heard before it died is in its
 * records, and an answer read twice changes nothing (its task is no longer pending).
 */
const ANSWERS_REPLAY_LEASES = 4;

/** What ownership needs of the bus it serves. */
export interface OwnershipHost {
  /** The store the cluster shares (open once the runtime started). */
  store(): Store;
  /** Restores stored workflows that name this node, answering the ids of those now running here. */
  adoptWorkflows(records: Array<{ sessionId: string; record: WorkflowRecord }>): Promise<string[]>;
  /** Restores stored bridge sessions that name this node, and answers the tasks their interrupted prompts served (TRANSPORT). */
  adoptSessions(stored: LoadedSession[]): Promise<void>;
  /**
   * Keeps the A2A tasks whose records name this node (those still running failed); `replace`: they are all it keeps
   * (its lease taken back, what others took over meanwhile being theirs).
   */
  adoptA2aTasks(records: A2aTaskRecord[], options: { replace: boolean }): Promise<void>;
  /**
   * Watches the deadlines of the messages the store holds unfinished (a dead node's watches died with it), and
   * publishes again those `deadNode` recorded that the stream may not have (it died between the two).
   */
  watchDeadlines(deadNode: string): Promise<void>;
  /** Sends again the pending tasks of restored auto workflows (once the bus takes messages). */
  resumeWorkflows(sessionIds: string[]): void;
  /** Stops every workflow actor and bridge session of this node, writing nothing: the node lost its lease. */
  halt(): Promise<void>;
  /** Whether a message concerns a workflow running here (or none). */
  concerns(envelope: MessageEnvelope): boolean;
  /** The session manager's checks of a message naming a workflow (404, 409, 403, 429). */
  checkSender(envelope: MessageEnvelope): void;
  /** Correlates an accepted message with the workflow it concerns. */
  observe(envelope: MessageEnvelope): void;
  /** Answers, as its own route would, an HTTP request for one of this node's workflows that another node received. */
  answerRoute(request: unknown, from: string): Promise<unknown>;
  /** Resolves once every change made so far to this node's workflows is in the store. */
  whenDurable(): Promise<void>;
  /** Reports what happens to this node in the cluster (`cluster.*` events: its lease, its takeovers, its scans). */
  announce: ClusterAnnounce;
}

/** Options of a node's ownership. */
export interface OwnershipOptions {
  clock: Clock;
  /** How long `claim()` waits for the node's own lease, held by its previous incarnation or by a node taking it over (default 3 lease times). */
  claimTimeoutMs?: number;
}

/** A node's lease, its keeper, the takeover of dead nodes' work, and the routing of messages to a workflow's node. */
export class NodeOwnership implements RecordOwner {
  readonly nodeId: string;
  readonly #cluster: ClusterNode;
  readonly #host: OwnershipHost;
  readonly #clock: Clock;
  readonly #claimTimeoutMs: number;
  #lease: Lease | undefined;
  /** The fence of the current lease, one object per tenure (every write of the node carries it). */
  #fence: Fence | undefined;
  #renewTimer: unknown;
  /** The next attempt after a renewal NATS did not answer, sooner than the next third of the lease time. */
  #renewRetryTimer: unknown;
  #scanTimer: unknown;
  #expiryTimer: unknown;
  #renewing = false;
  /** A scan failed and said so: the next failures of the same outage are not reported again. */
  #scanFailing = false;
  /** Takeovers (and retakes of this node's own lease) under way: records naming this node may not run here yet. */
  #restoring = 0;
  /** The running scan, awaited by `stop()`. */
  #scanning: Promise<void> | undefined;
  #stopped = false;
  #stopServing: (() => void) | undefined;
  #unsubscribeAnswers: (() => void) | undefined;

  constructor(cluster: ClusterNode, host: OwnershipHost, options: OwnershipOptions) {
    this.nodeId = cluster.nodeId;
    this.#cluster = cluster;
    this.#host = host;
    this.#clock = options.clock;
    this.#claimTimeoutMs = options.claimTimeoutMs ?? 3 * cluster.leaseMs;
  }

  /** The fence of this node's writes while it holds its lease; `undefined` once it lost it. */
  fence(): Fence | undefined {
    return this.#fence;
  }

  /** Whether this node holds its lease now. */
  holdsLease(): boolean {
    return this.#lease !== undefined;
  }

  /**
   * Takes this node's own lease (before the runtime restores anything): at once when it is free, else once its
   * holder (this node's previous incarnation, or a node taking over its work) lets it go or stops renewing.
   * CONFIG when it is still held after `claimTimeoutMs`: another running node has this id.
   */
  async claim(): Promise<void> {
    // Waiting here is the process's own time, not the node's clock (which tests may stand still).
    const deadline = performance.now() + this.#claimTimeoutMs;
    const pollMs = Math.max(10, Math.floor(this.#cluster.leaseMs / 8));
    for (let attempt = 0; ; attempt += 1) {
      const lease = await this.#cluster.leases.acquire(nodeResource(this.nodeId));
      if (lease !== undefined) {
        this.#hold(lease);
        break;
      }
      // Said once: a node restarted after a kill waits up to a lease time, and an operator should know why.
      if (attempt === 0) {
        process.emitWarning(
          `troupe: node ${this.nodeId} waits for its lease, held by its previous run (killed?) or by a node taking its work over: up to ${Math.round(this.#claimTimeoutMs / 1000)} s`,
          { code: "TROUPE_CLUSTER" },
        );
      }
      if (performance.now() >= deadline) {
        throw new BridgeError(
          "CONFIG",
          `cluster.nodeId: the lease of node ${this.nodeId} is held and renewed by another process: is a node with this id running?`,
          { field: "cluster.nodeId" },
        );
      }
      await new Promise<void>((resolve) => setTimeout(resolve, pollMs));
    }
    this.#renewTimer = setInterval(() => void this.#renew(), Math.max(1, Math.floor(this.#cluster.leaseMs / 3)));
    unref(this.#renewTimer);
  }

  /**
   * Starts what a running node does for the cluster (the bus calls it once it takes messages): says it exists,
   * answers the other nodes' requests for its workflows, hears answers for them, and scans for dead nodes.
   */
  async start(): Promise<void> {
    await this.#register();
    // Entries of this node's previous incarnation (killed with its agents connected) name agents no longer here.
    await this.#clearPresence(this.nodeId);
    const stopMessages = await this.#cluster.serve(WORKFLOW_TOPIC, (body) => this.#serveWorkflowMessage(body));
    const stopRoutes = await this.#cluster
      .serve(WORKFLOW_ROUTE_TOPIC, (body, from) => {
        this.checkLease();
        return this.#host.answerRoute(body, from);
      })
      .catch((error: unknown) => {
        stopMessages();
        throw error;
      });
    this.#stopServing = () => {
      stopMessages();
      stopRoutes();
    };
    this.#unsubscribeAnswers = this.#cluster.answers.listen((data) => this.#heard(data));
    this.#scanTimer = setInterval(
      () => {
        this.#scanning ??= this.#scan().finally(() => (this.#scanning = undefined));
      },
      Math.max(1, Math.floor(this.#cluster.leaseMs / 2)),
    );
    unref(this.#scanTimer);
    this.#host.announce("cluster.node_joined", { server: this.#cluster.connection.server() });
  }

  /**
   * Where a message accepted on this node that concerns a workflow goes, before the bus accepts it: `"here"`
   * when the workflow runs here (or the message concerns none: the bus checks and observes it as on one node);
   * `"elsewhere"` once the node that runs it has checked and observed it (its refusal is thrown: 404, 409, 403,
   * 429), or, for an answer that names no workflow and matches no task here, once every node has been told.
   * TRANSPORT when the workflow's node does not answer (it died: ask again once another node took it over).
   */
  async route(envelope: MessageEnvelope): Promise<"here" | "elsewhere"> {
    if (this.#host.concerns(envelope)) return "here";
    const sessionId = envelope.sender.session_id;
    if (sessionId === undefined && inReplyToOf(envelope) === undefined && taskIdOf(envelope) === undefined) return "here";
    if (sessionId === undefined) {
      // An answer naming only its request or task id: whichever node runs that task's workflow hears it, and the
      // cluster keeps it a while for the node that takes that workflow over should its node be dead now. Kept
      // before the 202: CAPACITY (429) past its sender's share of the stream, TRANSPORT (503) when NATS cannot
      // take it; either way the sender sends it again.
      try {
        await this.#cluster.answers.publish(envelope.sender.agent_id, messageKeyOf(envelope), JSON.stringify(envelope));
      } catch (error) {
        const cause = toBridgeError(error);
        if (cause.type === "CAPACITY") throw new BridgeError("CAPACITY", `${envelope.message_id} not accepted: ${cause.message}`, cause.details);
        throw new BridgeError("TRANSPORT", `${envelope.message_id} not accepted: ${cause.message}`, { ...cause.details, unavailable: true, retryable: true });
      }
      return "elsewhere";
    }
    const owner = await this.otherNodeOf("workflows", sessionId);
    if (owner === undefined) return "here";
    await this.#cluster.request(owner, WORKFLOW_TOPIC, { envelope });
    return "elsewhere";
  }

  /**
   * An HTTP request for workflow `sessionId`, which does not run here, goes to the node its record names: that
   * node's answer (`{ answer }`), or its error unchanged. `undefined` when no record names another node (none
   * names it at all, or this one): the request is answered here (404 for an id no record knows). TRANSPORT
   * (`unavailable`: 503) when that node does not answer (it died and was not yet taken over, or lost its lease).
   */
  async forward(sessionId: string, request: unknown): Promise<{ answer: unknown } | undefined> {
    const owner = await this.otherNodeOf("workflows", sessionId);
    return owner === undefined ? undefined : { answer: await this.#cluster.request(owner, WORKFLOW_ROUTE_TOPIC, request) };
  }

  /**
   * The node that runs bridge session `sessionId`, which does not run here, when its record names another node;
   * `undefined` when the session is answered here (no record names a node, or it names this one). TRANSPORT
   * (`unavailable`: 503) when its record names this node, which lost its lease.
   */
  sessionNodeOf(sessionId: string): Promise<string | undefined> {
    return this.otherNodeOf("bridge_sessions", sessionId);
  }

  /**
   * The node the record `id` of `collection` names when it is another than this one (one read of the shared store, no
   * cache); `undefined` when no record names a node, or it names this one. TRANSPORT (`unavailable`: 503) when it
   * names this node while this node lost its lease or restores what it takes over.
   */
  async otherNodeOf(collection: "workflows" | "bridge_sessions" | "a2a_tasks", id: string): Promise<string | undefined> {
    const record = (await this.#host.store().get(collection, id)) as { node?: unknown } | undefined;
    const owner = typeof record?.node === "string" ? record.node : undefined;
    if (owner !== this.nodeId) return owner;
    // Named for this node, which stopped it when it lost its lease (NATS away longer than a lease time, say): not
    // gone, only not here until the lease is back or a survivor takes it over. TRANSPORT (503), not 404.
    this.checkLease();
    // Named for this node while it restores what it takes over (or takes back): not gone, only not here yet.
    if (this.#restoring > 0) {
      throw new BridgeError("TRANSPORT", `Node ${this.nodeId} is restoring the work it takes over: ask again`, { retryable: true, unavailable: true });
    }
    return undefined;
  }

  /** Stops scanning and serving (the bus is stopping, and says so: `cluster.node_left`); the lease is still renewed until `stop()`. */
  async quiesce(): Promise<void> {
    if (this.#stopServing !== undefined && !this.#stopped) this.#host.announce("cluster.node_left", {});
    clearInterval(this.#scanTimer as ReturnType<typeof setInterval>);
    this.#stopServing?.();
    this.#unsubscribeAnswers?.();
    await this.#scanning;
  }

  /**
   * Stops renewing and serving, and releases the lease: the other nodes take this node's workflows and sessions
   * over at their next scan (within half a lease time). Its records stay in the store for them. With
   * `{ release: false }` (a runtime that outlives the bus still runs its sessions) the lease runs out instead, a
   * lease time later, and this node writes nothing more.
   */
  async stop({ release = true }: { release?: boolean } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#renewTimer as ReturnType<typeof setInterval>);
    clearTimeout(this.#renewRetryTimer as ReturnType<typeof setTimeout>);
    clearInterval(this.#scanTimer as ReturnType<typeof setInterval>);
    this.#clock.clearTimeout(this.#expiryTimer);
    this.#stopServing?.();
    this.#unsubscribeAnswers?.();
    await this.#scanning;
    const lease = this.#lease;
    this.#lease = undefined;
    this.#fence = undefined;
    if (lease !== undefined && release) await this.#cluster.leases.release(lease).catch(() => undefined);
  }

  #hold(lease: Lease): void {
    const tenureChanged = this.#lease?.token !== lease.token;
    this.#lease = lease;
    if (tenureChanged || this.#fence === undefined) {
      const fence: Fence = {
        resource: lease.resource,
        token: lease.token,
        onRefused: () => this.#lost(fence, "write_refused", "a write of this node was refused: another node holds its lease"),
      };
      this.#fence = fence;
    }
    this.#clock.clearTimeout(this.#expiryTimer);
    const fence = this.#fence;
    this.#expiryTimer = this.#clock.setTimeout(
      () => this.#lost(fence, "expired", "its lease ran out without a renewal"),
      Math.max(0, lease.validUntil - this.#clock.now()),
    );
    unref(this.#expiryTimer);
  }

  async #renew(): Promise<void> {
    const lease = this.#lease;
    if (lease === undefined || this.#renewing || this.#stopped) return;
    this.#renewing = true;
    try {
      const renewed = await this.#cluster.leases.renew(lease);
      if (this.#lease !== lease || this.#stopped) return;
      if (renewed === undefined) this.#lost(this.#fence, "taken", "another node took its lease");
      else this.#hold(renewed);
    } catch {
      // NATS did not answer: the lease is good until its validUntil, when the expiry timer ends it. Ask again soon:
      // a NATS cluster electing the bucket's new leader (its server died) answers again within seconds.
      clearTimeout(this.#renewRetryTimer as ReturnType<typeof setTimeout>);
      this.#renewRetryTimer = setTimeout(() => void this.#renew(), renewRetryMs(this.#cluster.leaseMs));
      unref(this.#renewRetryTimer);
    } finally {
      this.#renewing = false;
    }
  }

  /** The lease of tenure `fence` is lost: the node stops its workflows and sessions at once, and writes nothing more. */
  #lost(fence: Fence | undefined, cause: LeaseLossCause, reason: string): void {
    if (fence === undefined || this.#fence !== fence) return;
    this.#lease = undefined;
    this.#fence = undefined;
    this.#clock.clearTimeout(this.#expiryTimer);
    if (this.#stopped) return;
    this.#host.announce("cluster.lease_lost", { cause, reason });
    this.#host
      .halt()
      .catch((error: unknown) =>
        process.emitWarning(`troupe: node ${this.nodeId} could not stop all it ran: ${toBridgeError(error).message}`, { code: "TROUPE_CLUSTER" }),
      );
  }

  /** Says in the store that this node exists, so that the others watch its lease. */
  async #register(): Promise<void> {
    const fence = this.#fence;
    if (fence === undefined) return;
    const store = this.#host.store();
    store.put("meta", NODE_RECORD_PREFIX + this.nodeId, { nodeId: this.nodeId, since: this.#clock.now() }, { fence });
    await store.flush();
  }

  /** One scan: takes back this node's own lease if it lost it, then takes over every node that stopped renewing. */
  async #scan(): Promise<void> {
    try {
      if (this.#lease === undefined) {
        await this.#regain();
        return;
      }
      const nodes = (await this.#host.store().list("meta", { prefix: NODE_RECORD_PREFIX })).map(({ id }) => id.slice(NODE_RECORD_PREFIX.length));
      for (const nodeId of nodes) {
        if (nodeId === this.nodeId || this.#stopped || this.#lease === undefined) continue;
        const lease = await this.#cluster.leases.acquire(nodeResource(nodeId));
        if (lease !== undefined) await this.#takeOver(nodeId, lease);
      }
      this.#scanFailing = false;
    } catch (error) {
      // NATS or the store away: the next scan tries again; the operator hears of it once per outage.
      if (!this.#stopped && !this.#scanFailing) this.#host.announce("cluster.scan_failed", { error: toBridgeError(error).message });
      this.#scanFailing = true;
    }
  }

  /** After losing its lease, the node takes it again once it can, and runs again what its records still name it for. */
  async #regain(): Promise<void> {
    const lease = await this.#cluster.leases.acquire(nodeResource(this.nodeId));
    if (lease === undefined || this.#stopped) {
      if (lease !== undefined) await this.#cluster.leases.release(lease);
      return;
    }
    this.#restoring += 1;
    try {
      this.#hold(lease);
      await this.#register();
      // A node that took this one over meanwhile removed the presence of its agents, still connected here.
      this.#cluster.presence.reannounce();
      const store = this.#host.store();
      const workflows = await this.#host.adoptWorkflows(await loadWorkflows(store, this.nodeId));
      const sessions = await SessionRecords.load(store, this.nodeId);
      await this.#host.adoptSessions(sessions);
      await this.#host.adoptA2aTasks(await loadA2aTasks(store, this.nodeId), { replace: true });
      await this.#hearAgain();
      this.#host.resumeWorkflows(workflows);
      this.#host.announce("cluster.lease_regained", { workflows: workflows.length, sessions: sessions.length });
    } finally {
      this.#restoring -= 1;
    }
  }

  /**
   * Takes over dead node `nodeId`, whose lease this node now holds (`lease`): first a write under that lease, so
   * that the dead node can write nothing more; then its workflows, then its bridge sessions, a page at a time, are
   * moved to this node under that lease and restored here (what the takeover holds besides the restored actors is
   * one page of records, however many the dead node had); then its A2A task records are moved, its agents'
   * presence entries removed, the tasks restored here as a restart restores them; then the lease is released.
   * Should another node take the dead one over meanwhile (its newer token refuses a write), what was moved here so
   * far stays here (its records name this node) and the other node takes the rest.
   */
  async #takeOver(nodeId: string, lease: Lease): Promise<void> {
    let refused = false;
    const fence: Fence = { resource: lease.resource, token: lease.token, onRefused: () => (refused = true) };
    const store = this.#host.store();
    this.#restoring += 1;
    try {
      store.put("meta", NODE_RECORD_PREFIX + nodeId, { nodeId, takenOverBy: this.nodeId, at: this.#clock.now() }, { fence });
      await store.flush();
      // Should another node take the dead one over meanwhile (this scan outlived the lease), its newer token refuses
      // these writes: what was moved here before goes on here, the rest is the other node's.
      const givenUp = (): boolean => refused || this.#lease === undefined || this.#stopped;
      const adopted: string[] = [];
      for await (const page of workflowPages(store, nodeId)) {
        const moved = page.map(({ sessionId, record }) => ({ sessionId, record: { ...record, node: this.nodeId } }));
        // Each record's node changes, its value is not written again (a workflow's may be a few MiB).
        for (const { sessionId } of moved) store.move("workflows", sessionId, this.nodeId, { fence });
        await store.flush();
        if (givenUp()) break;
        adopted.push(...(await this.#host.adoptWorkflows(moved)));
      }
      let sessions = 0;
      if (!givenUp()) {
        for await (const batch of SessionRecords.loadPages(store, nodeId)) {
          const moved = batch.map(({ session, interrupted }) => ({ session: { ...session, node: this.nodeId }, interrupted }));
          for (const { session, interrupted } of moved) {
            store.move("bridge_sessions", session.sessionId, this.nodeId, { fence });
            if (interrupted.length > 0) store.put("bridge_sessions", pendingRecordId(session.sessionId), pendingRecordOf(interrupted, this.nodeId), { fence });
          }
          await store.flush();
          if (givenUp()) break;
          await this.#host.adoptSessions(moved);
          sessions += moved.length;
        }
      }
      const movedA2aTasks = givenUp() ? [] : (await loadA2aTasks(store, nodeId)).map((record) => ({ ...record, node: this.nodeId }));
      if (!givenUp()) {
        for (const record of movedA2aTasks) store.move("a2a_tasks", a2aRecordId(record.agentId, record.taskId), this.nodeId, { fence });
        store.delete("meta", NODE_RECORD_PREFIX + nodeId, { fence });
        await store.flush();
      }
      if (givenUp()) {
        if (this.#lease !== undefined && !this.#stopped) this.#host.resumeWorkflows(adopted);
        return;
      }
      await this.#clearPresence(nodeId);
      await this.#host.adoptA2aTasks(movedA2aTasks, { replace: false });
      await this.#hearAgain();
      this.#host.resumeWorkflows(adopted);
      this.#host.announce("cluster.takeover", { fromNode: nodeId, workflows: adopted.length, sessions });
      // Last: a store that fails this read leaves the scan's warning, and the node's next start watches them.
      await this.#host.watchDeadlines(nodeId);
    } finally {
      this.#restoring -= 1;
      await this.#cluster.leases.release(lease).catch(() => undefined);
    }
  }

  /** Removes the presence entries naming `nodeId` (dead, or this node's previous incarnation); a failure is only told. */
  async #clearPresence(nodeId: string): Promise<void> {
    try {
      await this.#cluster.presence.clearNode(nodeId);
    } catch (error) {
      process.emitWarning(`troupe: the presence of node ${nodeId}'s agents could not be removed: ${toBridgeError(error).message}`, { code: "TROUPE_CLUSTER" });
    }
  }

  /** An answer told by some node: the workflow here whose task it answers takes it. */
  #heard(data: string): void {
    try {
      const envelope = JSON.parse(data) as MessageEnvelope;
      if (this.#lease !== undefined && this.#host.concerns(envelope)) this.#host.observe(envelope);
    } catch (observeError) {
      process.emitWarning(`troupe: an answer from another node could not be observed: ${toBridgeError(observeError).message}`, { code: "TROUPE_CLUSTER" });
    }
  }

  /**
   * Workflows just restored here (taken over, or taken back with the lease) hear again the answers told while
   * no node ran them: those the cluster kept from the last few lease times.
   */
  async #hearAgain(): Promise<void> {
    try {
      await this.#cluster.answers.replay(Date.now() - ANSWERS_REPLAY_LEASES * this.#cluster.leaseMs, (data) => this.#heard(data));
    } catch (error) {
      process.emitWarning(`troupe: node ${this.nodeId} could not read the answers the cluster kept: ${toBridgeError(error).message}`, {
        code: "TROUPE_CLUSTER",
      });
    }
  }

  /**
   * A node that lost its lease answers for no workflow nor bridge session: TRANSPORT (503), to be asked again once
   * its work was taken over.
   */
  checkLease(): void {
    if (this.#lease === undefined) {
      throw new BridgeError("TRANSPORT", `Node ${this.nodeId} does not hold its lease: ask again once its workflows are taken over`, {
        retryable: true,
        unavailable: true,
      });
    }
  }

  /**
   * Another node asks this one to check and observe a message for one of its workflows. The answer comes once what
   * the message changed is in the store: the asking node answers its sender 202 only then, so a node that dies
   * before its write loses no accepted answer (the sender gets TRANSPORT and sends it again, to the survivor).
   */
  async #serveWorkflowMessage(body: unknown): Promise<null> {
    const envelope = (body as { envelope?: MessageEnvelope } | null)?.envelope;
    if (typeof envelope !== "object" || envelope === null) throw new BridgeError("INTERNAL", "A workflow request from another node without its envelope");
    this.checkLease();
    this.#host.checkSender(envelope);
    this.#host.observe(envelope);
    await this.#host.whenDurable();
    // A write refused by the store (the lease was taken meanwhile) is not durable: the taker has the workflow.
    this.checkLease();
    return null;
  }
}

/** How soon a renewal NATS did not answer is tried again: a twentieth of the lease time, at most half a second. */
function renewRetryMs(leaseMs: number): number {
  return Math.max(1, Math.min(500, Math.floor(leaseMs / 20)));
}

/** A timer that does not keep the process alive (the bus's stop clears it). */
function unref(handle: unknown): void {
  (handle as { unref?: () => void } | undefined)?.unref?.();
}
