/**
 * The `troupe` command line, run as a person would: as a child process, reading its stdout, stderr and exit code.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chatError, chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { FIXTURE_AGENT, isAlive } from "../support/workers.js";
import { afterEach, describe, expect, it } from "vitest";
import { VERSION } from "../../src/index.js";
import { MACHINE_NAMES } from "../../src/graph/machines.js";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const MAIN = join(projectRoot, "src/cli/main.ts");
const children: ChildProcessWithoutNullStreams[] = [];
const closed = new WeakMap<ChildProcessWithoutNullStreams, Promise<number | null>>();

afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
});

function troupe(args: string[], env: Record<string, string> = {}, cwd = projectRoot): ChildProcessWithoutNullStreams {
  // A developer's own keys must not make the server reach a real provider from a test.
  const { AGENT_BUS_API_KEY: _key, OPENAI_API_KEY: _openai, OPENAI_BASE_URL: _base, ANTHROPIC_API_KEY: _anthropic, GEMINI_API_KEY: _gemini, ...inherited } =
    process.env;
  // tsx is resolved from the project, wherever the command runs.
  const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), MAIN, ...args], { cwd, env: { ...inherited, ...env } });
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

/** Runs `troupe` to its end: exit code, stdout and stderr. */
async function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = troupe(args, env);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const code = await exitCodeOf(child);
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

async function serveOnFreePort(args: string[] = [], env: Record<string, string> = {}, cwd = projectRoot) {
  const child = troupe(["serve", "--port", "0", "--host", "127.0.0.1", "--in-memory", ...args], env, cwd);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const [line = "", url = ""] = await stdout.until(/troupe listening on (http:\/\/\S+).*\n/);
  return { child, url, line, stderr };
}

/** The JSON log lines written so far (stderr is not a terminal here, so pino writes JSON). */
function logLines(stderr: { text: () => string }): Array<Record<string, unknown>> {
  return stderr
    .text()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
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

  it("exits 2 naming the option on a bad --port, --log-level, or --data with --in-memory", async () => {
    const [port, level, data] = await Promise.all([
      run(["serve", "--port", "http"]),
      run(["serve", "--log-level", "loud"]),
      run(["serve", "--data", "here", "--in-memory"]),
    ]);
    expect(port).toMatchObject({ code: 2, stderr: expect.stringContaining("option '--port <port>' argument 'http' is invalid. expected a port from 0 to 65535.") });
    expect(port.stderr).toMatch(/add --help for usage/);
    expect(level).toMatchObject({ code: 2, stderr: expect.stringMatching(/'--log-level <level>' argument 'loud' is invalid.*trace, debug, info, warn, error, silent/) });
    expect(data).toMatchObject({ code: 2, stderr: expect.stringContaining("option '--data <dir>' cannot be used with option '--in-memory'") });
  });

  it("logs JSON lines on stderr at --log-level, with the session, request and agent of each prompt", async () => {
    const { child, url, stderr } = await serveOnFreePort(["--log-level", "debug"]);
    const delegated = (await (await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ agentId: "mock", prompt: "hi" }) })).json()) as {
      sessionId: string;
      requestId: string;
    };
    child.kill("SIGTERM");
    expect(await exitCodeOf(child)).toBe(0);
    const lines = logLines(stderr);
    expect(lines.find((line) => line.msg === "troupe listening")).toMatchObject({ level: 30, url });
    expect(lines.find((line) => line.event === "prompt.started")).toMatchObject({ level: 20, sessionId: delegated.sessionId, requestId: delegated.requestId, agentId: "mock" });
    expect(lines.find((line) => line.event === "prompt.completed")).toMatchObject({ level: 30, sessionId: delegated.sessionId, requestId: delegated.requestId, agentId: "mock" });
    expect(lines.at(-1)).toMatchObject({ msg: "stopped" });
    // Deltas are trace: not at debug.
    expect(lines.some((line) => line.event === "prompt.delta")).toBe(false);
  });

  it("runs the README's example ACP agent from examples/troupe.json, started from another folder, and logs its stderr under its id", async () => {
    const elsewhere = mkdtempSync(join(tmpdir(), "troupe-cli-cwd-"));
    try {
      const { child, url, stderr } = await serveOnFreePort(["--config", join(projectRoot, "examples/troupe.json")], {}, elsewhere);
      const delegated = await fetch(`${url}/bridge/tasks_delegate`, { method: "POST", body: JSON.stringify({ agentId: "echo-agent", prompt: "hello worker" }) });
      expect(await delegated.json()).toMatchObject({ text: "Echo: hello worker", stopReason: "end_turn" });
      child.kill("SIGTERM");
      expect(await exitCodeOf(child)).toBe(0);
      expect(logLines(stderr).find((line) => line.event === "worker.stderr")).toMatchObject({ worker: "echo-agent", agentId: "echo-agent", msg: "echo-agent: session 1 opened" });
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
  it("prints the version on --version and -v and exits 0", async () => {
    const [long, short] = await Promise.all([run(["--version"]), run(["-v"])]);
    expect(long).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
    expect(short).toEqual({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
  });

  it("prints usage listing every command on --help and exits 0", async () => {
    const { code, stdout } = await run(["--help"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: troupe/);
    for (const command of ["serve", "delegate", "agents", "graph"]) expect(stdout).toMatch(new RegExp(`^  ${command} `, "m"));
    expect(stdout).toContain("Exit codes: 0 done, 1 failed, 2 bad usage, 130 interrupted");
  });

  it("prints each command's help on --help and on help <command>", async () => {
    const helps = await Promise.all([
      run(["serve", "--help"]),
      run(["delegate", "--help"]),
      run(["agents", "--help"]),
      run(["graph", "--help"]),
      run(["help", "delegate"]),
    ]);
    expect(helps.map(({ code }) => code)).toEqual([0, 0, 0, 0, 0]);
    const [serve, delegate, agents, graph, helpDelegate] = helps.map(({ stdout }) => stdout);
    for (const option of ["--port", "--host", "--api-key", "--agent-auth", "--config", "--data", "--in-memory", "--tls-key", "--tls-cert", "--log-level"]) {
      expect(serve).toContain(option);
    }
    expect(delegate).toMatch(/^Usage: troupe delegate \[options\] <agentId> <prompt>/);
    for (const option of ["--provider", "--model", "--temperature", "--max-tokens", "--stream", "--no-stream"]) expect(delegate).toContain(option);
    expect(helpDelegate).toBe(delegate);
    expect(agents).toMatch(/^Usage: troupe agents/);
    expect(graph).toMatch(/^Usage: troupe graph \[options\] <machine>/);
  });

  it("exits 2 on an unknown command or none, saying what to do, with nothing on stdout", async () => {
    const [unknown, none] = await Promise.all([run(["frobnicate"]), run([])]);
    expect(unknown).toMatchObject({ code: 2, stdout: "" });
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(unknown.stderr).toMatch(/add --help for usage/);
    expect(none).toMatchObject({ code: 2, stdout: "" });
    expect(none.stderr).toMatch(/^Usage: troupe/);
  });
});

describe("troupe delegate", () => {
  const openAIEnv = (baseURL: string) => ({ OPENAI_API_KEY: "sk-delegate-test", OPENAI_BASE_URL: baseURL });

  it("streams the assistant's OpenAI answer to stdout, prints the usage on stderr, and exits 0", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ deltas: ["Hello", " from", " the fake"], usage: { prompt_tokens: 12, completion_tokens: 5 } }));
    const { code, stdout, stderr } = await run(
      ["delegate", "assistant", "Say hi", "--model", "gpt-4o-mini", "--temperature", "0.2", "--max-tokens", "50"],
      openAIEnv(fake.baseURL),
    );
    expect({ code, stdout }).toEqual({ code: 0, stdout: "Hello from the fake\n" });
    expect(stderr).toBe("— stop: end_turn · tokens: 12 in, 5 out · provider: openai\n");
    expect(fake.lastRequest.body).toMatchObject({ model: "gpt-4o-mini", temperature: 0.2, max_tokens: 50, stream: true });
    expect(fake.lastRequest.body.messages.at(-1)).toEqual({ role: "user", content: "Say hi" });
  });

  it("writes each token as it comes; Ctrl-C cancels the prompt, whose HTTP request stops, and exits 130", async () => {
    const fake = await startOpenAIFake();
    // The provider streams two pieces, then never finishes: only streaming can show them.
    fake.enqueue(chatReply({ deltas: ["Partial ", "answer"], hangAfterDeltas: true }));
    const child = troupe(["delegate", "assistant", "Tell me everything"], openAIEnv(fake.baseURL));
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    await stdout.until(/Partial answer/);
    child.kill("SIGINT");
    expect(await exitCodeOf(child)).toBe(130);
    await fake.lastRequest.clientClosed;
    expect(stdout.text()).toBe("Partial answer\n");
    expect(stderr.text()).toContain("— cancelled");
  });

  it("prints the answer at the end with --no-stream, and reads the prompt from stdin with -", async () => {
    const child = troupe(["delegate", "mock", "-", "--no-stream"]);
    const stdout = collect(child.stdout);
    child.stdin.end("from stdin");
    expect(await exitCodeOf(child)).toBe(0);
    expect(stdout.text()).toBe("Echo: from stdin\n");
  });

  it("exits 2 naming a bad flag, a missing argument, an unknown agent or an unknown provider", async () => {
    const [temperature, tokens, missing, agent, provider] = await Promise.all([
      run(["delegate", "assistant", "hi", "--temperature", "3"]),
      run(["delegate", "assistant", "hi", "--max-tokens", "lots"]),
      run(["delegate", "assistant"]),
      run(["delegate", "nobody", "hi"]),
      run(["delegate", "assistant", "hi", "--provider", "gemini"]),
    ]);
    expect(temperature).toMatchObject({ code: 2, stdout: "", stderr: expect.stringContaining("option '--temperature <number>' argument '3' is invalid. expected a number from 0 to 2.") });
    expect(tokens).toMatchObject({ code: 2, stderr: expect.stringContaining("option '--max-tokens <count>' argument 'lots' is invalid. expected a whole number above 0.") });
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining("missing required argument 'prompt'") });
    expect(agent).toMatchObject({ code: 2, stderr: 'troupe delegate: no agent "nobody"; the agents are assistant, mock (troupe agents describes them)\n' });
    expect(provider).toMatchObject({ code: 2, stderr: expect.stringMatching(/^troupe delegate: CONFIG: metadata\.provider: no provider gemini is registered with agent assistant \(registered: mock\)/) });
  });

  it("exits 1 saying which key to check when the provider refuses it", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(401, "Incorrect API key provided"));
    const { code, stdout, stderr } = await run(["delegate", "assistant", "hi"], openAIEnv(fake.baseURL));
    expect({ code, stdout }).toEqual({ code: 1, stdout: "" });
    expect(stderr).toMatch(/^troupe delegate: AUTH: .*Incorrect API key provided.*\(check the provider's key: OPENAI_API_KEY/m);
  });
});

describe("troupe agents", () => {
  it("lists the agents troupe serve would run, with their providers, and the workers of --config", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-agents-"));
    try {
      const config = join(directory, "troupe.json");
      writeFileSync(config, JSON.stringify({ workers: [{ id: "coder", command: "node", args: ["./coder.mjs"], capabilities: ["code"] }] }));
      const [table, json] = await Promise.all([run(["agents", "--config", config]), run(["agents", "--json", "--config", config], { OPENAI_API_KEY: "sk-listed" })]);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^ID +KIND +PROVIDERS +CAPABILITIES +DESCRIPTION$/m);
      expect(table.stdout).toMatch(/^assistant \(default\) +in-process +mock\* +chat /m);
      expect(table.stdout).toMatch(new RegExp(`^coder +worker +- +code +ACP worker: node \\(runs: node ${join(directory, "coder.mjs")}\\)$`, "m"));
      expect(table.stdout).toContain("No provider key is set: the assistant answers with the offline mock provider");
      const listing = JSON.parse(json.stdout);
      expect(listing).toMatchObject({ defaultAgentId: "assistant", liveProviders: ["openai"] });
      expect(listing.agents[0]).toMatchObject({ id: "assistant", kind: "in-process", isDefault: true, defaultProvider: "openai", providers: [{ id: "openai" }, { id: "mock" }] });
      expect(listing.agents.map((agent: { id: string }) => agent.id)).toEqual(["assistant", "mock", "coder"]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});

describe("troupe graph", () => {
  it("prints a machine as Mermaid or JSON, writes SVG to a file, and exits 2 naming the machines on an unknown one", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-graph-"));
    try {
      const svgFile = join(directory, "session.svg");
      const [mermaid, json, svg, unknown] = await Promise.all([
        run(["graph", "worker", "--format", "mermaid"]),
        run(["graph", "workflow", "--steps", "plan,ship"]),
        run(["graph", "session", "--format", "svg", "-o", svgFile]),
        run(["graph", "nope"]),
      ]);
      expect(mermaid.code).toBe(0);
      expect(mermaid.stdout).toMatch(/^stateDiagram-v2\n  \[\*\] --> running\n/);
      expect(JSON.parse(json.stdout).states.map((state: { id: string }) => state.id)).toEqual(["plan", "ship", "completed", "terminated"]);
      expect(svg).toMatchObject({ code: 0, stdout: "" });
      expect(readFileSync(svgFile, "utf8")).toMatch(/<g class="state" data-state="busy"/);
      expect(unknown.code).toBe(2);
      expect(unknown.stderr).toContain(`Allowed choices are ${MACHINE_NAMES.join(", ")}.`);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
