/**
 * `troupe mcp` as an MCP client runs it: a child process on stdio, driven by the official SDK client. The
 * default agents answer; the assistant talks to the fake OpenAI API, so that a cancelled prompt can be seen to
 * stop its provider call.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { createRuntime, TOOL_NAMES } from "../../src/index.js";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { progressLog, structured } from "./support.js";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const TROUPE_MCP = ["--import", "tsx", "src/cli/main.ts", "mcp"];
const clients: Client[] = [];
const children: ChildProcessWithoutNullStreams[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** `troupe mcp` as a bare child process, without a client; killed after the test if still running. */
function spawnTroupeMcp(extraArgs: string[] = []): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [...TROUPE_MCP, ...extraArgs], { cwd: projectRoot, env: { PATH: process.env.PATH ?? "" } });
  children.push(child);
  return child;
}

/** Resolves once the child has said on stderr that it serves. */
async function serving(child: ChildProcessWithoutNullStreams): Promise<void> {
  let stderr = "";
  child.stderr.setEncoding("utf8");
  for await (const chunk of child.stderr) {
    stderr += chunk as string;
    if (stderr.includes("troupe mcp: serving")) return;
  }
  throw new Error(`troupe mcp ended without serving: ${stderr}`);
}

/** `troupe mcp` started by the SDK's stdio client, with only `env` from the environment (no developer's keys). */
async function startTroupeMcp(env: Record<string, string> = {}): Promise<{ client: Client; stderr: () => string; transportErrors: Error[] }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: TROUPE_MCP, cwd: projectRoot, env, stderr: "pipe" });
  let stderr = "";
  // With `stderr: "pipe"` the transport's stderr is the child's, a Readable.
  const childStderr = transport.stderr as Readable | null;
  childStderr?.setEncoding("utf8");
  childStderr?.on("data", (chunk: string) => {
    stderr += chunk;
  });
  const transportErrors: Error[] = [];
  const client = new Client({ name: "troupe-test", version: "1.0.0" });
  clients.push(client);
  await client.connect(transport);
  // Set after connect, which installs its own: a line on stdout that is not MCP would land here.
  const protocolOnError = transport.onerror;
  transport.onerror = (error) => {
    transportErrors.push(error);
    protocolOnError?.(error);
  };
  return { client, stderr: () => stderr, transportErrors };
}

describe("troupe mcp", () => {
  it("serves the eight tools with the bridge's schemas and runs a whole session over stdio", async () => {
    const fake = await startOpenAIFake();
    const { client, stderr, transportErrors } = await startTroupeMcp({ OPENAI_API_KEY: "sk-mcp-test", OPENAI_BASE_URL: fake.baseURL });

    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(TOOL_NAMES);
    expect(tools.map((tool) => tool.inputSchema)).toEqual(createRuntime().bridge.tools.map((tool) => tool.inputSchema));

    const { sessionId } = structured(await client.callTool({ name: "sessions_create", arguments: { agentId: "assistant" } }));

    // A prompt whose answer streams in three chunks, 20 ms apart, arrives as progress notifications: their text
    // adds up to the answer. (How many depends on how the chunks are read: a busy machine may read them at once.)
    fake.enqueue(chatReply({ text: "Hello from the fake", deltas: ["Hello ", "from ", "the fake"], delayMs: 20 }));
    const progress = progressLog();
    const answer = structured(
      await client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "hi" } }, undefined, { onprogress: progress.onprogress }),
    );
    expect(answer).toMatchObject({ text: "Hello from the fake", stopReason: "end_turn", requestId: expect.any(String) });
    expect(progress.notes.map((note) => note.message).join("")).toBe("Hello from the fake");
    const counts = progress.notes.map((note) => note.progress);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)).toBe("Hello from the fake".length);

    const status = structured(await client.callTool({ name: "sessions_status", arguments: { sessionId } }));
    expect(status).toMatchObject({ sessionId, agentId: "assistant", status: "idle", provider: "openai", queued: 0 });

    // A prompt that streams a little, then hangs: cancelling the call stops the HTTP request to the provider.
    fake.enqueue(chatReply({ deltas: ["Thinking "], hangAfterDeltas: true }));
    const abort = new AbortController();
    const streaming = progressLog();
    const firstDelta = streaming.next();
    const hanging = client.callTool({ name: "sessions_prompt", arguments: { sessionId, prompt: "think long" } }, undefined, {
      signal: abort.signal,
      onprogress: streaming.onprogress,
    });
    expect(await firstDelta).toEqual({ progress: 9, message: "Thinking " });
    abort.abort("the user pressed stop");
    await expect(hanging).rejects.toBeInstanceOf(McpError);
    await fake.lastRequest.clientClosed;
    expect(structured(await client.callTool({ name: "sessions_status", arguments: { sessionId } }))).toMatchObject({ status: "idle", queued: 0 });

    expect(structured(await client.callTool({ name: "sessions_close", arguments: { sessionId } }))).toEqual({ closed: true, sessionId });
    const afterClose = await client.callTool({ name: "sessions_status", arguments: { sessionId } });
    expect(afterClose.isError).toBe(true);
    expect(structured(afterClose)).toMatchObject({ type: "NOT_FOUND", message: "Session not found", details: { sessionId } });

    const delegated = structured(await client.callTool({ name: "tasks_delegate", arguments: { agentId: "mock", prompt: "done?" } }));
    expect(delegated).toMatchObject({ text: "Echo: done?", stopReason: "end_turn", sessionId: expect.any(String) });

    // Run from the project's folder, whose ./agents team makes its orchestrator the default agent.
    expect(stderr()).toMatch(/troupe mcp: agents from agents\/: orchestrator \(default\), backend \(delegate\), frontend \(inline\), reviewer \(delegate\)\n/);
    expect(stderr()).toMatch(/troupe mcp: serving the bridge tools on stdio; agent "orchestrator" answering with openai/);
    expect(transportErrors).toEqual([]);
  });

  it("exits 0 with nothing on stdout when the client closes stdin", async () => {
    const child = spawnTroupeMcp();
    const exited = once(child, "close");
    let stdout = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    await serving(child);

    child.stdin.end();

    expect(await exited).toEqual([0, null]);
    expect(stdout).toBe("");
  });

  it("answers a line that is not JSON with a parse error and one that is not JSON-RPC with an invalid request, then goes on serving", async () => {
    const child = spawnTroupeMcp();
    await serving(child);
    const lines: unknown[] = [];
    let pending = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      for (let at = pending.indexOf("\n"); at >= 0; at = pending.indexOf("\n")) {
        lines.push(JSON.parse(pending.slice(0, at)));
        pending = pending.slice(at + 1);
      }
    });

    child.stdin.write("this is not json\n");
    child.stdin.write('{"hello":"world"}\n');
    child.stdin.write('{"jsonrpc":"2.0","id":7,"method":"ping"}\n');

    await expect.poll(() => lines.length).toBe(3);
    expect(lines).toEqual([
      { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error: Invalid JSON", data: expect.any(String) } },
      { jsonrpc: "2.0", id: null, error: { code: -32600, message: "Invalid Request: not a JSON-RPC message" } },
      { jsonrpc: "2.0", id: 7, result: {} },
    ]);
    child.stdin.end();
    expect(await once(child, "close")).toEqual([0, null]);
  });

  it("exits 0 on SIGTERM while its client still holds stdin open", async () => {
    const child = spawnTroupeMcp();
    const exited = once(child, "close");
    await serving(child);

    child.kill("SIGTERM");

    expect(await exited).toEqual([0, null]);
  });

  it("exits 2 saying so when --agents names no folder", async () => {
    const child = spawnTroupeMcp(["--agents", "no-such-team"]);
    const exited = once(child, "close");
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));

    expect(await exited).toEqual([2, null]);
    expect(stderr).toBe(
      "troupe mcp: --agents no-such-team: no such folder (name a folder of agent.yaml files, or give --no-agents for the built-in agents only)\n",
    );
  });

  it("answers a bad flag with exit code 2 and the usage", async () => {
    const child = spawnTroupeMcp(["--port", "8080"]);
    const exited = once(child, "close");
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));

    expect(await exited).toEqual([2, null]);
    expect(stderr).toMatch(/troupe mcp: .*--port/);
    expect(stderr).toMatch(/Usage: troupe mcp/);
  });
});
