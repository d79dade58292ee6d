/**
 * The visualizer and playground (SPEC §6): `GET /` → `/ui`, the page and its bundle (open: the page asks for
 * the key itself), and the two keyed routes only it needs: `GET /actors` (the live actor tree, paged, with the
 * `seq` it was read at) and `GET /actors/:id/graph` (the state graph of a live machine actor). Everything else
 * the page reads is the bus's own API: `/events`, `/bridge/*`, `/sessions`, `/agents`.
 */
import { BridgeError } from "../errors.js";
import { pageOf, pageRequestOf } from "../bus/pagination.js";
import type { ActorView } from "../events/actor-tree.js";
import type { Runtime } from "../runtime/runtime.js";
import { decoded, HttpAnswer, type HttpRoute } from "../server/http-server.js";
import { uiAsset } from "./assets.js";

/** What the page may load and reach: itself and this server, nothing outside. */
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-cache",
};

function assetAnswer(name: string, header: (name: string) => string | undefined): HttpAnswer {
  const asset = uiAsset(name);
  const headers = { etag: asset.etag, vary: "accept-encoding", ...PAGE_HEADERS };
  if (header("if-none-match") === asset.etag) return new HttpAnswer(304, "", "text/plain", headers);
  if (/\bgzip\b/.test(header("accept-encoding") ?? ""))
    return new HttpAnswer(200, asset.gzipped, asset.contentType, { ...headers, "content-encoding": "gzip" });
  return new HttpAnswer(200, asset.body, asset.contentType, headers);
}

/** How long a walk of the actor tree serves the pages that follow it (same `seq`). */
const LISTING_REUSE_MS = 1_000;

/**
 * The actor tree flattened once and reused by the pages read right after it (while nothing was emitted, for at
 * most a second): paging through it costs each page its own items, not a walk of every actor before its offset.
 * Each item is still read live when its page is built.
 */
class ActorListing {
  private cached: { seq: number; at: number; items: Array<() => ActorView> } | undefined;

  constructor(private readonly runtime: Runtime) {}

  of(seq: number): Array<() => ActorView> {
    const now = this.runtime.clock.now();
    const { cached } = this;
    if (cached !== undefined && cached.seq === seq && now - cached.at < LISTING_REUSE_MS && now >= cached.at) return cached.items;
    const items = [...this.runtime.actors()];
    this.cached = { seq, at: now, items };
    return items;
  }
}

/** The routes of `/ui` on a runtime's server. */
export function uiRoutes(runtime: Runtime, eventSeq: () => number = () => runtime.hub.lastSeq): HttpRoute[] {
  const listing = new ActorListing(runtime);
  return [
    { method: "GET", path: /^\/$/, open: true, handle: () => new HttpAnswer(302, "", "text/plain", { location: "/ui/" }) },
    { method: "GET", path: /^\/ui\/?$/, open: true, handle: ({ header }) => assetAnswer("index.html", header) },
    {
      method: "GET",
      path: /^\/ui\/assets\/([a-z]+\.[a-z]+)$/,
      open: true,
      handle: ({ params: [name = ""], header }) => assetAnswer(name, header),
    },
    {
      method: "GET",
      path: /^\/actors$/,
      handle: ({ query }) => {
        // The seq first: a client replaying `/events?since=seq` then sees every change after this listing.
        const seq = eventSeq();
        const { items, next_cursor } = pageOf(listing.of(seq), pageRequestOf(query));
        return { seq, actors: items, ...(next_cursor === undefined ? {} : { next_cursor }) };
      },
    },
    {
      method: "GET",
      path: /^\/actors\/(.+)\/graph$/,
      handle: ({ params: [encoded = ""] }) => {
        const actorId = decoded(encoded, "actorId");
        const graph = runtime.actorGraph(actorId);
        if (graph === undefined) throw new BridgeError("NOT_FOUND", `No live machine actor ${actorId}`, { actorId });
        return graph;
      },
    },
  ];
}
