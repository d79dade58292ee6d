/** The status a WebSocket upgrade is refused with, for tests of who may connect. */
import WebSocket from "ws";

/**
 * Opens `url` with `headers` and resolves with the HTTP status it is refused with; an upgrade that is accepted
 * rejects. The socket is added to `sockets` so the caller's cleanup ends it.
 */
export function refusedUpgradeStatus(url: string, headers: Record<string, string>, sockets: WebSocket[]): Promise<number> {
  const socket = new WebSocket(url, { headers });
  sockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once("unexpected-response", (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once("open", () => reject(new Error("the upgrade was accepted")));
    socket.once("error", () => {});
  });
}
