/**
 * The A2A routes of the bus (docs/a2a.md): `GET /a2a` (a directory of the agents served, with their cards),
 * each agent's card at `GET /a2a/<agentId>/.well-known/agent-card.json`, and its JSON-RPC endpoint at
 * `POST /a2a/<agentId>/`. Every one needs the bus key, as every route but `GET /health` does and as the cards
 * declare (docs/a2a.md says why cards are not public). The SDK is loaded with the first A2A request
 * (./a2a-server.ts), not with the bus.
 */
import type { CommunicationBus } from "../bus/bus.js";
import { BridgeError } from "../errors.js";
import { decoded, HttpStream, type HttpRoute } from "../server/http-server.js";
import type { RestoredSession, Runtime } from "../runtime/runtime.js";
import type { A2aRecords, A2aTaskRecord } from "./a2a-records.js";
import type { A2aHere, A2aRemote, AnswerPieces, ForwardedA2aRequest } from "./a2a-remote.js";
import type { A2aServer, A2aServerOptions } from "./a2a-server.js";
import { A2aContexts } from "./contexts.js";

/**
 * The SDK's `AGENT_CARD_PATH`, spelled here so that routing loads no SDK (test/a2a/serve.test.ts checks that
 * both agree).
 */
export const AGENT_CARD_PATH = ".well-known/agent-card.json";

/** Tasks the endpoint keeps by default (for `GetTask` and `ListTasks`): each holds its messages and its answer. */
const DEFAULT_MAX_A2A_TASKS = 10_000;

/** The A2A endpoint of a bus: its routes, and the server behind them once a request came. */
export class A2aEndpoint implements A2aHere {
  private server: Promise<A2aServer> | undefined;
  /** The contexts' sessions: made with the server, or before it on a cluster node that restores or takes over sessions of contexts. */
  private madeContexts: A2aContexts | undefined;
  /** On a cluster node: where its records go, and the other nodes (docs/cluster.md, "A2A across nodes"). */
  private cluster: { records: A2aRecords; remote: A2aRemote } | undefined;
  private closed = false;

  constructor(
    private readonly bus: CommunicationBus,
    private readonly runtime: Runtime,
    private readonly options: Partial<A2aServerOptions> = {},
  ) {}

  /** The routes, for `startHttpServer`. Agent ids in paths are URL-encoded (`claude-code%3A%2F%2Fqa`). */
  routes(): HttpRoute[] {
    return [
      {
        method: "GET",
        path: /^\/a2a\/?$/,
        handle: async (request) => (await this.served()).directory(request),
      },
      {
        method: "GET",
        path: /^\/a2a\/([^/]+)\/\.well-known\/agent-card\.json$/,
        handle: async (request) => (await this.served()).card(decoded(request.params[0], "agentId"), request),
      },
      {
        method: "POST",
        path: /^\/a2a\/([^/]+)\/?$/,
        handle: (request) => {
          const agentId = decoded(request.params[0], "agentId");
          return new HttpStream(async (_req, res) => (await this.served()).rpc(agentId, request, res));
        },
      },
    ];
  }

  /** What the endpoint holds now (nothing before its first request). */
  async stats(): Promise<{ contexts: number; runningTasks: number; tasks: number }> {
    return this.server === undefined ? { contexts: 0, runningTasks: 0, tasks: 0 } : (await this.server).stats();
  }

  /**
   * Makes this the endpoint of a cluster node (the bus calls it once the node holds its lease, before anything is
   * restored or asked): its tasks and contexts get records, and requests for those of other nodes go there.
   */
  joinCluster(records: A2aRecords, remote: A2aRemote): void {
    if (this.server !== undefined || this.madeContexts !== undefined) throw new BridgeError("INTERNAL", "joinCluster: call it before the A2A endpoint serves");
    this.cluster = { records, remote };
  }

  /** A cluster node restored or took over bridge sessions: those opened for A2A contexts serve their contexts here. */
  adoptSessions(restored: readonly RestoredSession[]): void {
    if (this.cluster === undefined || this.closed || !restored.some(({ metadata }) => metadata["a2a"] !== undefined)) return;
    this.contexts().adoptRestored(restored);
  }

  /** A cluster node keeps the A2A tasks whose records name it (see `BoundedTaskStore.adopt`): loads the SDK when there are any. */
  async adoptTasks(records: A2aTaskRecord[], options: { replace: boolean }): Promise<void> {
    if (this.closed || (records.length === 0 && (!options.replace || this.server === undefined))) return;
    (await this.served()).adoptTasks(records, options);
  }

  /** `A2aHere.answerForwarded`: a request another node forwarded, answered by this node's server. */
  async answerForwarded(request: ForwardedA2aRequest, pieces: AnswerPieces, signal: AbortSignal): Promise<void> {
    // Stopping: the node that takes its work over answers (503 there meanwhile: ask again).
    if (this.closed) throw new BridgeError("TRANSPORT", "The A2A endpoint is closing: ask again", { unavailable: true, retryable: true });
    return (await this.served()).answerForwarded(request, pieces, signal);
  }

  /**
   * Ends its streams and closes its contexts' sessions (the bus calls this as it stops); a cluster node hands them
   * over instead, with its bridge sessions.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.server !== undefined) await (await this.server).close();
    else if (this.cluster !== undefined) this.madeContexts?.release();
    else await this.madeContexts?.closeAll();
  }

  private contexts(): A2aContexts {
    if (this.madeContexts === undefined) {
      this.madeContexts = new A2aContexts(
        this.runtime,
        this.options.maxContexts ?? Math.max(1, Math.floor(this.runtime.limits.maxSessions / 4)),
        this.cluster?.records,
      );
      this.madeContexts.start();
    }
    return this.madeContexts;
  }

  private served(): Promise<A2aServer> {
    if (this.closed) return Promise.reject(new BridgeError("TRANSPORT", "The A2A endpoint is closing"));
    this.server ??= import("./a2a-server.js").then(
      ({ A2aServer }) => new A2aServer(this.bus, this.runtime, { maxTasks: this.options.maxTasks ?? DEFAULT_MAX_A2A_TASKS }, this.contexts(), this.cluster),
    );
    return this.server;
  }
}
