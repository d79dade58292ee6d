/**
 * What every WebSocket endpoint of the server shares: reading the key a client presents (a header, or a
 * subprotocol for browsers, which cannot set headers), refusing an upgrade with an HTTP answer, and the
 * bounds on a socket's liveness and its closing.
 */
import { STATUS_CODES, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { BridgeError } from "../errors.js";
import { API_KEY_HEADER } from "../protocol/headers.js";
import { KEY_PROTOCOL_PREFIX } from "../protocol/frames.js";

/** Pongs a WebSocket (an agent's, a subscriber's) may miss before it is terminated. */
export const MAX_MISSED_PONGS = 2;

/** How long a socket closed for a full buffer gets to finish the close handshake before it is cut. */
export const CLOSE_HANDSHAKE_WAIT_MS = 5_000;

/** What a browser offers as the subprotocol `<prefix><value>` (`key.`, `token.`). */
export function offeredProtocolValue(req: IncomingMessage, prefix: string): string | undefined {
  const offered = (req.headers["sec-websocket-protocol"] ?? "").split(",").map((protocol) => protocol.trim());
  return offered.find((protocol) => protocol.startsWith(prefix))?.slice(prefix.length);
}

/** The API key an upgrade presents: the `x-agent-api-key` header, else the subprotocol `key.<key>`. */
export function presentedUpgradeKey(req: IncomingMessage): string | string[] | undefined {
  return req.headers[API_KEY_HEADER] ?? offeredProtocolValue(req, KEY_PROTOCOL_PREFIX);
}

/**
 * Answers an upgrade request (or a connection past its quota) with an HTTP error (`{ error }`, as every route
 * answers) and closes the socket; a quota's CAPACITY says when to come back (`retry-after`, seconds), as the
 * routes' answers do.
 */
export function refuseUpgrade(socket: Duplex, status: number, error: BridgeError): void {
  const body = JSON.stringify({ error: error.toJSON() });
  const { retryAfterMs } = error.details;
  const retryAfter = typeof retryAfterMs === "number" ? `Retry-After: ${Math.max(1, Math.ceil(retryAfterMs / 1000))}\r\n` : "";
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}\r\nConnection: close\r\n${retryAfter}Content-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
