import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { FIXTURE_AGENT, isAlive } from "../support/workers.js";
import { loadServerConfig } from "../../src/cli/config.js";
import { afterEach, describe, expect, it } from "vitest";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const children: ChildProcessWithoutNullStreams[] = [];
const closed = new WeakMap<ChildProcessWithoutNullStreams, Promise<number | null>>();

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

function troupe(args: string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  // A developer's own keys must not make the server reach a real provider from a test.
  const { AGENT_BUS_API_KEY: _key, OPENAI_API_KEY: _openai, OPENAI_BASE_URL: _base, ANTHROPIC_API_KEY: _anthropic, GEMINI_API_KEY: _gemini, ...inherited } =
    process.env;
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", ...args], {
    cwd: projectRoot,
    env: { ...inherited, ...env },
  });
  children.push(child);
  closed.set(child, once(child, "close").then(([code]) => code as number | null));
  return child;
}

/** Collects a stream's text; `until` resolves with the first match of a pattern, or rejects when the stream ends. */
function collect(stream: NodeJS.ReadableStream): { text: () => string; until: (pattern: RegExp) => Promise<RegExpMatchArray> } {
  let text = "";
  let ended = false;
  const waiters: (() => void)[] = [];
  const wakeAll = (): void => {
    for (const wake of waiters.splice(0)) wake();
  };
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    text += chunk;
    wakeAll();
  });
  stream.on("end", () => {
    ended = true;
    wakeAll();
  });
  return {
    text: () => text,
    until: async (pattern) => {
      for (;;) {
        const found = text.match(pattern);
        if (found) return found;
        if (ended) throw new Error(`stream ended without ${pattern}: ${text}`);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    },
  };
}

/** The exit code, once the process has exited and its output is all read. */
function exitCodeOf(child: ChildProcessWithoutNullStreams): Promise<number | null> {
  return closed.get(child) ?? Promise.reject(new Error("not spawned by troupe()"));
}

async function serveOnFreePort(args: string[] = [], env: Record<string, string> = {}) {
  const child = troupe(["serve", "--port", "0", "--host", "127.0.0.1", "--in-memory", ...args], env);
  const stdout = collect(child.stdout);
  const [line = "", url = ""] = await stdout.until(/troupe listening on (http:\/\/\S+).*\n/);
  return { child, url, line };
}

describe("troupe serve", () => {
  it("serves the bridge with the offline mock provider when no provider key is set, and exits 0 on SIGTERM", async () => {
    const { child, url, line } = await serveOnFreePort();
    expect(line).toMatch(/agent "assistant" answering with the offline mock provider/);

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "healthy", bridge: { agents: 2 } });
    const discovered = await (await fetch(`${url}/bridge/agents_discover`, { method: "POST" })).json();
    expect(discovered).toMatchObject({ agents: [{ id: "assistant", defaultProvider: "mock", providers: [{ id: "mock" }] }, { id: "mock" }] });

    const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
    expect(delegated.status).toBe(200);
    expect(await delegated.json()).toMatchObject({ text: "Echo: hi", stopReason: "end_turn" });

    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("answers with OpenAI when OPENAI_API_KEY and OPENAI_BASE_URL are set, never showing the key", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ text: "From the model" }));
    const { child, url, line } = await serveOnFreePort([], { OPENAI_API_KEY: "sk-cli-secret-123", OPENAI_BASE_URL: fake.baseURL });
    expect(line).toMatch(/agent "assistant" answering with openai \(providers: openai, mock\)/);
    expect(line).not.toContain("sk-cli-secret-123");
    const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
    expect(await delegated.json()).toMatchObject({ text: "From the model", stopReason: "end_turn" });
    expect(fake.lastRequest.headers.authorization).toBe("Bearer sk-cli-secret-123");
    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("requires the key from AGENT_BUS_API_KEY and exits 0 on SIGINT", async () => {
    const { child, url } = await serveOnFreePort([], { AGENT_BUS_API_KEY: "from-env" });
    expect((await fetch(`${url}/bridge/bridge_health`, { method: "POST" })).status).toBe(401);
    const keyed = await fetch(`${url}/bridge/bridge_health`, { method: "POST", headers: { "x-agent-api-key": "from-env" } });
    expect(keyed.status).toBe(200);
    child.kill("SIGINT");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("prefers --api-key over the environment", async () => {
    const { child, url } = await serveOnFreePort(["--api-key", "from-flag"], { AGENT_BUS_API_KEY: "from-env" });
    const keyed = await fetch(`${url}/bridge/bridge_health`, { method: "POST", headers: { "x-agent-api-key": "from-flag" } });
    expect(keyed.status).toBe(200);
    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("says which agent auth is on: shared by default on loopback, token with --agent-auth token", async () => {
    const shared = await serveOnFreePort();
    expect(shared.line).toContain("agent auth: shared");
    shared.child.kill("SIGTERM");
    expect(await exitCodeOf(shared.child)).toBe(0);
    const token = await serveOnFreePort(["--agent-auth", "token"]);
    expect(token.line).toContain("agent auth: token");
    const registered = await fetch(`${token.url}/agents/register`, { method: "POST", body: JSON.stringify({ agent_id: "cc://a" }) });
    const { agent_token } = (await registered.json()) as { agent_token: string };
    const forged = await fetch(`${token.url}/agents/cc%3A%2F%2Fa`, { method: "DELETE" });
    expect(forged.status).toBe(403);
    expect((await fetch(`${token.url}/agents/cc%3A%2F%2Fa`, { method: "DELETE", headers: { "x-agent-token": agent_token } })).status).toBe(200);
    token.child.kill("SIGTERM");
    expect(await exitCodeOf(token.child)).toBe(0);
  });

  it("exits 2 with usage on a bad --port", async () => {
    const child = troupe(["serve", "--port", "http"]);
    const stderr = collect(child.stderr);
    expect(await exitCodeOf(child)).toBe(2);
    expect(stderr.text()).toMatch(/--port/);
    expect(stderr.text()).toMatch(/Usage: troupe/);
  });

  it("runs the ACP workers of --config and ends their processes on SIGTERM", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-config-"));
    try {
      const config = join(directory, "troupe.json");
      const worker = { id: "acp", command: process.execPath, args: [FIXTURE_AGENT], capabilities: ["code"] };
      writeFileSync(config, JSON.stringify({ workers: [worker] }));
      const { child, url } = await serveOnFreePort(["--config", config]);
      const discovered = await (await fetch(`${url}/bridge/agents_discover`, { method: "POST", body: JSON.stringify({ capability: "code" }) })).json();
      expect(discovered).toMatchObject({ agents: [{ id: "acp", capabilities: ["code"] }] });
      const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ agentId: "acp", prompt: "pid" }) });
      const pid = Number(((await delegated.json()) as { text: string }).text);
      expect(isAlive(pid)).toBe(true);
      child.kill("SIGTERM");
      expect(await exitCodeOf(child)).toBe(0);
      expect(isAlive(pid)).toBe(false);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("exits 2 naming the file and the field of a bad --config", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-config-"));
    try {
      const config = join(directory, "troupe.json");
      writeFileSync(config, JSON.stringify({ workers: [{ id: "acp", args: [] }] }));
      const child = troupe(["serve", "--config", config]);
      const stderr = collect(child.stderr);
      expect(await exitCodeOf(child)).toBe(2);
      expect(stderr.text()).toContain(`${config}: workers.0.command:`);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("takes the bus's delivery timings and bounds from --config, and refuses a bus option it does not know", () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-config-"));
    try {
      const config = join(directory, "troupe.json");
      writeFileSync(config, JSON.stringify({ bus: { ackTimeout: 2_000, retryDelay: 100, maxRetainedMessages: 50 } }));
      expect(loadServerConfig(config)).toEqual({ bus: { ackTimeout: 2_000, retryDelay: 100, maxRetainedMessages: 50 } });
      writeFileSync(config, JSON.stringify({ bus: { apiKey: "in-a-file" } }));
      expect(() => loadServerConfig(config)).toThrow(expect.objectContaining({ type: "CONFIG", message: expect.stringContaining(`${config}: bus`) }));
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("exits 1 when the port is taken", async () => {
    const { child: first, url } = await serveOnFreePort();
    const port = new URL(url).port;
    const second = troupe(["serve", "--port", port, "--in-memory"]);
    const stderr = collect(second.stderr);
    expect(await exitCodeOf(second)).toBe(1);
    expect(stderr.text()).toMatch(/EADDRINUSE/);
    first.kill("SIGTERM");
    expect(await exitCodeOf(first)).toBe(0);
  });
});

describe("troupe", () => {
  it("prints usage on --help and exits 0", async () => {
    const child = troupe(["--help"]);
    const stdout = collect(child.stdout);
    expect(await exitCodeOf(child)).toBe(0);
    expect(stdout.text()).toMatch(/^Usage: troupe <command>/);
    expect(stdout.text()).toMatch(/serve/);
  });

  it("prints usage on stderr and exits 2 on an unknown command", async () => {
    const child = troupe(["frobnicate"]);
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    expect(await exitCodeOf(child)).toBe(2);
    expect(stderr.text()).toMatch(/unknown command "frobnicate"/);
    expect(stderr.text()).toMatch(/Usage: troupe/);
    expect(stdout.text()).toBe("");
  });
});
