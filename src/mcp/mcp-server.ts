/**
 * The MCP server of a runtime: the eight bridge tools (SPEC §7), listed with the bridge's own JSON Schemas and
 * called through `runtime.bridge.call`, which validates the arguments (a bad one is a CONFIG result naming the
 * field). MCP cancellation aborts the call, which cancels its prompt through `sessions_cancel`; a call whose
 * client sent a `progressToken` reports the prompt's streamed text as progress notifications.
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { RequestId, Tool } from "@modelcontextprotocol/sdk/types.js";
import type { Runtime } from "../runtime/runtime.js";
import { VERSION } from "../version.js";
import { reportProgress } from "./progress.js";
import { errorResult, toolResult } from "./results.js";

/** What the server tells a client about itself at `initialize`. */
const INSTRUCTIONS =
  "troupe runs AI agents as sessions. agents_discover lists them; sessions_create opens a session, " +
  "sessions_prompt talks to it (progress notifications carry the streamed text), sessions_close deletes it; " +
  "tasks_delegate does all three in one call. Cancelling a call cancels its prompt. Failed calls are isError " +
  "results carrying { type, message, details }.";

/** Options of `createMcpServer`. */
export interface McpServerOptions {
  /** Told when a call was cancelled by its client, once it has ended (e.g. to end the HTTP stream that waited for it). */
  onCancelled?: (requestId: RequestId) => void;
}

/** An MCP server of a runtime's bridge, not yet connected to a transport. */
export interface BridgeMcpServer {
  /** The SDK's server: connect it to one transport. */
  readonly server: Server;
  /**
   * Ends the connection. Calls in flight are cancelled first, and answered (CANCELLED, or their result if they
   * finished first), so that a client never waits for an answer that would not come.
   */
  close: () => Promise<void>;
}

/** Creates an MCP server for a runtime's bridge. Loads the MCP SDK. */
export async function createMcpServer(runtime: Runtime, options: McpServerOptions = {}): Promise<BridgeMcpServer> {
  const [{ Server }, { CallToolRequestSchema, ListToolsRequestSchema }] = await Promise.all([
    import("@modelcontextprotocol/sdk/server/index.js"),
    import("@modelcontextprotocol/sdk/types.js"),
  ]);
  // The low-level `Server`, not `McpServer`: the tools keep the bridge's JSON Schemas and its validation, so
  // that MCP, HTTP and in-process callers get the same arguments checked the same way.
  const server = new Server({ name: "troupe", version: VERSION }, { capabilities: { tools: {} }, instructions: INSTRUCTIONS });
  // `z.toJSONSchema` of an object schema is always `{ type: "object", ... }`, the shape MCP asks for.
  const tools = runtime.bridge.tools.map(({ name, description, inputSchema }) => ({ name, description, inputSchema: inputSchema as Tool["inputSchema"] }));
  // Aborted by close(): cancels the calls in flight while their answers can still be sent.
  const closing = new AbortController();
  let callsInFlight = 0;
  let wakeWhenIdle: Array<() => void> = [];

  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const { name, arguments: args = {} } = request.params;
    const progressToken = request.params._meta?.progressToken;
    const progress = progressToken === undefined ? undefined : reportProgress(progressToken, extra.sendNotification);
    callsInFlight += 1;
    try {
      const result = await runtime.bridge.call(name, args, {
        signal: AbortSignal.any([extra.signal, closing.signal]),
        ...(progress === undefined ? {} : { onDelta: (delta: string) => progress.push(delta) }),
      });
      return toolResult(result as object);
    } catch (error) {
      return errorResult(error);
    } finally {
      // What the prompt streamed goes out before its answer, which the SDK sends once this handler returns.
      progress?.end();
      // The SDK answers nothing to a cancelled request: whoever waits for its answer may stop waiting.
      if (extra.signal.aborted) options.onCancelled?.(extra.requestId);
      callsInFlight -= 1;
      if (callsInFlight === 0) {
        const woken = wakeWhenIdle;
        wakeWhenIdle = [];
        for (const wake of woken) wake();
      }
    }
  });

  return {
    server,
    close: async () => {
      closing.abort();
      if (callsInFlight > 0) await new Promise<void>((resolve) => wakeWhenIdle.push(resolve));
      // The SDK sends a handler's answer a turn after the handler returns.
      await nextTurn();
      await server.close();
    },
  };
}
