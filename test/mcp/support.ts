/**
 * MCP clients for tests, all of them the official SDK's `Client`: linked in memory to `serveMcp`, or over
 * Streamable HTTP to a bus's `/mcp`. Clients, then buses, are closed after each test.
 */
import { afterEach } from "vitest";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js";
import type { CallToolResult, JSONRPCMessage, Progress } from "@modelcontextprotocol/sdk/types.js";
import { serveMcp, type BusOptions, type CommunicationBus, type McpService, type Runtime } from "../../src/index.js";
import { startSuiteBus, TEST_KEY } from "../bus/support.js";

const clients: Client[] = [];
const services: McpService[] = [];
const buses: CommunicationBus[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(services.splice(0).map((service) => service.close()));
  await Promise.all(buses.splice(0).map((bus) => bus.stop()));
});

/** A client connected in memory to `serveMcp(runtime)`, and every message the server sent it. */
export async function connectInMemory(runtime: Runtime): Promise<{ client: Client; service: McpService; received: JSONRPCMessage[] }> {
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const service = await serveMcp(runtime, { transport: serverTransport });
  services.push(service);
  const client = new Client({ name: "troupe-test", version: "1.0.0" });
  await client.connect(clientTransport);
  clients.push(client);
  const received: JSONRPCMessage[] = [];
  const deliver = clientTransport.onmessage;
  clientTransport.onmessage = (message, extra) => {
    received.push(message);
    deliver?.(message, extra);
  };
  return { client, service, received };
}

/** A bus on `runtime` (127.0.0.1, port 0, the test key), stopped after the test (before the runtime). */
export async function startMcpBus(runtime: Runtime, options: BusOptions = {}): Promise<CommunicationBus> {
  const bus = await startSuiteBus({ runtime, ...options });
  buses.push(bus);
  return bus;
}

/** A client of the bus's `/mcp` over Streamable HTTP, with `headers` (default: the test key). Not yet connected. */
export function httpClient(
  bus: CommunicationBus,
  headers: Record<string, string> = { "x-agent-api-key": TEST_KEY },
): {
  client: Client;
  transport: StreamableHTTPClientTransport;
} {
  const transport = new StreamableHTTPClientTransport(new URL(`${bus.url}/mcp`), { requestInit: { headers } });
  const client = new Client({ name: "troupe-test", version: "1.0.0" });
  clients.push(client);
  return { client, transport };
}

/** A connected client of the bus's `/mcp`, with the test key. */
export async function connectHttp(bus: CommunicationBus): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const connection = httpClient(bus);
  await connection.client.connect(connection.transport);
  return connection;
}

/** What a tool result carries, for assertions (left untyped: its shape is what tests assert). */
export function structured(result: Awaited<ReturnType<Client["callTool"]>>): any {
  const { structuredContent, content } = result as CallToolResult;
  // The text is the same JSON: a client that reads only text sees the same value.
  const [first] = content;
  if (first?.type !== "text" || JSON.stringify(JSON.parse(first.text)) !== JSON.stringify(structuredContent)) {
    throw new Error(`the text content does not carry the structured content: ${JSON.stringify(result)}`);
  }
  return structuredContent;
}

/** Progress notifications of one call, and a way to wait for the next. */
export function progressLog(): { notes: Progress[]; onprogress: (progress: Progress) => void; next: () => Promise<Progress> } {
  const notes: Progress[] = [];
  let waiters: Array<(progress: Progress) => void> = [];
  return {
    notes,
    onprogress: (progress) => {
      notes.push(progress);
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake(progress);
    },
    next: () => new Promise((resolve) => waiters.push(resolve)),
  };
}
