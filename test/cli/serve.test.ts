/**
 * `troupe serve` run as a person does: its flags, its key, its workers, its logs and its exit codes.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { FIXTURE_AGENT, isAlive } from "../support/workers.js";
import { collect, exitCodeOf, logLines, projectRoot, run, serveOnFreePort, troupe } from "./support.js";

describe("troupe serve", () => {
  it("serves the bundled team of ./agents and the built-in agents with the offline mock provider when no provider key is set, and exits 0 on SIGTERM", async () => {
    const { child, url, line, stdout } = await serveOnFreePort();
    expect(line).toMatch(/agent "orchestrator" answering with the offline mock provider/);
    expect(stdout.text()).toContain("troupe: agents from agents/: orchestrator (default), backend (delegate), frontend (inline), reviewer (delegate)\n");

    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "healthy", bridge: { agents: 5 } });
    const discovered = (await (await fetch(`${url}/bridge/agents_discover`, { method: "POST" })).json()) as { agents: Array<{ id: string }> };
    expect(discovered.agents.map((agent) => agent.id)).toEqual(["orchestrator", "backend", "reviewer", "assistant", "mock"]);
    expect(discovered.agents[0]).toMatchObject({
      id: "orchestrator",
      defaultProvider: "mock",
      providers: [{ id: "mock" }],
      capabilities: ["planning", "ui-copy"],
    });

    const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
    expect(delegated.status).toBe(200);
    expect(await delegated.json()).toMatchObject({ text: "Echo: hi", stopReason: "end_turn" });

    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("serves the built-in agents alone with --no-agents, the assistant the default", async () => {
    const { child, url, line, stdout } = await serveOnFreePort(["--no-agents"]);
    expect(line).toMatch(/agent "assistant" answering with the offline mock provider/);
    expect(stdout.text()).not.toContain("agents from");
    const discovered = await (await fetch(`${url}/bridge/agents_discover`, { method: "POST" })).json();
    expect(discovered).toMatchObject({ agents: [{ id: "assistant", defaultProvider: "mock", providers: [{ id: "mock" }] }, { id: "mock" }] });
    const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
    expect(await delegated.json()).toMatchObject({ text: "Echo: hi", stopReason: "end_turn", sessionId: expect.any(String) });
    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("answers with OpenAI when OPENAI_API_KEY and OPENAI_BASE_URL are set, never showing the key", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ text: "From the model" }));
    const { child, url, line } = await serveOnFreePort([], { OPENAI_API_KEY: "sk-cli-secret-123", OPENAI_BASE_URL: fake.baseURL });
    expect(line).toMatch(/agent "orchestrator" answering with openai \(providers: openai, mock\)/);
    expect(line).not.toContain("sk-cli-secret-123");
    const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ prompt: "hi" }) });
    expect(await delegated.json()).toMatchObject({ text: "From the model", stopReason: "end_turn" });
    expect(fake.lastRequest.headers.authorization).toBe("Bearer sk-cli-secret-123");
    // The orchestrator's own system prompt, then its planning and the inlined frontend's capability prompts.
    const system = fake.lastRequest.body.messages[0];
    expect(system.role).toBe("system");
    expect(system.content).toMatch(/^You lead a small software team\.[\s\S]*## Capability: planning\n[\s\S]*## Capability: ui-copy \(from frontend: /);
    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
  });

  it("serves the team of --agents DIR, relative to where it starts: a session with a delegated agent answers with its own system prompt and model", async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), "troupe-cli-team-"));
    try {
      mkdirSync(join(elsewhere, "team"));
      writeFileSync(join(elsewhere, "team", "lead.yaml"), "name: lead\ndefault: true\nsystem_prompt: You lead.\n");
      writeFileSync(join(elsewhere, "team", "api.yaml"), "name: api\nrouting: delegate\nmodel: gpt-4o-mini\nsystem_prompt: You design APIs.\n");
      const fake = await startOpenAIFake();
      fake.enqueue(chatReply({ text: "POST /login" }));
      const { child, url, line, stdout } = await serveOnFreePort(["--agents", "team"], { OPENAI_API_KEY: "sk-team", OPENAI_BASE_URL: fake.baseURL }, elsewhere);
      expect(line).toMatch(/agent "lead" answering with openai/);
      expect(stdout.text()).toContain("troupe: agents from team/: lead (default), api (delegate)\n");

      const created = await fetch(`${url}/bridge/sessions_create`, { method: "POST", body: JSON.stringify({ agentId: "api" }) });
      expect(created.status).toBe(200);
      const { sessionId } = (await created.json()) as { sessionId: string };
      const prompted = await fetch(`${url}/bridge/sessions_prompt`, {
        method: "POST",
        body: JSON.stringify({ sessionId, prompt: "Design the login endpoint" }),
      });
      expect(await prompted.json()).toMatchObject({ text: "POST /login", stopReason: "end_turn" });
      expect(fake.lastRequest.body).toMatchObject({
        model: "gpt-4o-mini",
        messages: [
          { role: "system", content: "You design APIs." },
          { role: "user", content: "Design the login endpoint" },
        ],
      });
      child.kill("SIGTERM");
      expect(await exitCodeOf(child)).toBe(0);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it("exits 2 naming the file, line and field of a broken agent.yaml, before listening", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-team-"));
    try {
      writeFileSync(join(directory, "lead.yaml"), "name: lead\nrouting: sideways\n");
      const child = troupe(["serve", "--port", "0", "--in-memory", "--agents", directory]);
      const stdout = collect(child.stdout);
      const stderr = collect(child.stderr);
      expect(await exitCodeOf(child)).toBe(2);
      expect(stderr.text()).toContain(`troupe serve: ${join(directory, "lead.yaml")}:2: routing: expected one of auto, inline, delegate (got "sideways")\n`);
      expect(stdout.text()).toBe("");
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
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

  it("exits 2 naming the option on a bad --port, --log-level, --data with --in-memory, a --data it cannot create, or a non-loopback --host without a real key", async () => {
    const [port, level, data, keyless, devKey] = await Promise.all([
      run(["serve", "--port", "http"]),
      run(["serve", "--log-level", "loud"]),
      run(["serve", "--data", "here", "--in-memory"]),
      run(["serve", "--host", "0.0.0.0", "--in-memory"], { AGENT_BUS_API_KEY: "" }),
      run(["serve", "--host", "0.0.0.0", "--api-key", "dev-key", "--in-memory"]),
    ]);
    // A --data folder that cannot be made (Node's recursive mkdir spun for ever under /proc).
    const unmakeable = await run(["serve", "--port", "0", "--data", "/proc/troupe-no-such-folder", "--log-level", "silent"]);
    expect(unmakeable).toMatchObject({
      code: 2,
      stdout: "",
      stderr: expect.stringMatching(/^troupe serve: --data: Cannot create the store at \/proc\/troupe-no-such-folder\/troupe\.db: ENOENT/),
    });
    // Refused before anything starts: no log line of the runtime comes first.
    expect(keyless).toEqual({
      code: 2,
      stdout: "",
      stderr: "troupe serve: --api-key: a key is required on the non-loopback host 0.0.0.0 (--api-key or $AGENT_BUS_API_KEY)\n",
    });
    expect(devKey).toEqual({ code: 2, stdout: "", stderr: 'troupe serve: --api-key: "dev-key" is refused on the non-loopback host 0.0.0.0; set a real key\n' });
    expect(port).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("option '--port <port>' argument 'http' is invalid. expected a port from 0 to 65535."),
    });
    expect(port.stderr).toMatch(/add --help for usage/);
    expect(level).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/'--log-level <level>' argument 'loud' is invalid.*trace, debug, info, warn, error, silent/),
    });
    expect(data).toMatchObject({ code: 2, stderr: expect.stringContaining("option '--data <dir>' cannot be used with option '--in-memory'") });
  });

  it("logs JSON lines on stderr at --log-level, with the session, request and agent of each prompt", async () => {
    const { child, url, stderr } = await serveOnFreePort(["--log-level", "debug"]);
    const delegated = (await (
      await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ agentId: "mock", prompt: "hi" }) })
    ).json()) as {
      sessionId: string;
      requestId: string;
    };
    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
    const lines = logLines(stderr);
    expect(lines.find((line) => line.msg === "troupe listening")).toMatchObject({ level: 30, url });
    expect(lines.find((line) => line.event === "prompt.started")).toMatchObject({
      level: 20,
      sessionId: delegated.sessionId,
      requestId: delegated.requestId,
      agentId: "mock",
    });
    expect(lines.find((line) => line.event === "prompt.completed")).toMatchObject({
      level: 30,
      sessionId: delegated.sessionId,
      requestId: delegated.requestId,
      agentId: "mock",
    });
    expect(lines.at(-1)).toMatchObject({ msg: "stopped" });
    // Deltas are trace: not at debug.
    expect(lines.some((line) => line.event === "prompt.delta")).toBe(false);
  });

  it("runs the README's example ACP agent from examples/troupe.json, started from another folder, and logs its stderr under its id", async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), "troupe-cli-cwd-"));
    try {
      const { child, url, stderr } = await serveOnFreePort(["--config", join(projectRoot, "examples/troupe.json")], {}, elsewhere);
      const delegated = await fetch(`${url}/bridge/tasks_delegate`, {
        method: "POST",
        body: JSON.stringify({ agentId: "echo-agent", prompt: "hello worker" }),
      });
      expect(await delegated.json()).toMatchObject({ text: "Echo: hello worker", stopReason: "end_turn" });
      child.kill("SIGTERM");
      expect(await exitCodeOf(child)).toBe(0);
      expect(logLines(stderr).find((line) => line.event === "worker.stderr")).toMatchObject({
        worker: "echo-agent",
        agentId: "echo-agent",
        msg: "echo-agent: session 1 opened",
      });
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
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

  it("takes the bus's limits from the bus section of --config", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-config-"));
    try {
      const config = join(directory, "troupe.json");
      writeFileSync(config, JSON.stringify({ bus: { maxAgents: 1, maxWorkflowSessions: 1 } }));
      const { child, url } = await serveOnFreePort(["--config", config]);
      const register = (agentId: string) => fetch(`${url}/agents/register`, { method: "POST", body: JSON.stringify({ agent_id: agentId }) });
      expect((await register("cc://a")).status).toBe(201);
      const refused = await register("cc://b");
      expect(refused.status).toBe(429);
      expect(await refused.json()).toMatchObject({ error: { type: "CAPACITY", details: { limit: 1 } } });
      // The workflow bound reaches the runtime serve creates, not only the bus.
      const session = { initiator: "cc://a", participants: [], steps: [{ name: "only", required_agents: ["cc://a"] }] };
      const create = () => fetch(`${url}/sessions`, { method: "POST", body: JSON.stringify(session) });
      expect((await create()).status).toBe(201);
      const full = await create();
      expect(full.status).toBe(429);
      expect(await full.json()).toMatchObject({ error: { type: "CAPACITY", details: { limit: 1 } } });
      child.kill("SIGTERM");
      expect(await exitCodeOf(child)).toBe(0);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("exits 2 naming the file and the key of an unknown bus limit in --config", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-config-"));
    try {
      const config = join(directory, "troupe.json");
      writeFileSync(config, JSON.stringify({ bus: { maxAgent: 1 } }));
      const child = troupe(["serve", "--config", config]);
      const stderr = collect(child.stderr);
      expect(await exitCodeOf(child)).toBe(2);
      expect(stderr.text()).toContain(`${config}: bus.maxAgent: unrecognized key "maxAgent"`);
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
