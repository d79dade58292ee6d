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
import type { Runtime } from "../runtime/runtime.js";
import type { A2aServer, A2aServerOptions } from "./a2a-server.js";

/**
 * The SDK's `AGENT_CARD_PATH`, spelled here so that routing loads no SDK (test/a2a/serve.test.ts checks that
 * both agree).
 */
export const AGENT_CARD_PATH = ".well-known/agent-card.json";

/** Tasks the endpoint keeps by default (for `GetTask` and `ListTasks`): each holds its messages and its answer. */
const DEFAULT_MAX_A2A_TASKS = 10_000;

/** The A2A endpoint of a bus: its routes, and the server behind them once a request came. */
export class A2aEndpoint {
  private server: Promise<A2aServer> | undefined;
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
          return new HttpStream(async (req, res) => (await this.served()).rpc(agentId, request, req, res));
        },
      },
    ];
  }

  /** What the endpoint holds now (nothing before its first request). */
  async stats(): Promise<{ contexts: number; runningTasks: number; tasks: number }> {
    return this.server === undefined ? { contexts: 0, runningTasks: 0, tasks: 0 } : (await this.server).stats();
  }

  /** Ends its streams and closes its contexts' sessions (the bus calls this as it stops). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.server !== undefined) await (await this.server).close();
  }

  private served(): Promise<A2aServer> {
    if (this.closed) return Promise.reject(new BridgeError("TRANSPORT", "The A2A endpoint is closing"));
    this.server ??= import("./a2a-server.js").then(
      ({ A2aServer }) =>
        new A2aServer(this.bus, this.runtime, {
          maxContexts: this.options.maxContexts ?? Math.max(1, Math.floor(this.runtime.limits.maxSessions / 4)),
          maxTasks: this.options.maxTasks ?? DEFAULT_MAX_A2A_TASKS,
        }),
    );
    return this.server;
  }
}
