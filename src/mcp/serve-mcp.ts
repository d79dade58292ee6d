/**
 * `serveMcp(runtime, { transport: "stdio" })`: a runtime's bridge tools served to one MCP client, over this
 * process's stdin and stdout (what `troupe mcp` does) or over any transport of the MCP SDK.
 */
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import type { Runtime } from "../runtime/runtime.js";
import { responseToUnreadableLine } from "./json-rpc-errors.js";
import { createMcpServer } from "./mcp-server.js";

/** Options of `serveMcp`. */
export interface ServeMcpOptions {
  /**
   * `"stdio"`: newline-delimited JSON-RPC on `process.stdin` and `process.stdout`; stdout then belongs to MCP,
   * so log to stderr. Or any transport of `@modelcontextprotocol/sdk` (e.g. one of an in-memory pair).
   */
  transport: "stdio" | Transport;
}

/** A running MCP server. */
export interface McpService {
  /** Resolves when the connection ends: the client closed stdin (or the transport), or `close()` was called. */
  readonly closed: Promise<void>;
  /** Cancels the calls in flight (their prompts with them), lets their answers go out, and ends the connection. */
  close(): Promise<void>;
}

/** Serves a started runtime's eight bridge tools to one MCP client. Resolves once it listens. */
export async function serveMcp(runtime: Runtime, options: ServeMcpOptions): Promise<McpService> {
  const { server, close } = await createMcpServer(runtime);
  const closed = new Promise<void>((resolve) => {
    server.onclose = resolve;
  });
  if (options.transport !== "stdio") {
    await server.connect(options.transport);
    return { closed, close };
  }
  const { StdioServerTransport } = await import("@modelcontextprotocol/sdk/server/stdio.js");
  const { stdin, stdout } = process;
  // The SDK's stdio transport reads until told to stop: the end of stdin (the client went away) is that sign.
  // A write to a client that has gone (EPIPE) ends the connection too, rather than the process.
  // Both mean the client cannot hear anything more: there is nobody to answer.
  const end = (): void => void server.close();
  stdin.once("end", end);
  stdout.on("error", end);
  void closed.then(() => {
    stdin.off("end", end);
    stdout.off("error", end);
  });
  const transport = new StdioServerTransport(stdin, stdout);
  await server.connect(transport);
  // The SDK reports a line it cannot read and goes on: the client is owed JSON-RPC's answer (id null), or it
  // waits for ever on a request it believes was sent.
  server.onerror = (error) => {
    const answer = responseToUnreadableLine(error);
    if (answer !== undefined) void transport.send(answer as unknown as JSONRPCMessage).catch(() => undefined);
  };
  return { closed, close };
}
