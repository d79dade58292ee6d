/**
 * The CommunicationBus of SPEC §3: agents register, connect over WebSocket and exchange envelopes through it;
 * workflow sessions follow their messages. It serves its routes on the same `node:http` server as
 * `GET /health` and `POST /bridge/:tool`.
 */
import { openClusterNode, type ClusterNode, type ClusterOptions } from "../cluster/node.js";
import { NodeOwnership, type OwnershipHost } from "../cluster/ownership.js";
import { ForwardedSessions } from "../cluster/forwarded-sessions.js";
import type { AgentPresence } from "../cluster/presence-view.js";
import { announceNatsState, clusterAnnouncer, type ClusterAnnounce } from "../cluster/node-events.js";
import { ForwardedA2a } from "../cluster/forwarded-a2a.js";
import { A2aRecords, loadA2aTasks } from "../a2a/a2a-records.js";
import { randomBytes, randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { DeliveryEmitted } from "../../machines/delivery.machine.js";
import { systemClock, type Clock } from "../clock.js";
import { BridgeError, toBridgeError } from "../errors.js";
import type { RuntimeEventListener, RuntimeEventType } from "../events/event-hub.js";
import { isRuntimeFramework } from "../runtime/bus-agents.js";
import { AGENT_TOKEN_HEADER } from "../protocol/headers.js";
import { Replies } from "../runtime/replies.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import { createApiKeyCheck, startHttpServer, type HttpRoute, type HttpServer } from "../server/http-server.js";
import { AgentConnections, type AgentConnection } from "./agent-connections.js";
import { AgentRegistry, parseRegistration, type AgentDescriptor, type AgentListing, type StoredRegistration } from "./agent-registry.js";
import { ResultAggregator } from "../workflows/aggregator.js";
import { Deliveries, type MessageStatusView } from "./delivery.js";
import { ClusterDeliveries } from "./cluster-delivery.js";
import { ClusterSyncReplies } from "./cluster-sync-replies.js";
import { ClusterRegistrations } from "./cluster-registrations.js";
import { openSqliteStore } from "../store/sqlite-store.js";
import { OwnedSessions, RateLimiter } from "../server/quotas.js";
import type { Store } from "../store/store.js";
import { DISCARDING_STORE } from "../store/discarding-store.js";
import { formatDuration, parseDuration } from "../protocol/durations.js";
import {
  DEFAULT_BACKOFF,
  DEFAULT_MAX_RETRIES,
  inReplyToOf,
  isAgentId,
  messageKey,
  messageKeyOf,
  parseEnvelope,
  taskIdOf,
  type MessageEnvelope,
} from "../protocol/envelope.js";
import { CLOSE_CODES, CLOSE_REASONS, isAckFrame } from "../protocol/frames.js";
import { BusMetrics, type BusMetricsSnapshot } from "./metrics.js";
import { checkStartRules, resolveBusOptions, type BusOptions, type ResolvedBusOptions } from "./options.js";
import { busRoutes, workflowRoutes } from "./routes.js";
import { pageOf, type PageRequest } from "./pagination.js";
import { answerForwarded, type ForwardedRequest } from "./forwarded-routes.js";
import { uiRoutes } from "../ui/routes.js";
import { SessionManager } from "../workflows/session-manager.js";
import { BUS_AGENT_ID, RuntimeAgents } from "./runtime-agents.js";
import { McpHttpEndpoint } from "../mcp/streamable-http.js";
import { A2aEndpoint } from "../a2a/routes.js";
import { EventStream } from "../events/event-stream.js";
import { ClusterEvents } from "../events/cluster-events.js";
import { EventSockets, isEventStreamUpgrade } from "../events/event-sockets.js";
import type { ConverseRequest, ConverseResult } from "../conversations/conversations.js";

export { BUS_AGENT_ID };

/** What sending a message answers (`POST /messages/send` sends it with status 202). */
export interface SendResult {
  success: true;
  message_id: string;
  /** `accepted`; `delivered` for `delivery_mode: "sync"`; `duplicate` for a `message_id` already accepted. */
  status: "accepted" | "delivered" | "duplicate";
  /** The recipient's reply, for `delivery_mode: "sync"`. */
  response?: MessageEnvelope;
}

type BusState = "new" | "starting" | "running" | "stopping" | "stopped";

/** How long `GET /health` of a cluster node waits for the store before it calls it unreachable. */
const HEALTH_STORE_TIMEOUT_MS = 2_000;

/** How often `stop()` looks whether every written message has been acknowledged. */
const DRAIN_POLL_MS = 10;

/** An HTTP + WebSocket message bus between agents, with workflow sessions. */
export class CommunicationBus {
  /** Workflow sessions (SPEC §3.4). `bus["sessionManager"]` works too, as in the seed. */
  readonly sessionManager: SessionManager;
  /** The workflow sessions each client created, for its quota (`maxWorkflowSessionsPerClient`). */
  readonly workflowOwners: OwnedSessions;
  /** The conversations each client started over `POST /converse`, for its quota (`maxConversationsPerClient`). */
  readonly conversationOwners: OwnedSessions;
  /** Summaries of workflow sessions. */
  readonly aggregator: ResultAggregator;
  /** The options with their defaults. */
  readonly options: ResolvedBusOptions;
  readonly clock: Clock;
  /** The hub's events over the wire (SPEC §5): `ws://…/events` and `GET /events`. */
  readonly events: EventStream;
  private readonly eventSockets: EventSockets;
  /** The whole cluster's events for this node's stream (a cluster node only). */
  private readonly clusterEvents: ClusterEvents | undefined;
  private readonly registry: AgentRegistry;
  private readonly connections: AgentConnections;
  private readonly deliveries: Deliveries;
  /** Sync senders waiting for the envelope that answers their message, by its `message_id`. */
  private readonly syncReplies: Replies<{ answerers: string[] }>;
  private readonly metrics = new BusMetrics();
  /** Stops counting the runtime's events, which may outlive this bus. */
  private readonly stopCounting: () => void;
  /** Agents registered with `metadata.acks: false`: they get at-most-once delivery (SPEC §3.9). */
  private readonly withoutAcks = new Set<string>();
  private readonly runtime: Runtime;
  private readonly ownsRuntime: boolean;
  /** The runtime's agents as bus agents `troupe://<id>` (SPEC §3.6). */
  private readonly runtimeAgents: RuntimeAgents;
  private detachMessenger: (() => void) | undefined;
  private http: HttpServer | undefined;
  /** `/mcp`: the bridge tools over MCP's Streamable HTTP. */
  private readonly mcp: McpHttpEndpoint;
  /** `/a2a`: every agent as an A2A agent (docs/a2a.md). */
  private readonly a2a: A2aEndpoint;
  private readonly tls: BusOptions["tls"];
  private readonly clusterOptions: ClusterOptions | undefined;
  private clusterNode: ClusterNode | undefined;
  /** The messages of this node's agents on the cluster's stream (a cluster node only). */
  private clusterDeliveries: ClusterDeliveries | undefined;
  /** Sync senders waiting here for replies accepted by other nodes, and replies offered to them (a cluster node only). */
  private clusterSync: ClusterSyncReplies | undefined;
  /** Registrations changed on any node, read again here (a cluster node only). */
  private clusterRegistrations: ClusterRegistrations | undefined;
  /** Reports this node's happenings in its cluster on the hub (`cluster.*` events; a cluster node only). */
  private announceCluster: ClusterAnnounce | undefined;
  /** Stops announcing this node's losses of NATS and its returns (a cluster node only). */
  private stopFollowingNats: (() => void) | undefined;
  /** In a cluster on a shared store: this node's lease, and the workflows and bridge sessions it runs (docs/cluster.md). */
  private ownership: NodeOwnership | undefined;
  /** The bridge-session tools for sessions other nodes run, and this node's answers to theirs (a cluster node with ownership only). */
  private forwardedSessions: ForwardedSessions | undefined;
  /** A2A requests for tasks and contexts other nodes serve, and this node's answers to theirs (a cluster node with ownership only). */
  private forwardedA2a: ForwardedA2a | undefined;
  /** The routes of one workflow, answering what other nodes forward (made at the first such request). */
  private ownWorkflowRoutes: HttpRoute[] | undefined;
  private state: BusState = "new";
  private stopping: Promise<void> | undefined;
  private startedAt = 0;

  constructor(options: BusOptions = {}) {
    this.options = resolveBusOptions(options);
    this.clock = options.clock ?? systemClock;
    this.ownsRuntime = options.runtime === undefined;
    if (!this.ownsRuntime && (options.store !== undefined || this.options.persistenceEnabled)) {
      throw new BridgeError("CONFIG", "store, persistenceEnabled: the bus uses the store of the runtime it is given; give the store to createRuntime", {
        field: options.store === undefined ? "persistenceEnabled" : "store",
      });
    }
    const store = options.store ?? (this.options.persistenceEnabled ? () => this.openStore() : undefined);
    this.runtime =
      options.runtime ??
      createRuntime({
        clock: this.clock,
        maxWorkflowSessions: this.options.maxWorkflowSessions,
        ...(options.inspect ? { inspect: options.inspect } : {}),
        ...(store === undefined ? {} : { store }),
      });
    this.tls = options.tls;
    this.clusterOptions = options.cluster;
    this.sessionManager = new SessionManager({
      clock: this.clock,
      runtime: this.runtime,
      retentionMs: this.options.workflowRetentionMs,
      maxSharedContextBytes: this.options.maxSharedContextBytes,
      send: (envelope) => this.send(envelope),
    });
    this.aggregator = new ResultAggregator(this.sessionManager);
    this.workflowOwners = new OwnedSessions(
      "workflow sessions",
      this.options.maxWorkflowSessionsPerClient ?? Math.max(1, Math.floor(this.options.maxWorkflowSessions / 4)),
      (sessionId) => this.sessionManager.getSession(sessionId) !== undefined,
    );
    this.conversationOwners = new OwnedSessions(
      "conversations",
      this.options.maxConversationsPerClient ?? Math.max(1, Math.floor(this.runtime.limits.maxSessions / 4)),
      (conversationId) => this.runtime.hasConversation(conversationId),
    );
    // A runtime that keeps nothing across restarts is written nothing (its own memory store would only cost).
    const busStore = (): Store => (this.runtime.persistent ? this.runtime.store : DISCARDING_STORE);
    this.registry = new AgentRegistry(this.sessionManager, this.runtime, busStore);
    this.syncReplies = new Replies(this.clock);
    // One check of the bus key for every socket: agents' and the event stream's.
    const checkApiKey = createApiKeyCheck(this.options.apiKey);
    this.connections = new AgentConnections(
      {
        maxConnections: this.options.maxConnections,
        heartbeatIntervalMs: this.options.heartbeatInterval,
        maxPayloadBytes: this.options.maxBodyBytes,
        maxSocketBufferBytes: this.options.maxSocketBufferBytes,
        frameRate: new RateLimiter(
          this.options.requestsPerSecondPerClient,
          this.options.requestBurstPerClient ?? 2 * this.options.requestsPerSecondPerClient,
          this.clock,
        ),
        checkApiKey,
        clock: this.clock,
      },
      {
        isKnown: (agentId) => this.registry.mayConnect(agentId),
        isRuntimeAgent: (agentId) => this.registry.isRuntimeAgent(agentId),
        authorize: (agentId, token) => {
          if (this.options.agentAuth === "token" && !this.registry.tokenMatches(agentId, token)) {
            throw new BridgeError("AUTH", `${agentId}: its ${AGENT_TOKEN_HEADER} (or the subprotocol token.<token>) is missing or wrong`, { agentId });
          }
        },
        connected: (connection) => this.onConnected(connection),
        disconnected: (connection) => this.onDisconnected(connection),
        frame: (connection, frame) => this.onFrame(connection, frame),
        alive: (connection) => this.registry.heartbeat(connection.agentId, this.clock.now()),
        drained: (connection) => this.deliveries.drained(connection),
      },
    );
    this.deliveries = new Deliveries({
      runtime: this.runtime,
      clock: this.clock,
      connection: (agentId) => this.runtimeAgents.endpoint(agentId) ?? this.connections.get(agentId),
      sendsAcks: (agentId) => !this.withoutAcks.has(agentId),
      ackTimeoutMs: this.options.ackTimeout,
      retryBaseMs: this.options.retryDelay,
      maxInFlightPerAgent: this.options.maxInFlightPerAgent,
      maxQueuedPerAgent: this.options.maxQueuedPerAgent,
      maxQueuedBytes: this.options.maxQueuedBytes,
      maxRetainedMessages: this.options.maxRetainedMessages,
      maxIdleDeliveries: this.options.maxIdleDeliveries,
      store: busStore,
      persistent: this.runtime.persistent,
      clustered: options.cluster !== undefined,
      fallbackElsewhere: (context) =>
        this.clusterDeliveries?.handOver(
          context.key,
          context.envelope as MessageEnvelope,
          context.acceptedAt,
          context.timeoutMs,
          context.targetIndex,
          context.targets[context.targetIndex] as string,
        ),
      onStatus: (event, envelope, acceptedAt) => this.onStatus(event, envelope, acceptedAt),
    });
    this.runtimeAgents = new RuntimeAgents({
      runtime: this.runtime,
      clock: this.clock,
      messageTimeoutMs: this.options.messageTimeout,
      maxAskBytes: this.options.maxBodyBytes,
      maxAskDepth: this.options.maxAskDepth,
      maxBusSessions: this.options.maxBusSessions ?? Math.max(1, Math.floor(this.runtime.limits.maxSessions / 2)),
      send: (envelope) => this.send(envelope),
      acknowledge: (endpoint, messageId) => this.deliveries.acknowledge(endpoint, messageId),
      // In a cluster, a workflow another node runs was checked there when its task was accepted: it counts as active
      // here (the bridge sessions of its tasks end with their idle time, not with the workflow).
      workflowActive: (workflowId) =>
        this.sessionManager.getSession(workflowId)?.status === "active" || (this.ownership !== undefined && !this.sessionManager.runs(workflowId)),
      // Deltas are best effort: they never take the half of a queue that answers need.
      hasRoomFor: (agentId) => this.deliveries.queuedFor(agentId) < this.options.maxQueuedPerAgent / 2,
      isWaiting: (senderId, messageId) => {
        const status = this.deliveries.status(messageId, senderId)?.status;
        return status === "accepted" || status === "queued";
      },
    });
    this.mcp = new McpHttpEndpoint(this.runtime, { maxSessions: this.options.maxMcpSessions, sessionIdleMs: this.options.mcpSessionIdleMs });
    this.a2a = new A2aEndpoint(this, this.runtime);
    this.clusterEvents = options.cluster === undefined ? undefined : new ClusterEvents(this.runtime.hub, this.clock);
    this.events = new EventStream(this.clusterEvents ?? this.runtime.hub, {
      bufferSize: this.options.eventBufferSize,
      bufferBytes: this.options.eventBufferBytes,
      bufferMode: this.options.eventBuffer,
      bufferIdleMs: this.options.eventBufferIdleMs,
      maxSubscribers: this.options.maxEventSubscribers,
      maxSubscribersPerClient: this.options.maxEventSubscribersPerClient ?? Math.max(1, Math.floor(this.options.maxEventSubscribers / 4)),
      maxBufferedBytes: this.options.maxSocketBufferBytes,
      heartbeatMs: this.options.heartbeatInterval,
      clock: this.clock,
    });
    this.eventSockets = new EventSockets(this.events, { checkApiKey, closeGraceMs: this.options.closeGraceMs });
    this.stopCounting = this.metrics.observe(this.runtime);
    for (const type of ["session_completed", "session_terminated"] as const) {
      this.sessionManager.on(type, ({ sessionId }) => this.runtimeAgents.workflowEnded(sessionId));
    }
  }

  /**
   * `POST /converse`: a user's message to the runtime's agents (`runtime.converse`, SPEC §4); the body is
   * validated there. A client may start at most `maxConversationsPerClient` live conversations (429 past it);
   * messages to conversations already alive are not counted.
   */
  converse(body: unknown, client: string): Promise<ConverseResult> {
    return this.runtime.converse(body as ConverseRequest, {
      owner: { mayStart: () => this.conversationOwners.check(client), started: (conversationId) => this.conversationOwners.add(client, conversationId) },
    });
  }

  /** The SQLite store of `persistenceEnabled`, in `dataDir`, encrypted with `encryptionKey` when `encryptionEnabled`. */
  private openStore(): Promise<Store> {
    const { dataDir, encryptionEnabled, encryptionKey } = this.options;
    return openSqliteStore({ dir: dataDir, ...(encryptionEnabled && encryptionKey !== undefined ? { encryptionKey } : {}) });
  }

  /** This node's handle on its cluster (after `start()` with `cluster` options), or undefined. */
  get cluster(): ClusterNode | undefined {
    return this.clusterNode;
  }

  /** Where the bus listens, e.g. `http://127.0.0.1:8080` (after `start()`). */
  get url(): string {
    return this.listening().url;
  }

  /** The port it listens on (the one picked, when 0 was asked for). */
  get port(): number {
    return this.listening().port;
  }

  /**
   * Checks the key rules (`dev-key` or no key on a non-loopback host is CONFIG), starts the runtime it owns,
   * restores what the runtime's store holds (registrations and agent tokens, then every message not yet
   * finished, see docs/durability.md) and listens. A port in use is CONFIG.
   */
  async start(): Promise<void> {
    if (this.state !== "new") throw new BridgeError("INTERNAL", `The bus cannot start: it is ${this.state}`);
    checkStartRules(this.options);
    this.state = "starting";
    if (this.clusterOptions !== undefined) {
      try {
        // The stream holds what one node's queues would: maxQueuedPerAgent per recipient and priority, maxQueuedBytes in all.
        const queueLimits = { perRecipientPriority: this.options.maxQueuedPerAgent, maxBytes: this.options.maxQueuedBytes };
        this.clusterNode = await openClusterNode({ ...this.clusterOptions, queueLimits }, this.clock);
        this.announceCluster = clusterAnnouncer(this.runtime.hub, this.clusterNode.nodeId);
        // Workflows and bridge sessions are shared only through a store the runtime keeps; its sessions are this
        // node's only if the runtime learns so before it restores any (the bus starts a runtime it is given, then).
        if (this.runtime.persistent) {
          if (this.runtime.started) {
            throw new BridgeError(
              "CONFIG",
              "cluster: give the bus its runtime unstarted (the bus starts it once the node holds its lease), or let the bus make it",
              { field: "runtime" },
            );
          }
          const ownership = new NodeOwnership(this.clusterNode, this.ownershipHost(), { clock: this.clock });
          await ownership.claim();
          this.ownership = ownership;
          this.forwardedSessions = new ForwardedSessions(this.clusterNode, ownership, this.runtime);
          this.forwardedA2a = new ForwardedA2a(this.clusterNode, ownership, this.runtime, () => this.runtime.store, this.a2a);
          this.a2a.joinCluster(new A2aRecords(() => this.runtime.store, ownership), this.forwardedA2a);
          this.sessionManager.setOwner(ownership);
          this.runtime.setSessionOwner(ownership);
        }
      } catch (error) {
        this.state = "stopped";
        await this.ownership?.stop();
        await this.clusterNode?.close();
        throw error;
      }
    }
    try {
      if (this.ownsRuntime || (this.ownership !== undefined && !this.runtime.started)) await this.runtime.start();
    } catch (error) {
      this.state = "stopped";
      await this.ownership?.stop();
      await this.clusterNode?.close();
      throw error;
    }
    if (this.clusterNode !== undefined) {
      try {
        this.joinCluster(this.clusterNode);
      } catch (error) {
        this.state = "stopped";
        if (this.ownsRuntime) await this.runtime.stop();
        // Its lease was claimed: released, and its renewals stopped, before the connection closes.
        await this.ownership?.stop();
        await this.clusterNode.close();
        this.clusterNode = undefined;
        throw error;
      }
    }
    try {
      // The workflow sessions of the runtime's store come back before anyone can ask for them.
      await this.sessionManager.restore();
      if (this.ownership !== undefined) {
        // So do the A2A contexts of its restored sessions, and the A2A tasks this node kept before it restarted.
        this.a2a.adoptSessions(this.runtime.restoredSessions());
        await this.a2a.adoptTasks(await loadA2aTasks(this.runtime.store, this.ownership.nodeId), { replace: false });
      }
      // On a cluster node, every registration read is trusted for a lease time (not read again at its first use).
      if (this.clusterRegistrations !== undefined) await this.clusterRegistrations.readEverything();
      else for (const descriptor of await this.registry.restore()) this.giveActor(descriptor);
      this.runtimeAgents.start();
      this.detachMessenger = this.runtime.attachMessenger(this.runtimeAgents);
      // Before the bus listens: restored messages go into their queues before any new one.
      await this.deliveries.restore();
      if (this.clusterNode !== undefined) await this.watchStoredDeadlines(this.clusterNode.nodeId);
      this.http = await startHttpServer(this.runtime, {
        port: this.options.port,
        host: this.options.host,
        ...(this.options.apiKey === undefined ? {} : { apiKey: this.options.apiKey }),
        ...(this.tls === undefined ? {} : { tls: this.tls }),
        maxBodyBytes: this.options.maxBodyBytes,
        closeGraceMs: this.options.closeGraceMs,
        connectionIdleMs: this.options.connectionIdleMs,
        bodyTimeoutMs: this.options.bodyTimeoutMs,
        quotas: {
          maxConnectionsPerClient: this.options.maxConnectionsPerClient,
          requestsPerSecondPerClient: this.options.requestsPerSecondPerClient,
          ...(this.options.requestBurstPerClient === undefined ? {} : { requestBurstPerClient: this.options.requestBurstPerClient }),
          ...(this.options.maxBridgeSessionsPerClient === undefined ? {} : { maxBridgeSessionsPerClient: this.options.maxBridgeSessionsPerClient }),
        },
        ...(this.clusterNode === undefined ? {} : { clusterHealth: () => this.clusterHealth() }),
        routes: [
          ...busRoutes(this),
          ...this.mcp.routes(),
          ...uiRoutes(this.runtime, () => (this.clusterEvents ?? this.runtime.hub).lastSeq),
          ...this.a2a.routes(),
        ],
        onUpgrade: (req, socket, head) =>
          isEventStreamUpgrade(req) ? this.eventSockets.handleUpgrade(req, socket, head) : this.agentUpgrade(req, socket, head),
      });
      await this.ownership?.start();
      await this.forwardedSessions?.start();
      await this.forwardedA2a?.start();
    } catch (error) {
      this.state = "stopped";
      this.forwardedSessions?.stop();
      this.forwardedA2a?.stop();
      this.detachMessenger?.();
      await this.http?.close();
      await this.runtimeAgents.stop();
      this.deliveries.stop();
      await this.clusterDeliveries?.stop();
      this.clusterSync?.stop();
      this.clusterRegistrations?.stop();
      this.clusterEvents?.leave();
      this.stopFollowingNats?.();
      if (this.ownsRuntime) await this.runtime.stop();
      await this.ownership?.stop();
      await this.clusterNode?.close();
      throw error;
    }
    this.startedAt = this.clock.now();
    this.events.start();
    this.connections.startHeartbeat();
    this.state = "running";
    // After a restart: tasks whose prompts it interrupted are answered with an error, then restored auto
    // workflows still running send their pending tasks again (the bus drops those it already has).
    this.runtimeAgents.answerInterrupted();
    this.sessionManager.resume();
  }

  /**
   * Stops gracefully: refuses new sockets, waits up to `closeGraceMs` for written messages to be acknowledged,
   * fails sync senders still waiting, closes every agent socket with 1001 (which fails no message's attempt),
   * lets HTTP requests in flight finish, then stops every actor (and the runtime it owns). Messages not yet
   * acknowledged stay in the store as they were (queued, waiting for an ack, or between retries) and resolves
   * once that is durable: the next `start()` on the same store delivers them. With the default memory store
   * they are gone with the process. With `withRuntime`, a runtime the bus was given is stopped with it too (what
   * `troupe serve` does): a cluster node then lets its lease go, and the other nodes take its work over at their
   * next scan rather than a lease time later.
   */
  stop({ withRuntime = false }: { withRuntime?: boolean } = {}): Promise<void> {
    if (this.state === "starting") return Promise.reject(new BridgeError("INTERNAL", "The bus is still starting: await start() first"));
    if (this.stopping === undefined && (this.state === "new" || this.state === "stopped")) {
      this.state = "stopped";
      return Promise.resolve();
    }
    this.stopping ??= this.shutdown(this.ownsRuntime || withRuntime);
    return this.stopping;
  }

  /**
   * Listens to the event stream (SPEC §5): the same hub as `runtime.on`, bus and bridge alike (`message.*`,
   * `workflow.*`, `agent.*`, `prompt.*`, `actor.*`); `"*"` for every type. Returns the function that unsubscribes.
   */
  on<T extends RuntimeEventType | "*">(type: T, listener: RuntimeEventListener<T>): () => void {
    return this.runtime.on(type, listener);
  }

  /**
   * `POST /messages/send`: with `agentAuth: "token"`, a registered sender's token must come with it (no
   * client may send as another agent); code that embeds the bus sends with `send`.
   */
  async sendOverHttp(envelope: unknown, presentedToken: string | undefined): Promise<SendResult> {
    this.checkRunning();
    const sender = (envelope as { sender?: { agent_id?: unknown } } | null)?.sender?.agent_id;
    if (this.options.agentAuth === "token" && isAgentId(sender)) {
      // On a cluster node, the sender may have registered, or changed its token, on another node.
      if (this.clusterRegistrations !== undefined) await this.freshRegistrations([sender]);
      if (this.registry.isRegistered(sender)) this.checkAgentToken(sender, presentedToken);
    }
    return this.send(envelope);
  }

  /**
   * Resolves once everything the bus has written to its store so far is durable; rejects with a `BridgeError`
   * when the store could not commit it. The bus awaits it before it answers a message, a registration or a
   * deregistration; code that calls `registerAgent` directly may await it too.
   */
  persisted(): Promise<void> {
    return this.runtime.persistent ? this.runtime.store.flush() : Promise.resolve();
  }

  /** Sends a message as `POST /messages/send` does; see `SendResult`. */
  send(envelope: unknown): Promise<SendResult> {
    return this.accept(envelope, undefined);
  }

  /** A message's status, as `GET /messages/:id` answers it; NOT_FOUND when it is not (or no longer) known. */
  messageStatus(messageId: string, sender?: string): MessageStatusView {
    const status = this.deliveries.status(messageId, sender);
    if (status === undefined) throw new BridgeError("NOT_FOUND", `Message not found: ${messageId}`, { messageId, ...(sender === undefined ? {} : { sender }) });
    return status;
  }

  /**
   * `GET /messages/:id`: `messageStatus`, and on a cluster node, for a message this node does not hold, what the
   * shared store has of it (naming the sender with `?sender=` is then needed: the store keeps messages by
   * sender and id).
   */
  async findMessageStatus(messageId: string, sender?: string): Promise<MessageStatusView> {
    const here = this.deliveries.status(messageId, sender);
    if (here !== undefined) return here;
    if (this.clusterNode !== undefined && sender !== undefined) {
      let stored: MessageStatusView | undefined;
      try {
        stored = await this.deliveries.storedStatus(messageKey(sender, messageId));
      } catch (error) {
        throw new BridgeError("TRANSPORT", `The store did not answer for ${messageId}: ${toBridgeError(error).message}`, {
          unavailable: true,
          retryable: true,
        });
      }
      if (stored !== undefined) return stored;
    }
    const hint = this.clusterNode !== undefined && sender === undefined ? " (on a cluster, name its sender with ?sender= to look in the shared store)" : "";
    throw new BridgeError("NOT_FOUND", `Message not found: ${messageId}${hint}`, { messageId, ...(sender === undefined ? {} : { sender }) });
  }

  /**
   * Registers an agent: `{ agent_descriptor: {...} }` or the bare descriptor. It gets an actor in the runtime,
   * online while its socket is. The id of one of the runtime's own agents is CONFIG: no one may stand in for it.
   * The registration and the hash of its token are written to the store (durable once `persisted()` resolves,
   * which `POST /agents/register` awaits before it answers), so the bus must be running (INTERNAL otherwise).
   */
  registerAgent(body: unknown, presentedToken?: string): AgentDescriptor & { agent_token?: string } {
    this.checkRunning();
    return this.register(parseRegistration(body), presentedToken).agent;
  }

  /**
   * `POST /agents/register`: `registerAgent`, answered once the registration is durable. On a cluster node the
   * agent's registration is read from the shared store first (it may have registered, or changed its token, on
   * another node), and the other nodes are told of the change before the answer (docs/cluster.md).
   */
  async registerOverHttp(body: unknown, presentedToken: string | undefined): Promise<AgentDescriptor & { agent_token?: string }> {
    this.checkRunning();
    const registration = parseRegistration(body);
    if (this.clusterRegistrations !== undefined) {
      await this.readRegistrations([registration.descriptor.agent_id]);
      this.checkRunning();
    }
    const { agent, announced } = this.register(registration, presentedToken);
    await this.persisted();
    await announced;
    return agent;
  }

  /** Registers a parsed registration; `announced` resolves once the other nodes of a cluster were told (never rejects). */
  private register(
    { descriptor, agentToken }: ReturnType<typeof parseRegistration>,
    presentedToken: string | undefined,
  ): { agent: AgentDescriptor & { agent_token?: string }; announced: Promise<void> } {
    const agentId = descriptor.agent_id;
    if (this.registry.isRuntimeAgent(agentId) || isRuntimeFramework(agentId)) {
      throw new BridgeError("CONFIG", `agent_id: ${agentId} is in the runtime's own framework (troupe://): only its agents and the bus use it`, {
        field: "agent_id",
        agentId,
      });
    }
    const { maxAgents } = this.options;
    if (!this.registry.isRegistered(agentId) && this.registry.registeredCount() >= maxAgents) {
      throw new BridgeError("CAPACITY", `The bus has reached maxAgents (${maxAgents} registered)`, { retryable: true, limit: maxAgents });
    }
    // In token mode, an agent registered already is re-registered only with its token: the key alone cannot take it over.
    const renewing = this.registry.isRegistered(agentId);
    if (this.options.agentAuth === "token" && renewing) this.checkAgentToken(agentId, presentedToken);
    this.registry.register(descriptor, this.clock.now());
    const token = agentToken ?? (renewing ? undefined : randomBytes(24).toString("base64url"));
    if (token !== undefined) this.registry.setToken(agentId, token);
    this.giveActor(descriptor);
    return { agent: token === undefined ? descriptor : { ...descriptor, agent_token: token }, announced: this.announceRegistration(agentId) };
  }

  /** A registered agent's actor (online when its socket is) and its delivery mode. */
  private giveActor(descriptor: AgentDescriptor): void {
    const agentId = descriptor.agent_id;
    this.runtime.registerRemoteAgent(agentId);
    if (this.connections.get(agentId) !== undefined) this.runtime.setRemoteAgentOnline(agentId, true);
    if (descriptor.metadata["acks"] === false) this.withoutAcks.add(agentId);
    else this.withoutAcks.delete(agentId);
  }

  /** Forgets an agent's registration, stops its actor, and closes its socket with 1008 unless it still takes part in a session. */
  deregisterAgent(agentId: string, presentedToken?: string): void {
    this.checkRunning();
    void this.deregister(agentId, presentedToken);
  }

  /**
   * `DELETE /agents/:agentId`: `deregisterAgent`, answered once the deregistration is durable. On a cluster node
   * the registration is read from the shared store first (it may have been made on another node), and the other
   * nodes are told before the answer: each forgets the agent and closes its socket there (docs/cluster.md).
   */
  async deregisterOverHttp(agentId: string, presentedToken: string | undefined): Promise<void> {
    this.checkRunning();
    if (this.clusterRegistrations !== undefined && isAgentId(agentId) && !this.registry.isRuntimeAgent(agentId)) {
      await this.readRegistrations([agentId]);
      this.checkRunning();
    }
    const announced = this.deregister(agentId, presentedToken);
    await this.persisted();
    await announced;
  }

  /** Deregisters; resolves once the other nodes of a cluster were told (never rejects). */
  private deregister(agentId: string, presentedToken: string | undefined): Promise<void> {
    if (this.registry.isRuntimeAgent(agentId)) {
      throw new BridgeError("CONFIG", `agent_id: ${agentId} is one of the runtime's own agents: it cannot be deregistered`, { field: "agent_id", agentId });
    }
    if (this.options.agentAuth === "token" && this.registry.isRegistered(agentId)) this.checkAgentToken(agentId, presentedToken);
    if (!this.registry.deregister(agentId)) throw new BridgeError("NOT_FOUND", `Agent not registered: ${agentId}`, { agentId });
    this.forgetActor(agentId);
    return this.announceRegistration(agentId);
  }

  /** A deregistered agent's actor stops, and its socket is closed with 1008 unless it still takes part in a session. */
  private forgetActor(agentId: string): void {
    this.withoutAcks.delete(agentId);
    this.runtime.removeRemoteAgent(agentId);
    if (!this.registry.isKnown(agentId)) this.connections.disconnect(agentId, CLOSE_CODES.policy, CLOSE_REASONS.deregistered);
  }

  /** A registration changed here: the other nodes of a cluster read it again once it is durable (resolves then, never rejects). */
  private announceRegistration(agentId: string): Promise<void> {
    return this.clusterRegistrations?.changed(agentId, this.persisted()) ?? Promise.resolve();
  }

  /** What the shared store says of an agent's registration, made this node's: its actor given, replaced or taken away. */
  private applyStoredRegistration(agentId: string, stored: StoredRegistration | undefined): void {
    const wasRegistered = this.registry.isRegistered(agentId);
    const descriptor = this.registry.applyStored(agentId, stored);
    if (descriptor !== undefined) this.giveActor(descriptor);
    else if (wasRegistered) this.forgetActor(agentId);
  }

  /**
   * Every known agent with `online`, `last_heartbeat` and `status` (its actor's state), the runtime's own first,
   * as this node sees them (on a cluster node, `agentPage` adds where each agent is connected in the cluster).
   */
  listAgents(): AgentListing[] {
    return this.registry.list();
  }

  /** The listings of `listAgents`, each built only when called: what `GET /agents` pages through. */
  agentListings(): Iterable<() => AgentListing> {
    return this.registry.listings();
  }

  /**
   * `GET /agents`: one page of `agentListings`. On a cluster node, each agent also says which node it is connected
   * to (`node`, `connected_at`), from the cluster's presence bucket for agents not connected here (as this node's
   * watch keeps it in memory, or read when that is not current), and the page says where that came from:
   * `presence: "cluster"`, or `"node"` (this node's view only: NATS did not answer).
   */
  async agentPage(request: PageRequest): Promise<{ agents: AgentListing[]; next_cursor?: string; presence?: "cluster" | "node" }> {
    const { items, next_cursor } = pageOf(this.registry.listings(), request);
    const page = { agents: items, ...(next_cursor === undefined ? {} : { next_cursor }) };
    const node = this.clusterNode;
    if (node === undefined) return page;
    const here = node.presence.here();
    const elsewhere = items.filter((agent) => agent.source !== "runtime" && !here.has(agent.agent_id)).map((agent) => agent.agent_id);
    let found: Map<string, AgentPresence> | undefined;
    if (elsewhere.length > 0) {
      try {
        found = await node.presence.where(elsewhere);
      } catch {
        // NATS away: this node's view, and the page says so.
      }
    }
    const agents = items.map((agent): AgentListing => {
      // The runtime's agents run on every node: listed as this one's.
      if (agent.source === "runtime") return { ...agent, node: node.nodeId, connected_at: null };
      const local = here.get(agent.agent_id);
      if (local !== undefined) return { ...agent, online: true, node: node.nodeId, connected_at: local.since };
      const remote = found?.get(agent.agent_id);
      if (remote === undefined) return { ...agent, node: null, connected_at: null };
      // A remote agent's actor is `ready` whenever it is connected (it is never busy): as its node would say.
      return { ...agent, online: true, status: agent.status === "offline" ? "ready" : agent.status, node: remote.node, connected_at: remote.since };
    });
    return { ...page, agents, presence: found === undefined && elsewhere.length > 0 ? "node" : "cluster" };
  }

  /** The counters of `GET /metrics`. */
  metricsSnapshot(): BusMetricsSnapshot {
    return this.metrics.snapshot({
      uptimeSeconds: this.state === "new" ? 0 : (this.clock.now() - this.startedAt) / 1000,
      byStatus: this.deliveries.countsByStatus(),
      sessions: this.sessionManager.sessionCounts(),
      agents: { known: this.registry.knownCount(), online: this.registry.onlineCount(), connections: this.connections.count },
      bridgeSessions: this.runtime.sessionCountsByStatus(),
    });
  }

  /** `agentAuth: "token"`: the agent's own token, or AUTH (403). */
  private checkAgentToken(agentId: string, presented: string | undefined): void {
    if (!this.registry.tokenMatches(agentId, presented)) {
      throw new BridgeError("AUTH", `${agentId} is registered: its ${AGENT_TOKEN_HEADER} is missing or wrong`, { forbidden: true, agentId });
    }
  }

  private listening(): HttpServer {
    if (this.http === undefined) throw new BridgeError("INTERNAL", "The bus is not listening: call start() first");
    return this.http;
  }

  private async shutdown(stopRuntime: boolean): Promise<void> {
    this.state = "stopping";
    // No more takeovers nor requests for this node's workflows; its lease is kept until what it runs is stored.
    await this.ownership?.quiesce();
    // Prompts and A2A requests forwarded to other nodes end now (TRANSPORT: ask again), and those answered here for them stop streaming.
    this.forwardedSessions?.stop();
    this.forwardedA2a?.stop();
    const graceMs = this.options.closeGraceMs;
    this.connections.stopAccepting();
    this.detachMessenger?.();
    const runtimeAgentsStopped = this.runtimeAgents.stop();
    const deadline = performance.now() + graceMs;
    while (this.deliveries.unacknowledged > 0 && performance.now() < deadline) {
      await new Promise<void>((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    }
    this.syncReplies.rejectAll(new BridgeError("TRANSPORT", "The bus is stopping"));
    // What is still unacknowledged keeps its state in the store for the next start.
    this.deliveries.suspend();
    await Promise.all([this.connections.closeAll(CLOSE_CODES.goingAway, "Bus stopping", graceMs), this.events.close(), this.eventSockets.close()]);
    this.clusterEvents?.leave();
    // A runtime that outlives this bus keeps no actor of an agent only this bus knew.
    for (const agent of this.registry.list()) if (agent.source === "registered") this.runtime.removeRemoteAgent(agent.agent_id);
    // MCP clients keep streams open; their sessions end here, so that closing the server need not wait for them.
    await Promise.all([this.mcp.close(), this.a2a.close()]);
    await this.http?.close();
    await runtimeAgentsStopped;
    // Messages pulled here and not finished go back to the stream for the nodes their agents connect to next.
    await this.clusterDeliveries?.stop();
    this.clusterSync?.stop();
    this.clusterRegistrations?.stop();
    // The presence of the agents whose sockets just closed goes before the connection to NATS does.
    await this.clusterNode?.presence.settle();
    this.deliveries.stop();
    this.sessionManager.stop();
    // Their events (workflow.evicted) go out once the store has the change: before the bus is stopped.
    await this.sessionManager.whenSettled();
    try {
      await this.persisted();
    } catch (error) {
      // The runtime's own stop tries once more when it closes the store, and says what it lost.
      process.emitWarning(`The bus stopped with writes not yet durable: ${String(error)}`, "TroupeBusWarning");
    }
    if (stopRuntime) await this.runtime.stop();
    // Released: the other nodes take this one's workflows and sessions over at their next scan. A runtime that
    // outlives the bus still runs its bridge sessions: the lease runs out instead, once this node writes nothing.
    await this.ownership?.stop({ release: stopRuntime });
    this.stopFollowingNats?.();
    await this.clusterNode?.close();
    this.stopCounting();
    this.state = "stopped";
  }

  /** What the node's ownership does to this bus's workflows and bridge sessions (takeover, loss of the lease, routing). */
  private ownershipHost(): OwnershipHost {
    return {
      store: () => this.runtime.store,
      adoptWorkflows: (records) => this.sessionManager.adopt(records),
      adoptSessions: async (stored) => {
        const restored = await this.runtime.adoptSessions(stored);
        this.runtimeAgents.adoptRestored(restored);
        this.runtimeAgents.answerInterrupted(restored);
        this.a2a.adoptSessions(restored);
      },
      adoptA2aTasks: (records, options) => this.a2a.adoptTasks(records, options),
      resumeWorkflows: (sessionIds) => this.sessionManager.resume(sessionIds),
      watchDeadlines: (deadNode) => this.watchStoredDeadlines(deadNode),
      halt: async () => {
        this.sessionManager.stop();
        await this.runtime.dropSessions();
      },
      concerns: (envelope) => this.sessionManager.concerns(envelope),
      checkSender: (envelope) => this.sessionManager.checkSender(envelope),
      observe: (envelope) => this.sessionManager.observe(envelope),
      answerRoute: (request, from) => answerForwarded((this.ownWorkflowRoutes ??= workflowRoutes(this)), request, from),
      whenDurable: () => this.sessionManager.whenDurable(),
      announce: this.announceCluster as ClusterAnnounce,
    };
  }

  /**
   * A request for workflow `sessionId` (its HTTP route, `/sessions/:id…`): on a cluster node, when another node
   * runs the workflow, that node's answer (docs/cluster.md, "Workflow routes on any node"); `undefined` when it is
   * answered here.
   */
  async forwardWorkflowRequest(sessionId: string, request: ForwardedRequest): Promise<{ answer: unknown } | undefined> {
    if (this.ownership === undefined || this.sessionManager.runs(sessionId)) return undefined;
    return this.ownership.forward(sessionId, request);
  }

  /** What changes the bus's state needs it running: its store is open only then. */
  private checkRunning(): void {
    if (this.state !== "running") throw new BridgeError("INTERNAL", `The bus is not running (it is ${this.state})`);
  }

  /** Validates, dedupes, checks recipients and the session, then starts the delivery. */
  private async accept(input: unknown, origin: AgentConnection | undefined): Promise<SendResult> {
    this.checkRunning();
    const envelope = parseEnvelope(input, this.options.messageTimeout);
    const messageId = envelope.message_id;
    if (origin !== undefined && envelope.sender.agent_id !== origin.agentId) {
      throw new BridgeError("AUTH", `sender.agent_id: this socket belongs to ${origin.agentId}`, { forbidden: true, field: "sender.agent_id" });
    }
    const key = messageKeyOf(envelope);
    if (this.deliveries.has(key)) {
      this.metrics.countDuplicate();
      return { success: true, message_id: messageId, status: "duplicate" };
    }
    const inReplyTo = inReplyToOf(envelope);
    // A reply to a sync sender still waiting is handed to it here: that sender need not be registered.
    // Only the request's recipient (or a fallback agent it went to) answers a sync sender.
    // It answers the message of the sync sender it is sent to: that sender's key of the id in `in_reply_to`.
    const replyTo = inReplyTo === undefined ? undefined : messageKey(envelope.recipient.agent_id, inReplyTo);
    const waitingHere = replyTo !== undefined && (this.syncReplies.metaOf(replyTo)?.answerers.includes(envelope.sender.agent_id) ?? false);
    // In a cluster, the sync sender may wait on another node: offered the reply there, it takes it.
    const takenElsewhere = !waitingHere && replyTo !== undefined && this.clusterSync !== undefined && (await this.clusterSync.offer(replyTo, envelope));
    const waiting = waitingHere || takenElsewhere;
    const targets: Array<[string, string]> = [
      ...(waiting ? [] : [["recipient.agent_id", envelope.recipient.agent_id] as [string, string]]),
      ...(envelope.routing.fallback_agents ?? []).map((agentId, index): [string, string] => [`routing.fallback_agents.${index}`, agentId]),
    ];
    if (this.clusterRegistrations !== undefined) await this.freshRegistrations(targets.map(([, agentId]) => agentId));
    for (const [field, agentId] of targets) {
      if (!this.isKnown(agentId)) throw new BridgeError("NOT_FOUND", `Unknown recipient: ${agentId} is not registered`, { field, agentId });
    }
    this.checkAnswerable(envelope);
    // In a cluster, a message for a workflow another node runs is checked and observed there (docs/cluster.md).
    const workflowHere =
      this.ownership === undefined ||
      this.sessionManager.concerns(envelope) ||
      (await this.ownership.route(envelope).catch((error: unknown) => this.forgetRefused(envelope, error))) === "here";
    if (workflowHere) {
      try {
        this.sessionManager.checkSender(envelope);
      } catch (error) {
        await this.forgetRefused(envelope, error);
      }
    } else {
      // The workflow's node was asked: the bus may have begun to stop, or taken the same message, meanwhile.
      this.checkRunning();
      if (this.deliveries.has(key)) {
        this.metrics.countDuplicate();
        return { success: true, message_id: messageId, status: "duplicate" };
      }
    }
    const timeoutMs = parseDuration(envelope.routing.timeout, "routing.timeout");
    if (this.clusterDeliveries !== undefined && !waiting && this.runtimeAgents.endpoint(envelope.recipient.agent_id) === undefined) {
      return this.acceptOnStream(envelope, timeoutMs, workflowHere);
    }
    this.deliveries.accept(envelope, {
      timeoutMs,
      // A reply taken by a sync sender on another node was handed over there: here it only ends.
      ...(waitingHere
        ? { localSink: (reply: MessageEnvelope) => this.syncReplies.resolve(replyTo, reply) }
        : takenElsewhere
          ? { localSink: () => undefined }
          : {}),
    });
    this.metrics.countAccepted();
    this.deliveries.acknowledgeByAnswer(envelope);
    this.clusterSync?.announceAnswer(envelope);
    if (workflowHere) this.sessionManager.observe(envelope);
    // Write before answer: the message (and the ack an answer carries) is durable before its 202.
    if (envelope.routing.delivery_mode === "async") {
      await this.persisted();
      return { success: true, message_id: messageId, status: "accepted" };
    }
    // The sync sender waits from now on: a reply that comes while the store commits finds it.
    const reply = this.syncReplies.wait<MessageEnvelope>(key, {
      meta: { answerers: [envelope.recipient.agent_id, ...(envelope.routing.fallback_agents ?? [])] },
      timeoutMs,
      onTimeout: () => new BridgeError("TIMEOUT", `No reply to ${messageId} within ${timeoutMs} ms`, { messageId, timeoutMs }),
    });
    // It may fail (the message died) before it is awaited below: that is its answer, not an unhandled rejection.
    reply.catch(() => undefined);
    try {
      await this.persisted();
    } catch (error) {
      this.syncReplies.reject(key, toBridgeError(error));
      throw error;
    }
    return { success: true, message_id: messageId, status: "delivered", response: await reply };
  }

  /**
   * A cluster node accepts a message by handing it to the cluster's stream (docs/cluster.md): its record in the
   * shared store and its place on the stream are durable before the 202; the node its recipient is connected to
   * delivers it. A sync sender waits here, for a reply accepted by any node. While NATS or the store cannot be
   * reached, the message is refused (TRANSPORT, 503) rather than accepted.
   */
  private async acceptOnStream(envelope: MessageEnvelope, timeoutMs: number, workflowHere: boolean): Promise<SendResult> {
    const messageId = envelope.message_id;
    const key = messageKeyOf(envelope);
    this.checkClusterReachable();
    const sync = envelope.routing.delivery_mode === "sync";
    let reply: Promise<MessageEnvelope> | undefined;
    if (sync) {
      const answerers = [envelope.recipient.agent_id, ...(envelope.routing.fallback_agents ?? [])];
      reply = this.syncReplies.wait<MessageEnvelope>(key, {
        meta: { answerers },
        timeoutMs,
        onTimeout: () => new BridgeError("TIMEOUT", `No reply to ${messageId} within ${timeoutMs} ms`, { messageId, timeoutMs }),
      });
      reply.catch(() => undefined);
      void reply.finally(() => this.clusterSync?.done(key)).catch(() => undefined);
      try {
        await this.clusterSync?.wait(
          key,
          answerers,
          (answer) => this.syncReplies.resolve(key, answer),
          (error) => this.syncReplies.reject(key, error),
        );
      } catch (error) {
        this.syncReplies.reject(key, toBridgeError(error));
        throw error;
      }
    }
    this.deliveries.acknowledgeByAnswer(envelope);
    this.clusterSync?.announceAnswer(envelope);
    // A workflow another node runs was told there (route, above).
    if (workflowHere) this.sessionManager.observe(envelope);
    let duplicate: boolean;
    try {
      duplicate = (await this.handOff(envelope, this.clock.now(), timeoutMs)).duplicate;
    } catch (error) {
      this.syncReplies.reject(key, toBridgeError(error));
      throw error;
    }
    if (duplicate) {
      this.syncReplies.reject(key, new BridgeError("CONFIG", `${messageId} was accepted already`, { messageId }));
      this.metrics.countDuplicate();
      return { success: true, message_id: messageId, status: "duplicate" };
    }
    this.metrics.countAccepted();
    if (reply === undefined) return { success: true, message_id: messageId, status: "accepted" };
    return { success: true, message_id: messageId, status: "delivered", response: await reply };
  }

  /**
   * Writes a message's record to the shared store, then publishes it to the cluster's stream; resolves once both
   * are durable. In that order: the node that delivers the message deletes its record at its end, and a record
   * committed after that delete (published first, the commit late behind a busy batch) would stay for ever.
   */
  private async handOff(envelope: MessageEnvelope, acceptedAt: number, timeoutMs: number): Promise<{ duplicate: boolean }> {
    const stream = this.clusterDeliveries as ClusterDeliveries;
    this.deliveries.record(envelope, acceptedAt, timeoutMs, (this.clusterNode as ClusterNode).nodeId);
    try {
      await this.persisted();
      const published = await stream.publish(envelope, acceptedAt, timeoutMs);
      if (!published.duplicate) stream.watch(envelope.recipient.agent_id, acceptedAt + timeoutMs);
      // Its first acceptance may have ended already, its record deleted before this one was written.
      else await this.deliveries.unrecordFinished(envelope);
      return published;
    } catch (error) {
      const cause = toBridgeError(error);
      // Not accepted: the recipient's queue in the cluster is full (429, as on one node), or NATS did not answer
      // (503). Its record is gone before the refusal is: a refusal keeps nothing for a takeover to publish, even on a
      // node that dies right after. (A publish that timed out may still have reached the stream: its delivery goes on
      // without a record, and the sender's next try of the same message is answered `duplicate`.)
      this.deliveries.unrecord(envelope);
      await this.persisted().catch(() => undefined);
      if (cause.type === "CAPACITY") throw cause;
      throw new BridgeError("TRANSPORT", `${envelope.message_id} not accepted: ${cause.message}`, { ...cause.details, unavailable: true, retryable: true });
    }
  }

  /**
   * Throws `error`, the refusal of a message by its workflow's checks (on its node: here, or asked by
   * `ownership.route`). On a cluster node, when the message is refused for good (an answer to a task of a workflow
   * that ended, a sender not taking part: not a 503 or a 429), the record an earlier send of the same message may
   * have left goes too: a node killed between committing a message's record and publishing it left one that no
   * delivery ends, and the sender's next try is refused (the workflow took the answer before the kill), as the
   * cluster test under kills found.
   */
  private async forgetRefused(envelope: MessageEnvelope, error: unknown): Promise<never> {
    const { type } = toBridgeError(error);
    if (this.ownership !== undefined && type !== "TRANSPORT" && type !== "CAPACITY" && (await this.deliveries.unrecordIfSame(envelope))) {
      await this.persisted().catch(() => undefined);
    }
    throw error;
  }

  /**
   * A cluster node starting, or taking over a dead node, watches the deadlines of every unfinished message in the
   * store: the node that accepted a message for an agent connected nowhere watched its deadline, and may be gone.
   * And it publishes again what `deadNode` (the dead one, or this node's previous run) recorded and may not have
   * published.
   */
  private async watchStoredDeadlines(deadNode: string): Promise<void> {
    await this.clusterDeliveries?.watchStored(deadNode);
  }

  /** A node cut from NATS refuses new messages at once (503) instead of waiting for a publish to time out. */
  private checkClusterReachable(): void {
    const state = this.clusterNode?.state();
    if (state !== undefined && state !== "connected") {
      throw new BridgeError("TRANSPORT", `This node is cut from NATS (${state}): send to another node or try again`, { unavailable: true, retryable: true });
    }
  }

  /**
   * On a cluster node, before agents' registrations are used (a message to them, a token checked, a socket
   * opened): those this node does not know are read from the shared store (they may have registered on another
   * node), and so are those it read more than a lease time ago (a nudge may have been lost). No store read for
   * the others. TRANSPORT (503) when the store does not answer.
   */
  private async freshRegistrations(agentIds: readonly string[]): Promise<void> {
    const unsure = agentIds.filter((agentId) => this.registrationUnsure(agentId));
    if (unsure.length > 0) await this.readRegistrations(unsure);
  }

  /** On a cluster node: this node does not know the agent, or read its registration more than a lease time ago. */
  private registrationUnsure(agentId: string): boolean {
    const registrations = this.clusterRegistrations;
    if (registrations === undefined) return false;
    return this.registry.isRegistered(agentId) ? !registrations.isCurrent(agentId) : !this.isKnown(agentId);
  }

  /** On a cluster node, reads these agents' registrations from the shared store now. TRANSPORT (503) when it does not answer. */
  private async readRegistrations(agentIds: readonly string[]): Promise<void> {
    try {
      await this.clusterRegistrations?.read(agentIds);
    } catch (error) {
      throw new BridgeError("TRANSPORT", `The store did not say whether ${agentIds.join(", ")} is registered: ${toBridgeError(error).message}`, {
        unavailable: true,
        retryable: true,
      });
    }
  }

  /** A cluster node's part, once the runtime and its store are open: a store the nodes share is required. */
  private joinCluster(node: ClusterNode): void {
    if (this.runtime.store.sharedAcrossProcesses !== true) {
      throw new BridgeError(
        "CONFIG",
        "cluster: the nodes of a cluster share one PostgreSQL store; give store: () => openPostgresStore({ url, exclusive: false }) (troupe serve --store postgres://…)",
        {
          field: "store",
        },
      );
    }
    this.clusterDeliveries = new ClusterDeliveries({
      node,
      deliveries: this.deliveries,
      store: () => this.runtime.store,
      clock: this.clock,
      // Twice the delivery window: what waits beyond the window is ordered by priority here, as on one node.
      maxPulledPerAgent: Math.max(1, Math.min(2 * this.options.maxInFlightPerAgent, this.options.maxQueuedPerAgent)),
    });
    this.clusterSync = new ClusterSyncReplies(node, (answer) => this.deliveries.acknowledgeByAnswer(answer));
    this.clusterRegistrations = new ClusterRegistrations({
      node,
      clock: this.clock,
      maxAgeMs: node.leaseMs,
      holds: (agentId) => this.registry.isRegistered(agentId),
      read: (agentId) => this.registry.readStored(agentId),
      readAll: () => this.registry.readAllStored(),
      held: () => this.registry.registeredIds(),
      apply: (agentId, stored) => this.applyStoredRegistration(agentId, stored),
    });
    this.clusterEvents?.join(node.connection, node.nodeId);
    this.stopFollowingNats = announceNatsState(node.connection, this.announceCluster as ClusterAnnounce, this.clock);
  }

  /** `GET /health` of a cluster node: its id, NATS, the store and its lease as it sees them; not ready (503) while either is out of reach or the lease is lost. */
  private async clusterHealth(): Promise<{ ready: boolean; view: Record<string, unknown> }> {
    const node = this.clusterNode as ClusterNode;
    const nats = node.state();
    let timer: NodeJS.Timeout | undefined;
    const store = await Promise.race([
      this.runtime.store.get("meta", "health").then(
        () => "reachable",
        () => "unreachable",
      ),
      new Promise<string>((resolve) => {
        timer = setTimeout(() => resolve("unreachable"), HEALTH_STORE_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(timer);
    // A node that lost its lease refuses new workflows and sessions, and answers its own 503: no traffic for it.
    const lease = this.ownership === undefined ? undefined : this.ownership.holdsLease() ? "held" : "lost";
    return {
      ready: nats === "connected" && store === "reachable" && lease !== "lost",
      view: { node: node.nodeId, nats, store, ...(lease === undefined ? {} : { lease }), ...this.clusterDeliveries?.view() },
    };
  }

  /**
   * An agent's WebSocket upgrade. A cluster node that does not know the agent, or read its registration more than a
   * lease time ago, reads it from the shared store first: it may have registered, or changed, on another node.
   */
  private agentUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // No store read for an upgrade refused anyway (no key, a bad or repeated agent id): the handshake refuses it.
    const agentId = this.connections.requestedAgent(req);
    if (agentId === undefined || !this.registrationUnsure(agentId)) {
      this.connections.handleUpgrade(req, socket, head);
      return;
    }
    // The socket may fail while the store answers; the handshake's own handlers take over after.
    const ignore = (): void => undefined;
    socket.on("error", ignore);
    this.freshRegistrations([agentId])
      .catch(() => undefined)
      .finally(() => {
        socket.off("error", ignore);
        if (socket.destroyed) return;
        this.connections.handleUpgrade(req, socket, head);
      });
  }

  /**
   * A runtime agent answers every task it is sent: an async `task_request` to it from a sender that could not
   * receive the answer (unknown to the bus) would only open a bridge session for nobody.
   */
  private checkAnswerable(envelope: MessageEnvelope): void {
    if (envelope.message_type !== "task_request" || envelope.routing.delivery_mode !== "async") return;
    const sender = envelope.sender.agent_id;
    if (this.runtimeAgents.endpoint(envelope.recipient.agent_id)?.runtimeAgentId === undefined || this.isKnown(sender)) return;
    throw new BridgeError("NOT_FOUND", `sender.agent_id: ${sender} could not receive the answer: register it or send with delivery_mode sync`, {
      field: "sender.agent_id",
      agentId: sender,
    });
  }

  /** Registered, a participant of a workflow session, or one of the runtime's agents (`troupe://<id>`). */
  private isKnown(agentId: string): boolean {
    return this.registry.isKnown(agentId) || this.runtimeAgents.endpoint(agentId) !== undefined;
  }

  private onConnected(connection: AgentConnection): void {
    this.registry.setOnline(connection.agentId, true, this.clock.now());
    this.runtime.setRemoteAgentOnline(connection.agentId, true);
    this.deliveries.connected(connection);
    this.clusterDeliveries?.follow(connection.agentId);
    this.clusterNode?.presence.arrived(connection.agentId);
  }

  private onDisconnected(connection: AgentConnection): void {
    // A connection replaced by a newer one leaves its agent online.
    const current = this.connections.get(connection.agentId);
    if (current === undefined || current === connection) {
      this.registry.setOnline(connection.agentId, false, this.clock.now());
      this.runtime.setRemoteAgentOnline(connection.agentId, false);
    }
    this.deliveries.disconnected(connection);
    if (current === undefined && this.state === "running") void this.clusterDeliveries?.unfollow(connection.agentId);
    if (current === undefined) this.clusterNode?.presence.left(connection.agentId);
  }

  private onFrame(connection: AgentConnection, frame: unknown): void {
    this.registry.heartbeat(connection.agentId, this.clock.now());
    if (isAckFrame(frame)) {
      this.deliveries.acknowledge(connection, frame.message_id);
      return;
    }
    const messageId = typeof frame === "object" && frame !== null ? (frame as { message_id?: unknown }).message_id : undefined;
    const echoId = typeof messageId === "string" ? { message_id: messageId } : {};
    this.accept(frame, connection).then(
      (result) => connection.answer({ type: "accepted", message_id: result.message_id, status: result.status }),
      (error: unknown) =>
        connection.answer({ type: "rejected", ...echoId, error: (error instanceof BridgeError ? error : new BridgeError("INTERNAL", String(error))).toJSON() }),
    );
  }

  private onStatus(event: DeliveryEmitted, envelope: MessageEnvelope, acceptedAt: number): void {
    // A message pulled from the cluster's stream leaves it once its end is durable.
    if (this.clusterDeliveries !== undefined && (event.type === "message.acknowledged" || event.type === "message.dead")) {
      this.clusterDeliveries.ended(messageKeyOf(envelope), () => this.persisted());
    }
    switch (event.type) {
      case "message.retrying":
        this.metrics.countRetry();
        return;
      case "message.acknowledged":
        this.metrics.countAcknowledged(this.clock.now() - acceptedAt);
        return;
      case "message.dead":
        this.metrics.countDead();
        this.onDead(envelope, event);
        return;
      default:
    }
  }

  /** A dead message: its sync sender, its workflow task and its sender hear of it. */
  private onDead(envelope: MessageEnvelope, event: Extract<DeliveryEmitted, { type: "message.dead" }>): void {
    const messageId = envelope.message_id;
    const timedOut = event.cause === "timeout";
    const failure = timedOut
      ? new BridgeError("TIMEOUT", `${messageId}: ${event.error}`, { messageId, code: "DELIVERY_FAILED" })
      : new BridgeError("TRANSPORT", `${messageId}: ${event.error}`, { messageId, code: "DELIVERY_FAILED" });
    this.syncReplies.reject(messageKeyOf(envelope), failure);
    if (envelope.routing.delivery_mode === "sync") this.clusterSync?.dead(messageKeyOf(envelope), failure);
    this.sessionManager.deliveryFailed(envelope, event.error);
    // The bus's own errors are not answered with errors, and a sender nobody knows cannot receive one.
    if (envelope.sender.agent_id === BUS_AGENT_ID || !this.isKnown(envelope.sender.agent_id)) return;
    const taskId = taskIdOf(envelope);
    const deadLetter: MessageEnvelope = {
      message_id: `err_${randomUUID()}`,
      timestamp: new Date(this.clock.now()).toISOString(),
      sender: { agent_id: BUS_AGENT_ID, framework: "troupe" },
      recipient: { agent_id: envelope.sender.agent_id, framework: envelope.sender.framework },
      message_type: "error",
      priority: "high",
      payload: {
        code: "DELIVERY_FAILED",
        in_reply_to: messageId,
        message: event.error,
        recipient: envelope.recipient.agent_id,
        attempts: event.attempts,
      },
      routing: {
        timeout: formatDuration(this.options.messageTimeout),
        retry_policy: { max_retries: DEFAULT_MAX_RETRIES, backoff: DEFAULT_BACKOFF },
        delivery_mode: "async",
      },
      metadata: { in_reply_to: messageId, ...(taskId === undefined ? {} : { task_id: taskId }) },
    };
    if (this.clusterDeliveries !== undefined && this.runtimeAgents.endpoint(envelope.sender.agent_id) === undefined) {
      // The sender may be connected to another node: the error goes by the cluster's stream.
      this.handOff(deadLetter, this.clock.now(), this.options.messageTimeout).then(
        () => this.metrics.countAccepted(),
        (error: unknown) => process.emitWarning(`DELIVERY_FAILED for ${messageId} not published: ${String(error)}`, "TroupeBusWarning"),
      );
      return;
    }
    try {
      this.deliveries.accept(deadLetter, { timeoutMs: this.options.messageTimeout });
      this.metrics.countAccepted();
    } catch (error) {
      // The sender's queue is full: the dead message itself still says what happened (GET /messages/:id).
      process.emitWarning(`DELIVERY_FAILED for ${messageId} not queued: ${String(error)}`, "TroupeBusWarning");
    }
  }
}
