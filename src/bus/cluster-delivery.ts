/**
 * The bus's side of the cluster's message stream (docs/cluster.md): a message accepted by any node is published
 * to the stream; the node its recipient is connected to pulls it and hands it to its own deliveries (priorities,
 * window, acks, retries, dead letters: the delivery actors of one node), and acknowledges it to the stream once
 * its delivery ended. A node that dies holding messages gives them back by silence: the stream delivers them
 * again after its ack wait, to whichever node pulls next.
 */
import type { Clock } from "../clock.js";
import { toBridgeError } from "../errors.js";
import type { ClusterNode } from "../cluster/node.js";
import type { MessageSubscription, Published, StreamedMessage, TakenMessages } from "../cluster/message-stream.js";
import { MESSAGE_KEY_SEPARATOR, messageKeyOf, PRIORITIES, type MessageEnvelope } from "../protocol/envelope.js";
import { listPages } from "../store/pages.js";
import type { Store } from "../store/store.js";
import { isFinishedRecord, type Deliveries } from "./delivery.js";

/** A message as it travels on the stream: the envelope, and what its delivery needs from its acceptance. */
interface StreamedRecord {
  envelope: MessageEnvelope;
  acceptedAt: number;
  timeoutMs: number;
  /** Which of its targets it goes to: 0 (its recipient), or the fallback agent a node handed it to. */
  targetIndex?: number;
  /** In its `messages` record: the node that accepted it, and published it (or was killed before it could). */
  node?: string;
}

/** How long a pulled message the node could not take now (its queue full, the store unreachable) waits before it is pulled again. */
const RETAKE_DELAY_MS = 1_000;

/** How long after a message's deadline the node that accepted it looks whether it still waits in the stream. */
const SWEEP_GRACE_MS = 100;
/** Messages one look takes from the stream; a full batch means more may wait: it looks again this soon. */
const SWEEP_BATCH = 100;
const SWEEP_AGAIN_MS = 1_000;

/**
 * How much sooner than the stream's duplicate window a recorded message is published again (`watchStored`): the
 * times compared are the accepting node's, this node's and the NATS server's clocks, which may differ by this much.
 */
const REPUBLISH_MARGIN_MS = 30_000;
/** Recorded messages published again at once. */
const REPUBLISH_BATCH = 64;

/** How long a pull that failed to start waits before it is tried again. */
const PULL_RETRY_MS = 1_000;

/** One agent's pull: its subscription once started, and its retry while it fails. */
interface Pull {
  subscription: MessageSubscription | undefined;
  ended: boolean;
  retry: unknown;
  /** The attempt under way: ending waits for it. */
  starting: Promise<void>;
}

/** What the cluster's deliveries need from the bus. */
export interface ClusterDeliveriesOptions {
  node: ClusterNode;
  deliveries: Deliveries;
  store(): Store;
  clock: Clock;
  /** Messages of one recipient pulled and not yet finished here: its pull window. */
  maxPulledPerAgent: number;
}

/** The messages of the agents connected to this node, pulled from the cluster's stream. */
export class ClusterDeliveries {
  /** The pull of each agent connected here, by agent id: bounded by the node's connections. */
  private readonly pulls = new Map<string, Pull>();
  /** The stream's handle of each message pulled and not finished here, by key: bounded by the pull windows. */
  private readonly held = new Map<string, StreamedMessage>();
  /** Pulled messages waiting for the end of the turn: taken together, most urgent first. */
  private batch: StreamedMessage[] = [];
  /**
   * The earliest deadline this node watches for each agent not connected here (of the messages it accepted for
   * it, or gave back to the stream), and its timer: bounded by the agents the node knows. `lookingAgain`: the
   * look an ack wait after one that could not reach every message (below).
   */
  private readonly deadlines = new Map<string, { at: number; timer: unknown; lookingAgain: boolean }>();
  /** Acks on their way to the stream: stopping waits for them (bounded by the messages held). */
  private readonly acking = new Set<Promise<void>>();
  private keepAlive: unknown;
  private readonly keepAliveMs: number;
  private stopped = false;
  private readonly stopFollowingState: () => void;

  constructor(private readonly options: ClusterDeliveriesOptions) {
    // A delivery in progress keeps its message: well within the ack wait, the stream hears it is being worked on.
    this.keepAliveMs = Math.max(50, Math.floor(options.node.messages.ackWaitMs / 3));
    this.keepAlive = this.options.clock.setTimeout(() => this.keepHeldAlive(), this.keepAliveMs);
    // Back from an outage (a NATS restart loses the pulls waiting on the server): every pull starts again at once,
    // rather than when the client misses the server's heartbeats.
    this.stopFollowingState = options.node.connection.onStateChange((state) => {
      if (state === "connected") for (const agentId of [...this.pulls.keys()]) void this.restartPull(agentId);
    });
  }

  private keepHeldAlive(): void {
    if (this.stopped) return;
    for (const message of this.held.values()) message.working();
    this.keepAlive = this.options.clock.setTimeout(() => this.keepHeldAlive(), this.keepAliveMs);
  }

  /** What `GET /health` shows of it: agents whose messages are pulled here, and messages held. */
  view(): { pulling: number; held: number } {
    return { pulling: this.pulls.size, held: this.held.size };
  }

  /** Publishes an accepted message; resolves once the stream has it. TRANSPORT when NATS does not answer. */
  publish(envelope: MessageEnvelope, acceptedAt: number, timeoutMs: number): Promise<Published> {
    const record: StreamedRecord = { envelope, acceptedAt, timeoutMs };
    const priority = envelope.priority;
    return this.options.node.messages.publish({ recipient: envelope.recipient.agent_id, key: messageKeyOf(envelope), priority, data: JSON.stringify(record) });
  }

  /**
   * A message this node accepted must die at `deadline` if no node has taken it by then (its agent is connected
   * nowhere): at that time, this node takes the recipient's messages that no node holds, and those past their
   * deadline die here (DELIVERY_FAILED to their senders) as they would on any node; the others go back. A node
   * that holds a message (its agent is connected there) times it out itself.
   */
  watch(recipient: string, deadline: number): void {
    this.watchAt(recipient, deadline, false);
  }

  private watchAt(recipient: string, deadline: number, lookingAgain: boolean): void {
    if (this.stopped || this.pulls.has(recipient)) return;
    const current = this.deadlines.get(recipient);
    if (current !== undefined && current.at <= deadline) return;
    if (current !== undefined) this.options.clock.clearTimeout(current.timer);
    const delayMs = Math.max(0, deadline - this.options.clock.now()) + SWEEP_GRACE_MS;
    const timer = this.options.clock.setTimeout(() => void this.sweep(recipient, lookingAgain), delayMs);
    this.deadlines.set(recipient, { at: deadline, timer, lookingAgain });
  }

  /**
   * Watches the deadline of every message the shared store holds unfinished, for each of its targets: what a
   * node does when it starts and when it takes over a dead node, whose watches died with it. A message whose
   * agent is connected somewhere costs one look at its deadline (the node that holds it times it out); one
   * whose agent is connected nowhere dies at its deadline here.
   *
   * And the messages node `deadNode` (the one taken over, or this node's previous run) accepted are published
   * again, under their key: it may have been killed between committing a message's record and publishing it,
   * which left a record that no delivery would ever end. The stream answers `duplicate` for those it has had
   * (acked or not) within its duplicate window, so only records that recent are published again. Resolves with
   * the messages watched and those the stream did not have.
   */
  async watchStored(deadNode: string): Promise<{ watched: number; republished: number }> {
    let watched = 0;
    let republished = 0;
    let failed: string | undefined;
    let refused = 0;
    if (this.stopped) return { watched, republished };
    const recentSince = this.options.clock.now() - (this.options.node.messages.duplicateWindowMs - REPUBLISH_MARGIN_MS);
    // A page at a time: the stream's bounds bound the messages, not what one read may hold.
    for await (const page of listPages(this.options.store(), "messages")) {
      const unsure: StreamedRecord[] = [];
      for (const { value } of page) {
        const record = asRecord(value);
        if (record === undefined) continue;
        const deadline = record.acceptedAt + record.timeoutMs;
        this.watch(record.envelope.recipient.agent_id, deadline);
        for (const fallback of record.envelope.routing?.fallback_agents ?? []) this.watch(fallback, deadline);
        watched += 1;
        if (record.node === deadNode && record.acceptedAt > recentSince) unsure.push(record);
      }
      for (let start = 0; start < unsure.length && !this.stopped && failed === undefined; start += REPUBLISH_BATCH) {
        const batch = await this.neverTaken(unsure.slice(start, start + REPUBLISH_BATCH));
        const answers = await Promise.allSettled(batch.map(({ envelope, acceptedAt, timeoutMs }) => this.publish(envelope, acceptedAt, timeoutMs)));
        for (const [index, answer] of answers.entries()) {
          if (answer.status === "fulfilled") {
            republished += answer.value.duplicate ? 0 : 1;
            continue;
          }
          const cause = toBridgeError(answer.reason);
          // Its recipient's queue is full: refused as a send would be (429), its record taken back. Its sender was
          // never told it was accepted (its node died first), and its next try is refused or accepted as any.
          if (cause.type === "CAPACITY") {
            this.options.deliveries.unrecord(batch[index]!.envelope);
            refused += 1;
          }
          // NATS away: the others would fail the same way, each after its timeout.
          else failed ??= cause.message;
        }
      }
    }
    // A failure leaves the others as they are: a sender's next try publishes its message.
    if (republished > 0 || refused > 0 || failed !== undefined) {
      const outcome = [
        `${republished} published again`,
        ...(refused === 0 ? [] : [`${refused} refused by the stream (full), their records taken back`]),
        ...(failed === undefined ? [] : [`the others left: ${failed}`]),
      ];
      process.emitWarning(`troupe: messages node ${deadNode} recorded and had not published (it died first): ${outcome.join("; ")}`, {
        code: "TROUPE_CLUSTER",
      });
    }
    return { watched, republished };
  }

  /**
   * The records of `records` whose message no node has taken: a node that pulls a message writes its state
   * (`message_status`) as its delivery goes, and may have handed it to a fallback agent and acked its first copy,
   * which the stream then forgets once its server restarts. Those are not published again, whatever the stream
   * says. A store that does not answer keeps them all out.
   */
  private async neverTaken(records: StreamedRecord[]): Promise<StreamedRecord[]> {
    const store = this.options.store();
    const states = await Promise.all(
      records.map(({ envelope }) =>
        store.get("message_status", messageKeyOf(envelope)).then(
          (state) => state ?? undefined,
          () => "unknown",
        ),
      ),
    );
    return records.filter((_, index) => states[index] === undefined);
  }

  /**
   * Takes the recipient's messages that no node holds: those past their deadline die here, the others go back
   * and are watched. Messages it cannot reach are held by a node: a live one times them out, or gives them back
   * (and watches them) when the agent leaves it; one that died before this look gives them back by silence
   * within an ack wait, so the node looks once more then (not again after that look); the node that takes over one
   * that dies later watches every unfinished message of the store.
   */
  private async sweep(recipient: string, lookingAgain: boolean): Promise<void> {
    this.deadlines.delete(recipient);
    // Pulled here: this node's deliveries time its messages out.
    if (this.stopped || this.pulls.has(recipient)) return;
    let taken: TakenMessages;
    try {
      taken = await this.options.node.messages.take(recipient, SWEEP_BATCH, { maxInFlight: this.options.maxPulledPerAgent });
    } catch (error) {
      process.emitWarning(`Looking for expired messages of ${recipient} failed, trying again: ${String(error)}`, "TroupeBusWarning");
      this.watchAt(recipient, this.options.clock.now() + SWEEP_AGAIN_MS, lookingAgain);
      return;
    }
    const now = this.options.clock.now();
    let next = taken.messages.length === SWEEP_BATCH ? now + SWEEP_AGAIN_MS : undefined;
    for (const message of taken.messages) {
      const record = parseRecord(message.data);
      const deadline = record === undefined ? now : record.acceptedAt + record.timeoutMs;
      if (deadline <= now || this.stopped) {
        // Taken like any pulled message: its delivery here dies of its timeout at once.
        this.pulled(message);
        continue;
      }
      message.retryAfter(0);
      next = Math.min(next ?? deadline, deadline);
    }
    if (next !== undefined) this.watch(recipient, next);
    if (taken.unreached > 0 && !lookingAgain) this.watchAt(recipient, now + this.options.node.messages.ackWaitMs, true);
  }

  /** An agent connected here: its messages are pulled here from now on. */
  follow(agentId: string): void {
    if (this.stopped || this.pulls.has(agentId)) return;
    this.pulls.set(agentId, this.startPull(agentId));
  }

  /** A pull of an agent's messages, tried again every `PULL_RETRY_MS` while it fails (NATS or JetStream not ready). */
  private startPull(agentId: string): Pull {
    const pull: Pull = { subscription: undefined, ended: false, retry: undefined, starting: Promise.resolve() };
    const attempt = (): void => {
      pull.retry = undefined;
      pull.starting = this.options.node.messages
        .subscribe(agentId, (message) => this.pulled(message), { maxInFlight: this.options.maxPulledPerAgent })
        .then(
          (subscription) => {
            if (pull.ended) void subscription.stop().catch(() => undefined);
            else pull.subscription = subscription;
          },
          (error: unknown) => {
            if (pull.ended) return;
            process.emitWarning(`Pulling the messages of ${agentId} from the cluster failed, trying again: ${String(error)}`, "TroupeBusWarning");
            pull.retry = this.options.clock.setTimeout(attempt, PULL_RETRY_MS);
          },
        );
    };
    attempt();
    return pull;
  }

  private async endPull(pull: Pull): Promise<void> {
    pull.ended = true;
    if (pull.retry !== undefined) this.options.clock.clearTimeout(pull.retry);
    await pull.starting;
    await pull.subscription?.stop().catch(() => undefined);
  }

  private async restartPull(agentId: string): Promise<void> {
    const old = this.pulls.get(agentId);
    if (old === undefined || this.stopped) return;
    const fresh = this.startPull(agentId);
    this.pulls.set(agentId, fresh);
    await this.endPull(old);
  }

  /**
   * An agent left this node: its messages are no longer pulled here, and those pulled and not written to it (its
   * socket's unacknowledged ones failed their attempt, and wait for the next) go back to the stream at once, for
   * the node it connects to next. This node watches their deadlines (they die at them if it connects nowhere),
   * and looks again an ack wait later for any that its pull received and never handed over.
   */
  async unfollow(agentId: string): Promise<void> {
    const pull = this.pulls.get(agentId);
    if (pull === undefined) return;
    this.pulls.delete(agentId);
    await this.endPull(pull);
    // It came back meanwhile: what is held for it stays.
    if (this.pulls.has(agentId)) return;
    for (const [key, message] of this.held) {
      if (message.recipient !== agentId || !this.options.deliveries.withdraw(key)) continue;
      this.held.delete(key);
      this.giveBack(message);
    }
    this.watch(agentId, this.options.clock.now() + this.options.node.messages.ackWaitMs);
  }

  /** Gives a message back to the stream for whichever node pulls its recipient next, and watches its deadline. */
  private giveBack(message: StreamedMessage): void {
    message.retryAfter(0);
    const record = parseRecord(message.data);
    if (record !== undefined) this.watch(message.recipient, record.acceptedAt + record.timeoutMs);
  }

  /**
   * A delivery ended here (acknowledged or dead, and that is in the store): the stream forgets its message.
   * `durable` resolves once the store has the end.
   */
  ended(key: string, durable: () => Promise<void>): void {
    const message = this.held.get(key);
    if (message === undefined) return;
    this.held.delete(key);
    const acked = durable()
      .then(() => message.ack())
      .catch((error: unknown) => {
        // Unacknowledged, it comes back after the ack wait; its end is then found in the store.
        process.emitWarning(`The stream did not take the end of ${key}: ${String(error)}`, "TroupeBusWarning");
      })
      .finally(() => this.acking.delete(acked));
    this.acking.add(acked);
  }

  /** Stops every pull; messages pulled and not finished come back to some node after their ack wait. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopFollowingState();
    this.options.clock.clearTimeout(this.keepAlive);
    for (const { timer } of this.deadlines.values()) this.options.clock.clearTimeout(timer);
    this.deadlines.clear();
    const pulls = [...this.pulls.values()];
    this.pulls.clear();
    // The acks on their way first: a pull's end must not race them.
    await Promise.all([...this.acking]);
    await Promise.all(pulls.map((pull) => this.endPull(pull)));
    // Given back at once: the nodes their agents are on take them without waiting for the ack wait.
    for (const message of this.held.values()) message.retryAfter(0);
    this.held.clear();
  }

  private pulled(message: StreamedMessage): void {
    if (this.stopped) return;
    this.batch.push(message);
    if (this.batch.length === 1) setImmediate(() => void this.takeBatch());
  }

  /**
   * Takes what was pulled in one turn: a message already finished (here, or by a node that died before its
   * ack reached the stream) is only acknowledged to the stream; the others go to this node's deliveries, most
   * urgent first.
   */
  private async takeBatch(): Promise<void> {
    const batch = this.batch;
    this.batch = [];
    const { deliveries } = this.options;
    const fresh: Array<{ message: StreamedMessage; record: StreamedRecord; key: string }> = [];
    for (const message of batch) {
      const record = parseRecord(message.data);
      if (record === undefined) {
        process.emitWarning(`A message on the cluster's stream is not one of troupe's (${message.key}): dropped`, "TroupeBusWarning");
        void message.ack().catch(() => undefined);
        continue;
      }
      // The delivery's key: a message handed to a fallback agent's node travels under another stream id.
      const key = messageKeyOf(record.envelope);
      if (deliveries.isLive(key)) {
        // Delivered again while its delivery here goes on (its keep-alive came late): the newer handle counts.
        this.held.set(key, message);
        message.working();
        continue;
      }
      if (deliveries.finishedHere(key) !== undefined) {
        void message.ack().catch(() => undefined);
        continue;
      }
      fresh.push({ message, record, key });
    }
    const finished = await Promise.all(fresh.map(({ key }) => this.finishedInStore(key)));
    const order = fresh.map((entry, index) => ({ ...entry, finished: finished[index] }));
    order.sort((left, right) => PRIORITIES.indexOf(left.record.envelope.priority) - PRIORITIES.indexOf(right.record.envelope.priority));
    for (const { message, record, key, finished: done } of order) {
      if (this.stopped) return;
      if (done === undefined) {
        message.retryAfter(RETAKE_DELAY_MS);
        continue;
      }
      if (done) {
        void message.ack().catch(() => undefined);
        continue;
      }
      this.take(message, record, key);
    }
  }

  /** Whether the store holds the end of this message; undefined when the store could not say. */
  private async finishedInStore(key: string): Promise<boolean | undefined> {
    try {
      return isFinishedRecord(await this.options.store().get("message_status", key));
    } catch {
      return undefined;
    }
  }

  private take(message: StreamedMessage, { envelope, acceptedAt, timeoutMs, targetIndex = 0 }: StreamedRecord, key: string): void {
    // Its agent left while it was being taken (its pull ended meanwhile): it goes where the agent goes. One past its
    // deadline (what a sweep takes) dies here.
    if (!this.pulls.has(message.recipient) && acceptedAt + timeoutMs > this.options.clock.now()) {
      this.giveBack(message);
      return;
    }
    this.held.set(key, message);
    if (this.options.deliveries.isLive(key)) return;
    try {
      this.options.deliveries.accept(envelope, { timeoutMs, acceptedAt, recorded: true, targetIndex });
    } catch (error) {
      this.held.delete(key);
      const bridgeError = toBridgeError(error);
      if (bridgeError.type !== "CAPACITY") process.emitWarning(`Taking ${key} from the cluster failed: ${bridgeError.message}`, "TroupeBusWarning");
      message.retryAfter(RETAKE_DELAY_MS);
    }
  }

  /**
   * A delivery here moved on to a fallback agent that is not connected here: it goes to that agent's place on
   * the stream (where the fallback's node pulls it, as it would its own messages), and leaves this node once
   * the stream has it. A message that came from no stream (a runtime agent's, sent here) stays here.
   */
  handOver(key: string, envelope: MessageEnvelope, acceptedAt: number, timeoutMs: number, targetIndex: number, target: string): void {
    const from = this.held.get(key);
    if (from === undefined || this.stopped) return;
    const record: StreamedRecord = { envelope, acceptedAt, timeoutMs, targetIndex };
    this.options.node.messages
      .publish({ recipient: target, key: `${key}${MESSAGE_KEY_SEPARATOR}${targetIndex}`, priority: envelope.priority, data: JSON.stringify(record) })
      .then(
        ({ sequence }) => {
          // Written to the fallback meanwhile (it connected here): it stays here, and the copy goes.
          if (this.held.get(key) !== from || !this.options.deliveries.withdraw(key)) {
            this.options.node.messages
              .remove(sequence)
              .catch((error: unknown) => process.emitWarning(`A copy of ${key} stays on the stream: ${String(error)}`, "TroupeBusWarning"));
            return;
          }
          this.held.delete(key);
          void from.ack().catch(() => undefined);
          this.watch(target, acceptedAt + timeoutMs);
        },
        (error: unknown) => process.emitWarning(`Handing ${key} to ${target}'s node failed; it waits here: ${String(error)}`, "TroupeBusWarning"),
      );
  }
}

function parseRecord(data: string): StreamedRecord | undefined {
  try {
    return asRecord(JSON.parse(data));
  } catch {
    return undefined;
  }
}

/** A streamed message's record (or a stored one: it has the same fields), or `undefined` when `value` is none. */
function asRecord(value: unknown): StreamedRecord | undefined {
  const record = value as Partial<StreamedRecord> | null;
  const envelope = record?.envelope as Partial<MessageEnvelope> | null | undefined;
  // A record this version did not write (by hand, or another version's) is skipped, never a failed start or takeover.
  return typeof envelope === "object" &&
    envelope !== null &&
    typeof envelope.recipient?.agent_id === "string" &&
    typeof record?.acceptedAt === "number" &&
    typeof record.timeoutMs === "number"
    ? (record as StreamedRecord)
    : undefined;
}
