/**
 * Sync senders across a cluster (docs/cluster.md): a sync sender waits on the node that holds its HTTP request
 * (or its socket), and its reply may be accepted by any node. While it waits, its node listens on the core NATS
 * subject of the message's key; a node accepting a reply to that message offers it there first, and the
 * waiting node takes it if it comes from the message's recipient (or a fallback agent). A message that dies on
 * the node delivering it is announced on the same subject, so that its sender hears of it at once.
 *
 * An answer (a `task_response` or an `error`) is also the ack of the message it answers (SPEC §3.9), and the
 * agent may send it through any node: every node hears of the answers the others accept (`troupe.answers`),
 * and acknowledges the message if it is the node delivering it.
 */
import type { Subscription } from "@nats-io/transport-node";
import { BridgeError } from "../errors.js";
import type { ClusterNode } from "../cluster/node.js";
import type { MessageEnvelope } from "../protocol/envelope.js";

const ANSWERS_SUBJECT = "troupe.answers";

/** How long a node waits for the answer to a reply it offers: past it, nobody waits for that reply. */
const OFFER_TIMEOUT_MS = 2_000;

type SyncNotice = { reply: MessageEnvelope } | { dead: ReturnType<BridgeError["toJSON"]> };

/** The sync senders waiting on this node, and the replies this node offers to the others. */
export class ClusterSyncReplies {
  /** One subscription per sync sender waiting here: bounded by the bus's sync waits. */
  private readonly waiting = new Map<string, Subscription>();

  private readonly answers: Subscription;

  constructor(
    private readonly node: ClusterNode,
    /** An answer another node accepted: the ack of the message it answers, if this node delivers that. */
    onAnswer: (answer: MessageEnvelope) => void,
  ) {
    this.answers = node.connection.nats.subscribe(ANSWERS_SUBJECT, {
      callback: (error, message) => {
        if (error !== null) return;
        try {
          const { from, answer } = message.json<{ from: string; answer: MessageEnvelope }>();
          if (from !== node.nodeId && typeof answer?.sender?.agent_id === "string") onAnswer(answer);
        } catch {
          // Not one of troupe's: ignored.
        }
      },
    });
  }

  /** This node accepted an answer: the node delivering the message it answers acknowledges it. */
  announceAnswer(answer: MessageEnvelope): void {
    if (answer.message_type !== "task_response" && answer.message_type !== "error") return;
    try {
      this.node.connection.nats.publish(ANSWERS_SUBJECT, JSON.stringify({ from: this.node.nodeId, answer }));
    } catch {
      // NATS is closed: the message waits for an ack frame, or is delivered again.
    }
  }

  /**
   * A sync sender waits here for the reply to the message of `key`: replies from `answerers` offered by other
   * nodes go to `resolve`, a death announced by the node delivering it to `reject`. Resolves once NATS has the
   * subscription (before the message is published).
   */
  async wait(key: string, answerers: readonly string[], resolve: (reply: MessageEnvelope) => void, reject: (error: BridgeError) => void): Promise<void> {
    const subscription = this.node.connection.nats.subscribe(subjectOf(key), {
      callback: (error, message) => {
        if (error !== null) return;
        let notice: SyncNotice;
        try {
          notice = message.json<SyncNotice>();
        } catch {
          return;
        }
        if ("dead" in notice) {
          reject(new BridgeError(notice.dead.type, notice.dead.message, notice.dead.details));
          return;
        }
        const taken = answerers.includes(notice.reply.sender.agent_id);
        if (taken) resolve(notice.reply);
        message.respond(JSON.stringify({ taken }));
      },
    });
    this.waiting.set(key, subscription);
    try {
      await this.node.connection.nats.flush();
    } catch (error) {
      this.done(key);
      throw new BridgeError("TRANSPORT", `NATS did not take the wait for the reply to ${key}: ${String(error)}`, { unavailable: true });
    }
  }

  /** The sync sender of `key` has its answer (or gave up): it listens no more. */
  done(key: string): void {
    this.waiting.get(key)?.unsubscribe();
    this.waiting.delete(key);
  }

  /** Offers a reply to the sync sender of `replyTo` wherever it waits; true when it took it. */
  async offer(replyTo: string, reply: MessageEnvelope): Promise<boolean> {
    if (this.waiting.has(replyTo)) return false;
    try {
      const answer = await this.node.connection.nats.request(subjectOf(replyTo), JSON.stringify({ reply } satisfies SyncNotice), { timeout: OFFER_TIMEOUT_MS });
      return answer.json<{ taken?: unknown }>().taken === true;
    } catch {
      // No responders (nobody waits for it), or no answer in time: delivered as any other message.
      return false;
    }
  }

  /** The message of `key` died on this node: its sync sender, wherever it waits, hears of it. */
  dead(key: string, error: BridgeError): void {
    try {
      this.node.connection.nats.publish(subjectOf(key), JSON.stringify({ dead: error.toJSON() } satisfies SyncNotice));
    } catch {
      // NATS is closed: the sender's wait ends with its timeout.
    }
  }

  /** Every wait ends (the bus is stopping). */
  stop(): void {
    this.answers.unsubscribe();
    for (const subscription of this.waiting.values()) subscription.unsubscribe();
    this.waiting.clear();
  }
}

function subjectOf(key: string): string {
  return `troupe.sync.${Buffer.from(key, "utf8").toString("base64url")}`;
}
