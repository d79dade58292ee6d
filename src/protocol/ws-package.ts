/**
 * The `ws` package, loaded by the first bus, event stream or agent client rather than when troupe is imported:
 * a program that only runs a runtime never opens a WebSocket. `ws` is CommonJS, so it loads synchronously and
 * the constructors that make its servers stay synchronous.
 */
import type * as ws from "ws";
import { lazyRequire } from "../lazy-modules.js";

/** What `require("ws")` is: the `WebSocket` class (the ready states on it), with `WebSocketServer` beside them. */
type WsPackage = typeof ws.WebSocket & Pick<typeof ws, "WebSocketServer">;

/** The `ws` package; the first call loads it. */
export const wsPackage = lazyRequire<WsPackage>("ws", "A WebSocket of the bus");
