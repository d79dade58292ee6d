/**
 * `troupe serve` runs the communication bus: its routes and agent sockets next to `/health` and the bridge.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { connectAgent, type AgentClient, type MessageEnvelope } from "../../src/index.js";
import { envelope, until } from "./support.js";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const children: ChildProcessWithoutNullStreams[] = [];
const clients: AgentClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

function troupe(args: string[]): { child: ChildProcessWithoutNullStreams; output: () => string; exited: Promise<number | null> } {
  const { AGENT_BUS_API_KEY: _ignored, ...env } = process.env;
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], { cwd: projectRoot, env });
  children.push(child);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  return { child, output: () => output, exited: once(child, "close").then(([code]) => code as number | null) };
}

describe("troupe serve runs the bus", () => {
  it("registers agents, delivers a message to an agent's socket, and stops on SIGTERM", async () => {
    const { child, output, exited } = troupe(["serve", "--port", "0", "--host", "127.0.0.1", "--api-key", "s3cret", "--in-memory"]);
    await until(() => /troupe listening on (http:\/\/\S+)/.test(output()), 15_000);
    const url = /troupe listening on (http:\/\/\S+)/.exec(output())![1]!;
    const headers = { "content-type": "application/json", "x-agent-api-key": "s3cret" };
    for (const agentId of ["claude-code://orchestrator", "opencode://backend"]) {
      const registered = await fetch(`${url}/agents/register`, { method: "POST", headers, body: JSON.stringify({ agent_id: agentId }) });
      expect(registered.status).toBe(201);
    }
    const received: MessageEnvelope[] = [];
    const backend = connectAgent({
      url,
      agentId: "opencode://backend",
      apiKey: "s3cret",
      onMessage: (message) => void received.push(message),
      reconnect: false,
    });
    clients.push(backend);
    await backend.ready();
    const sent = await fetch(`${url}/messages/send`, {
      method: "POST",
      headers,
      body: JSON.stringify(envelope("claude-code://orchestrator", "opencode://backend", { message_id: "over-serve" })),
    });
    expect(sent.status).toBe(202);
    await until(() => received.length === 1);
    expect(received[0]!.message_id).toBe("over-serve");
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await fetch(`${url}/bridge/bridge_health`, { method: "POST", headers })).status).toBe(200);

    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses dev-key on a non-loopback host as bad usage: exit 2", async () => {
    const { output, exited } = troupe(["serve", "--port", "0", "--host", "0.0.0.0", "--api-key", "dev-key", "--in-memory"]);
    expect(await exited).toBe(2);
    expect(output()).toMatch(/dev-key.*non-loopback/);
  });
});
