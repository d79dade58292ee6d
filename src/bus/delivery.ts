/**
 * Deliveries: the bus's side of the delivery actors. Each accepted message is carried by a delivery actor in
 * the supervisor's delivery pool (machines/pool.machine.ts); this performs what the machine decides (write to a
 * socket, or queue), keeps the per-recipient priority queues and the window of unacknowledged messages per
 * socket, and keeps of each finished message only its status record. A message's status, attempts and
 * last error are read from its actor while it carries it. An actor whose message ended waits idle for the
 * next message, up to `maxIdleDeliveries` of them: spawning and reaping an actor per message cost more than
 * the rest of a message's way through the bus.
 *
 * It also keeps every message in the store (docs/durability.md): the envelope and its state at acceptance
 * (`messages/<key>`, written in the turn it is accepted, durable before the bus answers), each later state
 * with the absolute deadline of its delay (`message_status/<key>`, at most one write per message per turn,
 * never awaited), and each ack before it counts. `restore()` spawns the deliveries of a store again after a
 * restart, each in its state, its delays resuming with what was left of them.
 */
import { isDeepStrictEqual } from "node:util";
import type { AnyActorRef } from "xstate";
import {
  resumedDelayMs,
  retryDelayMs,
  type DeliveryContext,
  type DeliveryEmitted,
  type DeliveryEvent,
  type DeliveryInput,
  type DeliveryActorState,
  type DeliveryResume,
  type DeliveryStatus,
} from "../../machines/delivery.machine.js";
import type { PoolChildEnding } from "../../machines/pool-shard.machine.js";
import type { Clock } from "../clock.js";
import type { MessageOrigin } from "../events/event-hub.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { inReplyToOf, MESSAGE_KEY_SEPARATOR, messageKey, messageKeyOf, taskIdOf, type MessageEnvelope } from "../protocol/envelope.js";
import type { DeliveryPoolHost, Runtime } from "../runtime/runtime.js";
import { listPages } from "../store/pages.js";
import type { Store } from "../store/store.js";
import type { AgentConnection as SocketConnection } from "./agent-connections.js";
import { Fifo, PriorityQueue } from "./priority-queue.js";

/** What a delivery writes to: an agent's socket, or a runtime agent's in-process endpoint (always open). */
export type AgentConnection = Pick<SocketConnection, "agentId" | "inFlight" | "open" | "send" | "canWrite">;

/** A message as the deliveries write it: its frame, and the frame's size in UTF-8 bytes. */
export interface DeliveryFrame {
  frame: string;
  frameBytes: number;
}

/** Where a delivery stands, as `GET /messages/:id` answers it. */
export interface MessageStatusView {
  message_id: string;
  /** The sender's agent id: a `message_id` names a message together with it. */
  sender: string;
  status: DeliveryStatus;
  attempts: number;
  last_error?: string;
}

/** What the deliveries need from the bus. */
export interface DeliveriesOptions {
  runtime: Runtime;
  clock: Clock;
  connection(agentId: string): AgentConnection | undefined;
  /** False for an agent registered with `metadata.acks: false`: a message written to it counts as acknowledged. */
  sendsAcks(agentId: string): boolean;
  ackTimeoutMs: number;
  retryBaseMs: number;
  maxInFlightPerAgent: number;
  maxQueuedPerAgent: number;
  /** UTF-8 bytes of all live messages together (their frames). */
  maxQueuedBytes: number;
  maxRetainedMessages: number;
  /** The runtime's store (open once the runtime has started). */
  store(): Store;
  /**
   * Whether the store keeps what it is given across restarts: only then are messages written to it, and only
   * then does an ack wait for its commit. Constant for the life of the deliveries.
   */
  persistent: boolean;
  /** Delivery actors kept idle for the next messages; past it, one whose message ended is retired. */
  maxIdleDeliveries: number;
  /** Every event a delivery emits, after it took effect here, with the envelope it concerns and when that was accepted. */
  onStatus(event: DeliveryEmitted, envelope: MessageEnvelope, acceptedAt: number): void;
  /**
   * A cluster node (docs/cluster.md): the cluster's stream holds the messages not yet finished, so `restore()`
   * brings back only the status records of finished ones, not live deliveries.
   */
  clustered?: boolean;
  /**
   * A delivery moved on to a fallback agent that is not connected here (it may be on another node): called after
   * the message was queued here for it.
   */
  fallbackElsewhere?(context: DeliveryContext): void;
}

/** What `accept` needs besides the envelope. */
export interface AcceptOptions {
  timeoutMs: number;
  localSink?: (envelope: MessageEnvelope) => void;
  /** When another node accepted it (a message pulled from the cluster's stream): its timeout runs from then. */
  acceptedAt?: number;
  /** Its `messages` record is in the store already (written by the node that accepted it): not written again. */
  recorded?: boolean;
  /** The target it goes to first (a fallback agent, when another node handed it over); 0 by default. */
  targetIndex?: number;
}

type DeliveryActor = AnyActorRef & { send(event: DeliveryEvent): void };

/** The states in which a delivery carries a message and counts as live (`acknowledged` and `dead` are passed through). */
const LIVE_STATUSES: ReadonlySet<string> = new Set<DeliveryActorState>(["accepted", "queued", "delivered", "acknowledging", "retrying"]);

/** The states a live delivery is stored in (`acknowledging` is stored as `acknowledged` at once). */
type StoredLiveStatus = "accepted" | "queued" | "delivered" | "retrying";

const STORED_LIVE_STATUSES: ReadonlySet<string> = new Set<StoredLiveStatus>(["accepted", "queued", "delivered", "retrying"]);

/** How long a failed commit of an ack waits before the ack is tried again (the store keeps its writes). */
const ACK_COMMIT_RETRY_MS = 1_000;

/** Where a live delivery stands, as the store keeps it. */
interface StoredDeliveryState {
  status: StoredLiveStatus;
  targetIndex: number;
  retries: number;
  attempts: number;
  lastError: string | null;
  /** When the ack timeout (`delivered`) or the backoff (`retrying`) ends, in epoch ms; null in other states. */
  phaseDeadline: number | null;
}

/**
 * A message not yet finished, as `messages/<key>` keeps it: written once, when it is accepted, with its state
 * then; each later state goes to `message_status/<key>`, so that the envelope is serialized once.
 */
interface StoredMessage {
  envelope: MessageEnvelope;
  acceptedAt: number;
  timeoutMs: number;
  /** On a cluster: the node that accepted it and publishes it to the stream (docs/cluster.md, "How a message goes"). */
  node?: string;
  /** Acceptance order over the bus's whole life, restarts included: restored queues keep it. */
  order: number;
  state: StoredDeliveryState;
}

/** What a finished message leaves in `message_status/<key>` (its status record; no payload). */
interface StoredFinished extends MessageStatusView {
  status: "acknowledged" | "dead";
  /** The order it finished in: the oldest records are forgotten first, beyond `maxRetainedMessages`. */
  order: number;
}

/** The state of a message whose actor is not spawned yet. */
const NEW_STATE: StoredDeliveryState = { status: "accepted", targetIndex: 0, retries: 0, attempts: 0, lastError: null, phaseDeadline: null };

export function isFinishedRecord(value: unknown): value is StoredFinished {
  const status = (value as { status?: unknown } | null)?.status;
  return status === "acknowledged" || status === "dead";
}

function isLiveState(value: unknown): value is StoredDeliveryState {
  const status = (value as { status?: unknown } | null)?.status;
  return typeof status === "string" && STORED_LIVE_STATUSES.has(status);
}

/** The sender's id in a message key. */
function senderOfKey(key: string): string {
  return key.slice(0, key.indexOf(MESSAGE_KEY_SEPARATOR));
}

/** The `actorId` of a message's events on the stream: `message:<key>`. */
export function messageActorId(key: string): string {
  return `message:${key}`;
}

/** A delivery's emitted event as the stream carries it: with its message's sender (`from`) and workflow (`workflowId`, when it names one). */
function messageEventFields<E extends Omit<DeliveryEmitted, "type">>(envelope: MessageEnvelope, emitted: E): E & MessageOrigin {
  const { sender } = envelope;
  return sender.session_id === undefined ? { ...emitted, from: sender.agent_id } : { ...emitted, from: sender.agent_id, workflowId: sender.session_id };
}

/** Delivery actors ever spawned in this process: each gets a system id of its own, `delivery:<n>`. */
let deliveryActorsSpawned = 0;

function newDeliveryActorId(): string {
  deliveryActorsSpawned += 1;
  return `delivery:${deliveryActorsSpawned}`;
}

/** A pooled actor's system id: from its options, as XState sets `systemId` only once it has reported the actor. */
function systemIdOf(actor: AnyActorRef): string | undefined {
  const { options, systemId } = actor as AnyActorRef & { options?: { systemId?: string }; systemId?: string };
  return options?.systemId ?? systemId;
}

function contextOf(child: AnyActorRef): DeliveryContext {
  return (child.getSnapshot() as { context: DeliveryContext }).context;
}

function statusViewOf(status: DeliveryStatus, context: DeliveryContext): MessageStatusView {
  const { sender } = context.envelope as MessageEnvelope;
  return {
    message_id: context.messageId,
    sender: sender.agent_id,
    status,
    attempts: context.attempts,
    ...(context.lastError === null ? {} : { last_error: context.lastError }),
  };
}

/** The task a `task_request` carries: its `metadata.task_id`, else its `message_id`; other messages carry none. */
function requestTaskIdOf(envelope: MessageEnvelope): string | undefined {
  return envelope.message_type === "task_request" ? (taskIdOf(envelope) ?? envelope.message_id) : undefined;
}

/** Message keys by a name (a `message_id`, a task id): usually one key, kept as a string; several as an array. */
class KeyIndex {
  private readonly byName = new Map<string, string | string[]>();

  /** The keys under `name`; empty when none. */
  get(name: string): readonly string[] {
    const keys = this.byName.get(name);
    return keys === undefined ? [] : typeof keys === "string" ? [keys] : keys;
  }

  add(name: string, key: string): void {
    const keys = this.byName.get(name);
    if (keys === undefined) this.byName.set(name, key);
    else if (typeof keys === "string") this.byName.set(name, [keys, key]);
    else keys.push(key);
  }

  delete(name: string, key: string): void {
    const keys = this.byName.get(name);
    if (typeof keys === "string") {
      if (keys === key) this.byName.delete(name);
      return;
    }
    const rest = (keys ?? []).filter((other) => other !== key);
    if (rest.length === 0) this.byName.delete(name);
    else this.byName.set(name, rest.length === 1 ? (rest[0] as string) : rest);
  }
}

/** A recipient's waiting messages: an order (priority, then FIFO) and the set of those still waiting. */
class RecipientQueue {
  readonly order = new PriorityQueue<string>();
  readonly waiting = new Set<string>();
}

/**
 * Every message of one bus, from acceptance until its status record is forgotten. Messages are named by their
 * key (`messageKey`): queues, windows and records hold keys; `keysById` finds them from a bare `message_id`
 * (an ack frame, `GET /messages/:id`), usually one key, several when senders chose the same id.
 */
export class Deliveries implements DeliveryPoolHost {
  private readonly queues = new Map<string, RecipientQueue>();
  /** The system id of the delivery actor carrying each live message, by key. */
  private readonly carriers = new Map<string, string>();
  /** The key each delivery actor carries, by its system id. */
  private readonly carried = new Map<string, string>();
  /** Delivery actors waiting for a message, the most recently idle last (taken first: its memory is the warmest). */
  private readonly idle: string[] = [];
  /** The context of a message that just ended, from its last transition to its emitted end (its actor releases it meanwhile). */
  private readonly ending = new Map<AnyActorRef, DeliveryContext>();
  /** The first message of each actor being spawned, handed to it once it has started (actors are spawned without one). */
  private readonly firstMessages = new Map<string, DeliveryInput>();
  /** The keys of every live or remembered message, by `message_id`. */
  private readonly keysById = new KeyIndex();
  /** The socket each message was last written to, while it waits for its ack there. */
  private readonly writtenTo = new Map<string, AgentConnection>();
  /** Receives a message in this process instead of a socket (a sync sender waiting for this reply). */
  private readonly localSinks = new Map<string, (envelope: MessageEnvelope) => void>();
  /** Status records of finished messages; forgotten beyond `maxRetainedMessages`, oldest first. */
  private readonly finished = new Map<string, MessageStatusView>();
  /**
   * The keys of `finished`, oldest first. A Map read from its start after many deletions walks past every
   * deleted entry until it is rehashed: taking its oldest entry that way cost O(maxRetainedMessages) per message.
   */
  private readonly finishedOrder = new Fifo<string>();
  /** Live deliveries by state, counted from their transitions; finished ones by their record. */
  private readonly counts: Record<DeliveryStatus, number> = { accepted: 0, queued: 0, delivered: 0, acknowledging: 0, acknowledged: 0, retrying: 0, dead: 0 };
  /** UTF-8 bytes of the frames of every live message: bounded by `maxQueuedBytes`. */
  private liveBytes = 0;
  /** Live `task_request`s by task id (`metadata.task_id`, else `message_id`, as workflows name tasks). */
  private readonly requestsByTask = new KeyIndex();
  /** Keys whose state changed this turn: written once, in a microtask, whatever the number of transitions. */
  private readonly changed = new Set<string>();
  private changesScheduled = false;
  /** What a message acknowledged without an ack of its agent gets once that is durable: its frame written, or its local sink called. */
  private readonly handoffs = new Map<string, () => void>();
  /** Keys whose ack is written and waits for the store's commit: the acks of one turn wait for one flush. */
  private acksAwaitingCommit: string[] = [];
  /** The key being accepted: its state goes into its `messages` record, written when the spawn returns. */
  private accepting: string | undefined;
  /** True while `restore()` spawns: restored states are in the store already, and their events are not news. */
  private restoring = false;
  /** The bus is stopping: closing sockets no longer fail attempts, so messages keep their stored state for the next start. */
  private suspended = false;
  /** The next `order` of a stored record (acceptance of a message, end of a finished one). */
  private nextOrder = 0;

  constructor(private readonly options: DeliveriesOptions) {
    options.runtime.attachPool("delivery", this);
  }

  /** Whether a message key is known (alive, or finished and still remembered). */
  has(key: string): boolean {
    return this.finished.has(key) || this.carriers.has(key);
  }

  /**
   * A message's status, while it is remembered: from its actor while it lives, then from its record. Without a
   * sender, the `message_id` must name one message; when several senders used it, CONFIG asks for the sender.
   */
  status(messageId: string, sender?: string): MessageStatusView | undefined {
    let key: string | undefined;
    if (sender !== undefined) key = messageKey(sender, messageId);
    else {
      const keys = this.keysOf(messageId);
      if (keys.length > 1) {
        const senders = keys.map(senderOfKey);
        throw new BridgeError("CONFIG", `message_id ${messageId} was used by ${keys.length} senders: name one with ?sender=`, { field: "sender", senders });
      }
      key = keys[0];
    }
    if (key === undefined) return undefined;
    const child = this.childOf(key);
    if (child === undefined) return this.finished.get(key);
    const snapshot = child.getSnapshot() as { value: DeliveryActorState; context: DeliveryContext };
    // Taken, and not started yet (its actor is busy with the previous message's end): accepted.
    return statusViewOf(LIVE_STATUSES.has(snapshot.value) ? (snapshot.value as DeliveryStatus) : "accepted", snapshot.context);
  }

  /** Messages by status: live ones and the finished ones still remembered. */
  countsByStatus(): Record<DeliveryStatus, number> {
    return { ...this.counts };
  }

  /** Messages waiting in an agent's queue (a message that left the queue, e.g. dead, no longer counts). */
  queuedFor(agentId: string): number {
    return this.queues.get(agentId)?.waiting.size ?? 0;
  }

  /** Messages written to a socket and not yet acknowledged, or whose ack is being made durable. */
  get unacknowledged(): number {
    return this.counts.delivered + this.counts.acknowledging;
  }

  /**
   * Starts the delivery of a validated, new message and enqueues its record in the store (durable at the
   * store's next `flush()`, which the bus awaits before it answers). A full recipient queue is CAPACITY.
   */
  accept(envelope: MessageEnvelope, { timeoutMs, localSink, acceptedAt: acceptedBefore, recorded = false, targetIndex = 0 }: AcceptOptions): void {
    const recipient = envelope.recipient.agent_id;
    if (localSink === undefined && this.queuedFor(recipient) >= this.options.maxQueuedPerAgent) {
      const limit = this.options.maxQueuedPerAgent;
      throw new BridgeError("CAPACITY", `The queue of ${recipient} holds maxQueuedPerAgent (${limit}) messages`, {
        retryable: true,
        limit,
        agentId: recipient,
      });
    }
    const key = messageKeyOf(envelope);
    const frame = JSON.stringify(envelope);
    const frameBytes = Buffer.byteLength(frame);
    const { maxQueuedBytes } = this.options;
    if (this.liveBytes + frameBytes > maxQueuedBytes) {
      throw new BridgeError("CAPACITY", `The bus holds maxQueuedBytes (${maxQueuedBytes}) of messages not yet delivered`, {
        retryable: true,
        limit: maxQueuedBytes,
      });
    }
    if (localSink !== undefined) this.localSinks.set(key, localSink);
    const now = this.options.clock.now();
    const acceptedAt = acceptedBefore ?? now;
    // Accepted by another node: a new delivery here, whose timeout runs on from that acceptance.
    const resume: DeliveryResume | undefined =
      acceptedBefore === undefined
        ? undefined
        : {
            status: "accepted",
            targetIndex,
            retries: 0,
            attempts: 0,
            lastError: null,
            timeoutLeftMs: Math.min(timeoutMs, Math.max(0, acceptedAt + timeoutMs - now)),
            phaseLeftMs: 0,
          };
    const input = this.inputOf(key, envelope, { frame, frameBytes }, acceptedAt, timeoutMs, resume);
    let child: AnyActorRef | undefined;
    this.track(key, envelope);
    try {
      this.liveBytes += frameBytes;
      this.accepting = key;
      child = this.carry(key, input);
    } catch (error) {
      this.liveBytes -= frameBytes;
      this.localSinks.delete(key);
      this.uncarry(key);
      this.unindexKey(key);
      this.forgetRequest(envelope);
      throw error;
    } finally {
      this.accepting = undefined;
    }
    // A store that keeps nothing is written nothing. Acknowledged while it was started (a local sink, an agent
    // without acks): its end is written already.
    if (!this.options.persistent || !this.carriers.has(key) || recorded) return;
    const snapshot = child?.getSnapshot() as { value: DeliveryActorState; context: DeliveryContext } | undefined;
    // No actor yet (the pool spawns it after its current event), or one busy with its previous message's end:
    // its states are written as they come.
    const carrying = snapshot !== undefined && STORED_LIVE_STATUSES.has(snapshot.value) && snapshot.context.key === key;
    const state = carrying ? this.storedState(snapshot.value as StoredLiveStatus, snapshot.context) : NEW_STATE;
    const record: StoredMessage = { envelope, acceptedAt, timeoutMs, order: this.nextOrder++, state };
    this.options.store().put("messages", key, record);
  }

  /** Takes back the `messages` record of a message `record` wrote that the cluster's stream then refused (full). */
  unrecord(envelope: MessageEnvelope): void {
    if (this.options.persistent) this.options.store().delete("messages", messageKeyOf(envelope));
  }

  /**
   * Takes back the `messages` record of `envelope` when it holds this very envelope: what an earlier send of a
   * message refused now for good left (a node killed between committing it and publishing it). A record of another
   * message under the same key (another client's, naming the same sender and id) is left as it is. A store that
   * cannot say leaves the record. Answers whether it took it back.
   */
  async unrecordIfSame(envelope: MessageEnvelope): Promise<boolean> {
    if (!this.options.persistent) return false;
    const key = messageKeyOf(envelope);
    const store = this.options.store();
    try {
      const stored = (await store.get("messages", key)) as Partial<StoredMessage> | undefined;
      if (stored === undefined || !isDeepStrictEqual(stored.envelope, JSON.parse(JSON.stringify(envelope)))) return false;
      store.delete("messages", key);
      return true;
    } catch (error) {
      process.emitWarning(`The record of ${key} could not be checked, it is left: ${toBridgeError(error).message}`, "TroupeBusWarning");
      return false;
    }
  }

  /**
   * Takes back the `messages` record `record` wrote for a message the cluster's stream had already (a duplicate)
   * when that message has ended meanwhile: the node that ended it deleted its record before this write. Read
   * after this write was committed, so an end committed later deletes the record itself. A store that cannot
   * say leaves the record, warning.
   */
  async unrecordFinished(envelope: MessageEnvelope): Promise<void> {
    if (!this.options.persistent) return;
    const key = messageKeyOf(envelope);
    const store = this.options.store();
    try {
      if (isFinishedRecord(await store.get("message_status", key))) store.delete("messages", key);
    } catch (error) {
      process.emitWarning(`The record of ${key}, accepted again, may stay in the store: ${String(error)}`, "TroupeBusWarning");
    }
  }

  /**
   * Records a message this node accepted and hands to the cluster's stream instead of a delivery of its own: its
   * `messages` record (durable at the store's next `flush()`), where `GET /messages/:id` and the check made before
   * a delivery find it, and its `message.accepted` event, as a delivery here would announce it (the delivery that
   * takes it from the stream, on whichever node, does not announce it again).
   */
  record(envelope: MessageEnvelope, acceptedAt: number, timeoutMs: number, node: string): void {
    const key = messageKeyOf(envelope);
    if (this.options.persistent) {
      const record: StoredMessage = { envelope, acceptedAt, timeoutMs, node, order: this.nextOrder++, state: NEW_STATE };
      this.options.store().put("messages", key, record);
    }
    const { hub } = this.options.runtime;
    if (hub.wants("message.accepted")) {
      hub.emit("message.accepted", messageActorId(key), messageEventFields(envelope, { messageId: envelope.message_id, target: envelope.recipient.agent_id }));
    }
  }

  /**
   * Takes back a message this node delivers and has not written to its agent (accepted, queued, or between
   * retries): its actor is reaped, and nothing is left of it here. True when it was taken back; false when it is
   * not live here, or is written and waits for its ack. The cluster gives such a message back to its stream
   * when its agent left this node.
   */
  withdraw(key: string): boolean {
    const child = this.childOf(key);
    const actorId = this.carriers.get(key);
    if (child === undefined || actorId === undefined) return false;
    const snapshot = child.getSnapshot() as { value: DeliveryActorState; context: DeliveryContext };
    const state = snapshot.value;
    if ((state !== "accepted" && state !== "queued" && state !== "retrying") || snapshot.context.key !== key) return false;
    const { context } = snapshot;
    // Its count goes with its actor's stop (stateChanged to undefined).
    this.liveBytes -= context.frameBytes;
    this.changed.delete(key);
    for (const target of context.targets) this.dequeue(target, key);
    this.forgetRequest(context.envelope as MessageEnvelope);
    // `released` forgets the rest (its links, its index) once the pool has reaped the actor.
    this.options.runtime.evictPooled("delivery", actorId);
    return true;
  }

  /**
   * A message's status as the shared store has it (a cluster node asked about a message another node accepted
   * or delivers): its end, its last stored live state, or `accepted` while only its acceptance is stored.
   */
  async storedStatus(key: string): Promise<MessageStatusView | undefined> {
    if (!this.options.persistent) return undefined;
    const store = this.options.store();
    const [state, record] = await Promise.all([store.get("message_status", key), store.get("messages", key)]);
    const messageId = key.slice(key.indexOf(MESSAGE_KEY_SEPARATOR) + 1);
    const sender = senderOfKey(key);
    if (isFinishedRecord(state)) {
      const { order: _order, ...view } = state;
      return view;
    }
    if (record === undefined || record === null) return undefined;
    const live = isLiveState(state) ? state : (record as StoredMessage).state;
    return { message_id: messageId, sender, status: live.status, attempts: live.attempts, ...(live.lastError === null ? {} : { last_error: live.lastError }) };
  }

  /** The status record of a message finished here (and still remembered), or undefined. */
  finishedHere(key: string): MessageStatusView | undefined {
    return this.finished.get(key);
  }

  /** Whether a message is carried by a delivery here now. */
  isLive(key: string): boolean {
    return this.carriers.has(key);
  }

  /**
   * Spawns the deliveries the store holds, after a restart (before the bus takes any message): finished
   * messages come back as status records, live ones as delivery actors in the state they were stored in, in
   * the order they were accepted (so each recipient's queue keeps its order), their delays resuming with what
   * is left of them by the clock: a delay that ran out while the bus was down fires at once.
   */
  async restore(): Promise<void> {
    const store = this.options.store();
    const clustered = this.options.clustered === true;
    const [messages, statuses] = await Promise.all([clustered ? [] : store.list("messages"), store.list("message_status")]);
    const states = new Map<string, unknown>(statuses.map(({ id, value }) => [id, value]));
    const finished = statuses.filter((record): record is { id: string; value: StoredFinished } => isFinishedRecord(record.value));
    finished.sort((left, right) => left.value.order - right.value.order);
    for (const { id, value } of finished) {
      this.indexKey(value.message_id, id);
      const { order, ...view } = value;
      this.remember(id, view);
      this.nextOrder = Math.max(this.nextOrder, order + 1);
    }
    if (clustered) {
      // Live messages wait in the cluster's stream (whichever node their agent is on delivers them): their records
      // are only looked through, a page at a time, for those of finished messages, which an earlier version could
      // leave behind (docs/cluster.md).
      for await (const page of listPages(store, "messages")) for (const { id } of page) if (isFinishedRecord(states.get(id))) store.delete("messages", id);
      return;
    }
    const live = messages.map(({ id, value }) => ({ key: id, record: value as StoredMessage }));
    live.sort((left, right) => left.record.order - right.record.order);
    this.restoring = true;
    try {
      for (const { key, record } of live) {
        this.nextOrder = Math.max(this.nextOrder, record.order + 1);
        const state = states.get(key);
        // Its ack was written with its end, in the same commit: it is finished.
        if (isFinishedRecord(state)) {
          store.delete("messages", key);
          continue;
        }
        this.respawn(key, record, isLiveState(state) ? state : record.state);
      }
    } finally {
      this.restoring = false;
    }
  }

  /**
   * An agent answered (SPEC §3.9): a `task_response` or `error` naming a message by `metadata.in_reply_to`, or,
   * without one, a `task_request` by its task id in `metadata.task_id`, is the ack of that message by its
   * current target, so an agent that never sends `ack` frames is not sent the message again. Another agent's
   * answer acks nothing. `in_reply_to` names one message; a task id may be the same in several workflows, so
   * it is only the fallback of the seed project's adapters, which name tasks by it alone.
   */
  acknowledgeByAnswer(answer: MessageEnvelope): void {
    if (answer.message_type !== "task_response" && answer.message_type !== "error") return;
    const responder = answer.sender.agent_id;
    const inReplyTo = inReplyToOf(answer);
    const taskId = taskIdOf(answer);
    const answered = inReplyTo !== undefined ? this.keysById.get(inReplyTo) : taskId === undefined ? [] : [...this.requestsByTask.get(taskId)];
    for (const key of answered) {
      const child = this.childOf(key);
      if (child === undefined) continue;
      const { targets, targetIndex } = contextOf(child);
      if (targets[targetIndex] === responder) child.send({ type: "ACK", agentId: responder });
    }
  }

  /**
   * An agent acknowledged a message by its `message_id`. Unknown and finished messages are ignored: acks may
   * repeat. The delivery machine takes it only from the message's current target; two messages of different
   * senders with the same id, both written to this agent, are both acknowledged by it.
   */
  acknowledge(connection: AgentConnection, messageId: string): void {
    for (const key of this.keysOf(messageId)) this.childOf(key)?.send({ type: "ACK", agentId: connection.agentId });
  }

  /** An agent connected: its queue is served. */
  connected(connection: AgentConnection): void {
    this.pump(connection.agentId);
  }

  /** An agent's socket wrote out what waited: its queue is served again. */
  drained(connection: AgentConnection): void {
    this.pump(connection.agentId);
  }

  /** An agent's socket closed: every message waiting for its ack there failed this attempt (unless the bus is stopping). */
  disconnected(connection: AgentConnection): void {
    if (this.suspended) {
      connection.inFlight.clear();
      return;
    }
    for (const key of [...connection.inFlight]) {
      this.childOf(key)?.send({ type: "SEND_FAILED", error: `Connection of ${connection.agentId} closed before the ack` });
    }
    connection.inFlight.clear();
  }

  /**
   * The bus is stopping: sockets it closes from now on fail no attempt. Messages waiting for their ack stay
   * `delivered` in the store, their ack timeout running on from there at the next start.
   */
  suspend(): void {
    this.suspended = true;
  }

  /** Reaps every delivery actor and empties the queues (the bus is stopping). The store keeps every live message. */
  stop(): void {
    this.idle.length = 0;
    this.options.runtime.clearPool("delivery");
    this.liveBytes = 0;
    this.queues.clear();
  }

  // ---- DeliveryPoolHost: what the runtime tells the owner of the delivery actors ----

  /** The machine's `dispatch`: write the message to its current target now, or queue it. */
  dispatch(context: DeliveryContext, self: AnyActorRef): void {
    const { key } = context;
    const target = context.targets[context.targetIndex] as string;
    this.release(key);
    const localSink = this.localSinks.get(key);
    if (localSink !== undefined) {
      // Handed over once its end is durable, as a message to an agent without acks.
      this.handoffs.set(key, () => localSink(context.envelope as MessageEnvelope));
      self.send({ type: "SENT", agentId: target } satisfies DeliveryEvent);
      self.send({ type: "ACK", agentId: target } satisfies DeliveryEvent);
      return;
    }
    const connection = this.options.connection(target);
    const queue = this.queues.get(target);
    if (connection !== undefined && this.hasRoom(connection) && (queue === undefined || queue.waiting.size === 0) && connection.canWrite(context.frameBytes)) {
      const awaitsAck = this.write(key, context, connection);
      self.send({ type: "SENT", agentId: target } satisfies DeliveryEvent);
      if (!awaitsAck) self.send({ type: "ACK", agentId: target } satisfies DeliveryEvent);
      return;
    }
    this.enqueue(target, key, (context.envelope as MessageEnvelope).priority);
    self.send({ type: "QUEUED" } satisfies DeliveryEvent);
    if (connection === undefined && context.targetIndex > 0) this.options.fallbackElsewhere?.(context);
  }

  /**
   * Counts transitions; a message that leaves `queued` leaves its queue; a new state is written to the store
   * (once per turn), and an ack is written before it counts. Called while the transition is taken, with the
   * snapshot that transition leads to (the actor's own snapshot is still the one before it).
   */
  stateChanged(child: AnyActorRef, from: string | undefined, to: string | undefined, snapshot?: { context?: unknown }): void {
    if (from === undefined && to === "idle") {
      this.handFirstMessage(child);
      return;
    }
    const fromLive = from !== undefined && LIVE_STATUSES.has(from);
    const toLive = to !== undefined && LIVE_STATUSES.has(to);
    if (fromLive) this.counts[from as DeliveryStatus] -= 1;
    if (toLive) this.counts[to as DeliveryStatus] += 1;
    const leftQueue = from === "queued" && to !== "queued";
    const ended = to === "acknowledged" || to === "dead";
    if (!leftQueue && !toLive && !ended) return;
    const context = (snapshot?.context as DeliveryContext | undefined) ?? contextOf(child);
    const { key } = context;
    if (leftQueue) for (const target of context.targets) this.dequeue(target, key);
    // The actor releases the envelope in the same step: its end is handled from this context, when it is emitted.
    if (ended) this.ending.set(child, context);
    if (!toLive) return;
    if (to === "acknowledging") this.persistAck(key, context);
    else if (from !== undefined && LIVE_STATUSES.has(from) && !this.restoring && key !== this.accepting) this.stateWritten(key);
  }

  /** A delivery's emitted event: an end leaves the status record and frees its actor for the next message; the bus hears of each. */
  emitted(child: AnyActorRef, event: { type: string }): void {
    const emitted = event as DeliveryEmitted;
    const ends = emitted.type === "message.acknowledged" || emitted.type === "message.dead";
    const context = ends ? this.ending.get(child) : contextOf(child);
    if (context === undefined) return;
    if (ends) this.ending.delete(child);
    const { key } = context;
    if (ends) this.uncarry(key);
    // Emitted events arrive after the transition's own effects: a new attempt's write is not undone here.
    if (emitted.type === "message.retrying" || ends) this.release(key);
    if (ends) {
      const view = statusViewOf(emitted.type === "message.acknowledged" ? "acknowledged" : "dead", context);
      // An ack that waited for its commit was written when it came (persistAck); a death, or an ack that waited for nothing, is written now.
      if (emitted.type === "message.dead" || !context.commitsAcks) this.writeFinished(key, view);
      this.remember(key, view);
      this.forgetRequest(context.envelope as MessageEnvelope);
      this.liveBytes -= context.frameBytes;
    }
    const { hub } = this.options.runtime;
    // Every message passes here several times: build the stream's event only for a listener. A delivery that
    // resumes a message accepted before (by another node, or before a restart) does not announce it again.
    if (hub.wants(emitted.type) && !(emitted.type === "message.accepted" && context.resume !== undefined)) {
      // The emitted event's `type` lands where the hub puts the type: the event is the same.
      hub.emit(emitted.type, messageActorId(key), messageEventFields(context.envelope as MessageEnvelope, emitted));
    }
    if (emitted.type === "message.acknowledged") this.handOver(key);
    // A restored delivery re-enters its state: that is no news for the bus (no retry to count again).
    if (!this.restoring) this.options.onStatus(emitted, context.envelope as MessageEnvelope, context.acceptedAt);
    if (ends) this.park(child);
  }

  /** A message acknowledged without an ack of its agent is handed over now that its end is durable: its frame written, or its local sink called. */
  private handOver(key: string): void {
    const handoff = this.handoffs.get(key);
    if (handoff === undefined) return;
    this.handoffs.delete(key);
    handoff();
  }

  /**
   * A delivery actor was reaped (retired, or the bus stopping): of a message it still carried nothing stays
   * but its record in the store.
   */
  released(childId: string, _ending: PoolChildEnding): void {
    this.firstMessages.delete(childId);
    const waiting = this.idle.indexOf(childId);
    if (waiting >= 0) this.idle.splice(waiting, 1);
    const key = this.carried.get(childId);
    if (key === undefined) return;
    this.uncarry(key);
    this.localSinks.delete(key);
    this.handoffs.delete(key);
    this.release(key);
    // A message reaped before it finished leaves no record to find by its id.
    if (!this.finished.has(key)) this.unindexKey(key);
  }

  // ---- the actors ----

  /**
   * Hands a message to a delivery actor: the most recently idle one, else a new one in the pool, which takes it
   * as soon as it has started. Returns the actor; undefined when the pool was busy and spawns it after its
   * current event.
   */
  private carry(key: string, input: DeliveryInput): AnyActorRef | undefined {
    const { runtime } = this.options;
    for (let actorId = this.idle.pop(); actorId !== undefined; actorId = this.idle.pop()) {
      const actor = runtime.pooledChild(actorId) as DeliveryActor | undefined;
      if (actor === undefined) continue;
      this.link(key, actorId);
      actor.send({ type: "DELIVER", message: input });
      return actor;
    }
    const actorId = newDeliveryActorId();
    this.link(key, actorId);
    this.firstMessages.set(actorId, input);
    try {
      return runtime.spawnPooled("delivery", actorId, "delivery", undefined);
    } catch (error) {
      this.firstMessages.delete(actorId);
      throw error;
    }
  }

  private link(key: string, actorId: string): void {
    this.carriers.set(key, actorId);
    this.carried.set(actorId, key);
  }

  /** A message no longer has an actor: it ended, or its actor was reaped. */
  private uncarry(key: string): void {
    const actorId = this.carriers.get(key);
    if (actorId === undefined) return;
    this.carriers.delete(key);
    if (this.carried.get(actorId) === key) this.carried.delete(actorId);
  }

  /** A new actor has started: it takes the message it was spawned for. */
  private handFirstMessage(child: AnyActorRef): void {
    const actorId = systemIdOf(child);
    const message = actorId === undefined ? undefined : this.firstMessages.get(actorId);
    if (actorId === undefined || message === undefined) return;
    this.firstMessages.delete(actorId);
    (child as DeliveryActor).send({ type: "DELIVER", message });
  }

  /** An actor whose message ended waits for the next one, or is retired when enough wait already (or the bus is stopping). */
  private park(child: AnyActorRef): void {
    const actorId = systemIdOf(child);
    if (actorId === undefined || this.carried.has(actorId)) return;
    if (this.idle.length < this.options.maxIdleDeliveries && !this.suspended) this.idle.push(actorId);
    else child.send({ type: "RETIRE" } satisfies DeliveryEvent);
  }

  // ---- the store ----

  /** What a delivery actor starts from: a new message, or (with `resume`) one restored after a restart. */
  private inputOf(
    key: string,
    envelope: MessageEnvelope,
    { frame, frameBytes }: DeliveryFrame,
    acceptedAt: number,
    timeoutMs: number,
    resume?: DeliveryResume,
  ): DeliveryInput {
    const recipient = envelope.recipient.agent_id;
    const { routing } = envelope;
    return {
      messageId: envelope.message_id,
      key,
      envelope,
      frame,
      frameBytes,
      acceptedAt,
      targets: [recipient, ...(routing.fallback_agents ?? []).filter((agentId) => agentId !== recipient)],
      maxRetries: routing.retry_policy.max_retries,
      backoff: routing.retry_policy.backoff,
      retryBaseMs: this.options.retryBaseMs,
      ackTimeoutMs: this.options.ackTimeoutMs,
      commitsAcks: this.options.persistent,
      timeoutMs,
      ...(resume === undefined ? {} : { resume }),
    };
  }

  /** Indexes a live message by its id, and a `task_request` by its task id. */
  private track(key: string, envelope: MessageEnvelope): void {
    this.indexKey(envelope.message_id, key);
    const taskId = requestTaskIdOf(envelope);
    if (taskId !== undefined) this.requestsByTask.add(taskId, key);
  }

  /** Spawns a stored message's delivery again, where it stood, with what is left of its delays. */
  private respawn(key: string, record: StoredMessage, state: StoredDeliveryState): void {
    const { envelope, acceptedAt, timeoutMs } = record;
    const now = this.options.clock.now();
    const status = state.status === "delivered" || state.status === "retrying" ? state.status : "accepted";
    const fullPhaseMs =
      status === "delivered"
        ? this.options.ackTimeoutMs
        : status === "retrying"
          ? retryDelayMs(envelope.routing.retry_policy.backoff, this.options.retryBaseMs, state.retries)
          : 0;
    // A clock set back (or a delay shortened) never makes a delay longer than it was.
    const left = (deadline: number, fullMs: number): number => Math.min(fullMs, Math.max(0, deadline - now));
    const resume: DeliveryResume = {
      status,
      targetIndex: state.targetIndex,
      retries: state.retries,
      attempts: state.attempts,
      lastError: state.lastError,
      timeoutLeftMs: left(acceptedAt + timeoutMs, timeoutMs),
      phaseLeftMs: state.phaseDeadline === null ? 0 : left(state.phaseDeadline, fullPhaseMs),
    };
    const frame = JSON.stringify(envelope);
    const frameBytes = Buffer.byteLength(frame);
    this.liveBytes += frameBytes;
    this.track(key, envelope);
    this.carry(key, this.inputOf(key, envelope, { frame, frameBytes }, acceptedAt, timeoutMs, resume));
  }

  /** A live state as the store keeps it, with the absolute deadline of its delay (it was entered now). */
  private storedState(status: StoredLiveStatus, context: DeliveryContext): StoredDeliveryState {
    const { targetIndex, retries, attempts, lastError } = context;
    const now = this.options.clock.now();
    const phaseDeadline =
      status === "delivered"
        ? now + (resumedDelayMs(context, "delivered") ?? context.ackTimeoutMs)
        : status === "retrying"
          ? now + (resumedDelayMs(context, "retrying") ?? retryDelayMs(context.backoff, context.retryBaseMs, retries))
          : null;
    return { status, targetIndex, retries, attempts, lastError, phaseDeadline };
  }

  /** Writes a message's new state in a microtask: several transitions of one turn make one write. */
  private stateWritten(key: string): void {
    if (!this.options.persistent) return;
    this.changed.add(key);
    if (this.changesScheduled) return;
    this.changesScheduled = true;
    queueMicrotask(() => {
      this.changesScheduled = false;
      const store = this.options.store();
      for (const changedKey of this.changed) {
        const snapshot = this.childOf(changedKey)?.getSnapshot() as { value: DeliveryStatus; context: DeliveryContext } | undefined;
        // Ended meanwhile (its end is written by then), or being acknowledged: nothing to add.
        if (snapshot === undefined || !STORED_LIVE_STATUSES.has(snapshot.value)) continue;
        store.put("message_status", changedKey, this.storedState(snapshot.value as StoredLiveStatus, snapshot.context));
      }
      this.changed.clear();
    });
  }

  /**
   * The target acknowledged: its end is written (status record, envelope removed), and the message counts as
   * acknowledged (`ACK_DURABLE`) once that is durable; a message handed over without an ack is handed over then.
   */
  private persistAck(key: string, context: DeliveryContext): void {
    this.changed.delete(key);
    this.writeFinished(key, statusViewOf("acknowledged", context));
    this.awaitDurableAck(key);
  }

  /** The acks written in one turn wait for one commit, then count (`ACK_DURABLE`). */
  private awaitDurableAck(key: string): void {
    this.acksAwaitingCommit.push(key);
    if (this.acksAwaitingCommit.length === 1) queueMicrotask(() => this.commitAcks());
  }

  private commitAcks(): void {
    const keys = this.acksAwaitingCommit;
    this.acksAwaitingCommit = [];
    this.options
      .store()
      .flush()
      .then(
        () => {
          // One reaped meanwhile (the bus stopped) has its ack in the store all the same.
          for (const key of keys) this.childOf(key)?.send({ type: "ACK_DURABLE" });
        },
        (error: unknown) => {
          const waiting = keys.filter((key) => this.childOf(key) !== undefined);
          if (waiting.length === 0) return;
          // The store keeps the writes of a failed commit for its next one: the acks wait for that.
          const which = waiting.length === 1 ? `The ack of ${waiting[0]} is` : `The acks of ${waiting.length} messages are`;
          process.emitWarning(`${which} not durable yet, trying again in ${ACK_COMMIT_RETRY_MS} ms: ${String(error)}`, "TroupeBusWarning");
          this.options.clock.setTimeout(() => {
            for (const key of waiting) this.awaitDurableAck(key);
          }, ACK_COMMIT_RETRY_MS);
        },
      );
  }

  /** A finished message's status record replaces its record in the store. */
  private writeFinished(key: string, view: MessageStatusView): void {
    if (!this.options.persistent) return;
    const store = this.options.store();
    const record: StoredFinished = { ...view, status: view.status as StoredFinished["status"], order: this.nextOrder++ };
    store.put("message_status", key, record);
    store.delete("messages", key);
  }

  // ---- queues and windows ----

  /** The actor carrying a live message. */
  private childOf(key: string): DeliveryActor | undefined {
    const actorId = this.carriers.get(key);
    return actorId === undefined ? undefined : (this.options.runtime.pooledChild(actorId) as DeliveryActor | undefined);
  }

  private keysOf(messageId: string): readonly string[] {
    return this.keysById.get(messageId);
  }

  private indexKey(messageId: string, key: string): void {
    this.keysById.add(messageId, key);
  }

  private unindexKey(key: string): void {
    this.keysById.delete(key.slice(key.indexOf(MESSAGE_KEY_SEPARATOR) + 1), key);
  }

  /** A finished `task_request` can no longer be acknowledged by an answer. */
  private forgetRequest(envelope: MessageEnvelope): void {
    const taskId = requestTaskIdOf(envelope);
    if (taskId !== undefined) this.requestsByTask.delete(taskId, messageKeyOf(envelope));
  }

  /** Keeps a finished message's status record, forgetting the oldest (here and in the store) beyond `maxRetainedMessages`. */
  private remember(key: string, record: MessageStatusView): void {
    if (!this.finished.has(key)) this.finishedOrder.push(key);
    this.finished.set(key, record);
    this.counts[record.status] += 1;
    while (this.finished.size > this.options.maxRetainedMessages) {
      const oldestKey = this.finishedOrder.shift() as string;
      const oldest = this.finished.get(oldestKey) as MessageStatusView;
      this.finished.delete(oldestKey);
      this.unindexKey(oldestKey);
      this.counts[oldest.status] -= 1;
      if (this.options.persistent) this.options.store().delete("message_status", oldestKey);
    }
  }

  private enqueue(agentId: string, key: string, priority: MessageEnvelope["priority"]): void {
    let queue = this.queues.get(agentId);
    if (queue === undefined) {
      queue = new RecipientQueue();
      this.queues.set(agentId, queue);
    }
    queue.order.push(key, priority);
    queue.waiting.add(key);
  }

  private dequeue(agentId: string, key: string): void {
    const queue = this.queues.get(agentId);
    if (queue === undefined || !queue.waiting.delete(key)) return;
    // Its entry in `order` is skipped when reached; an empty queue is dropped with its stale entries.
    if (queue.waiting.size === 0) this.queues.delete(agentId);
  }

  private hasRoom(connection: AgentConnection): boolean {
    return connection.open && connection.inFlight.size < this.options.maxInFlightPerAgent;
  }

  /**
   * Writes the message; false when its agent sends no acks (at-most-once: the message counts as acknowledged,
   * and is written once that is durable, so that a crash can lose it but never deliver it twice).
   */
  private write(key: string, message: DeliveryFrame, connection: AgentConnection): boolean {
    const { frame, frameBytes } = message;
    if (!this.options.sendsAcks(connection.agentId)) {
      this.handoffs.set(key, () => connection.send(frame, frameBytes));
      return false;
    }
    connection.send(frame, frameBytes);
    connection.inFlight.add(key);
    this.writtenTo.set(key, connection);
    return true;
  }

  /**
   * Writes queued messages to the agent's socket while its window has room and its buffer takes them, most
   * urgent first; what is left waits for the next ack or the socket's 'drain'.
   */
  private pump(agentId: string): void {
    const connection = this.options.connection(agentId);
    const queue = this.queues.get(agentId);
    if (connection === undefined || queue === undefined) return;
    while (queue.waiting.size > 0 && this.hasRoom(connection)) {
      const key = queue.order.peek() as string;
      const child = queue.waiting.has(key) ? this.childOf(key) : undefined;
      if (child === undefined) {
        queue.order.shift();
        continue;
      }
      const context = contextOf(child);
      if (!connection.canWrite(context.frameBytes)) return;
      queue.order.shift();
      const awaitsAck = this.write(key, context, connection);
      // SENT moves it out of `queued`, which takes it out of the queue (see stateChanged).
      child.send({ type: "SENT", agentId });
      if (!awaitsAck) child.send({ type: "ACK", agentId });
    }
  }

  /** The attempt on the socket a message was written to is over: its window gets the room back. */
  private release(key: string): void {
    const connection = this.writtenTo.get(key);
    if (connection === undefined) return;
    this.writtenTo.delete(key);
    connection.inFlight.delete(key);
    if (connection.open) this.pump(connection.agentId);
  }
}
