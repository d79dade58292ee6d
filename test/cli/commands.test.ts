/**
 * `troupe` itself (version, help, unknown commands), `troupe agents` and `troupe graph`, run as a person does.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VERSION } from "../../src/index.js";
import { MACHINE_NAMES } from "../../src/graph/machines.js";
import { run } from "./support.js";

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
    for (const option of [
      "--port",
      "--host",
      "--api-key",
      "--agent-auth",
      "--config",
      "--agents <dir>",
      "--no-agents",
      "--data",
      "--in-memory",
      "--tls-key",
      "--tls-cert",
      "--log-level",
    ]) {
      expect(serve).toContain(option);
    }
    expect(delegate).toMatch(/^Usage: troupe delegate \[options\] <agentId> <prompt>/);
    for (const option of ["--provider", "--model", "--temperature", "--max-tokens", "--stream", "--no-stream"]) expect(delegate).toContain(option);
    expect(helpDelegate).toBe(delegate);
    expect(agents).toMatch(/^Usage: troupe agents/);
    for (const option of ["--agents <dir>", "--no-agents", "--json"]) expect(agents).toContain(option);
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

describe("troupe agents", () => {
  it("lists the agents troupe serve would run, with their providers, and the workers of --config", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-agents-"));
    try {
      const config = join(directory, "troupe.json");
      writeFileSync(config, JSON.stringify({ workers: [{ id: "coder", command: "node", args: ["./coder.mjs"], capabilities: ["code"] }] }));
      const [table, json] = await Promise.all([
        run(["agents", "--no-agents", "--config", config]),
        run(["agents", "--no-agents", "--json", "--config", config], { OPENAI_API_KEY: "sk-listed" }),
      ]);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^ID +KIND +PROVIDERS +CAPABILITIES +DESCRIPTION$/m);
      expect(table.stdout).toMatch(/^assistant \(default\) +in-process +mock\* +chat /m);
      expect(table.stdout).toMatch(new RegExp(`^coder +worker +- +code +ACP worker: node \\(runs: node ${join(directory, "coder.mjs")}\\)$`, "m"));
      expect(table.stdout).toContain("No provider key is set: the assistant answers with the offline mock provider");
      const listing = JSON.parse(json.stdout);
      expect(listing).toMatchObject({ defaultAgentId: "assistant", liveProviders: ["openai"] });
      expect(listing.team).toBeUndefined();
      expect(listing.agents[0]).toMatchObject({
        id: "assistant",
        kind: "in-process",
        isDefault: true,
        defaultProvider: "openai",
        providers: [{ id: "openai" }, { id: "mock" }],
      });
      expect(listing.agents.map((agent: { id: string }) => agent.id)).toEqual(["assistant", "mock", "coder"]);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it("shows the bundled team of ./agents: each agent's routing decision and its reason, as a table and as JSON", async () => {
    const [table, json] = await Promise.all([run(["agents"]), run(["agents", "--json"])]);

    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^orchestrator \(default\) +in-process +mock\* +planning, ui-copy +Leads the team/m);
    const routing = table.stdout.slice(table.stdout.indexOf("agent.yaml team of agents/:"));
    expect(routing.split("\n").slice(0, 6)).toEqual([
      "agent.yaml team of agents/:",
      "AGENT         FILE                        ROUTING   DECISION                  REASON             TOOLS",
      "orchestrator  agents/orchestrator.yaml:4  -         default                   default: true      current_time, word_count, delegate_to_agent",
      "backend       agents/backend.yaml:3       delegate  delegate                  routing: delegate  json_check, calculate",
      "frontend      agents/frontend.yaml:2      inline    inline into orchestrator  routing: inline    word_count",
      "reviewer      agents/reviewer.yaml:2      auto      delegate                  4 tools (> 3)      diff_stats, json_check, word_count, calculate",
    ]);
    expect(table.stdout).toContain("No provider key is set: the agents answer with the offline mock provider");
    const listing = JSON.parse(json.stdout);
    expect(listing).toMatchObject({ defaultAgentId: "orchestrator", team: { dir: "agents", defaultAgentId: "orchestrator" } });
    expect(listing.agents.map((agent: { id: string }) => agent.id)).toEqual(["orchestrator", "backend", "reviewer", "assistant", "mock"]);
    expect(listing.team.routes.map(({ agentId, mode, reason }: { agentId: string; mode: string; reason: string }) => [agentId, mode, reason])).toEqual([
      ["orchestrator", "default", "default: true"],
      ["backend", "delegate", "routing: delegate"],
      ["frontend", "inline", "routing: inline"],
      ["reviewer", "delegate", "4 tools (> 3)"],
    ]);
  });

  it("exits 2 naming the file, line and field of a broken agent.yaml, and a missing --agents folder", async () => {
    const directory = mkdtempSync(join(tmpdir(), "troupe-cli-team-"));
    try {
      const team = join(directory, "team");
      mkdirSync(team);
      writeFileSync(join(team, "lead.yaml"), "name: lead\ndefault: true\n");
      writeFileSync(join(team, "backend.yaml"), "name: backend\ncapabilities:\n  - name: ops\n    tools: [calculate, deploy]\n");
      const [broken, missing] = await Promise.all([run(["agents", "--agents", team]), run(["agents", "--agents", join(directory, "nowhere")])]);

      expect(broken).toMatchObject({ code: 2, stdout: "" });
      expect(broken.stderr).toBe(
        `troupe agents: ${join(team, "backend.yaml")}:4: capabilities[0].tools[1]: unknown tool "deploy" (known: calculate, capability_state_get, capability_state_set, current_time, diff_stats, json_check, memory_delete, memory_list, memory_save, memory_search, word_count)\n`,
      );
      expect(missing).toMatchObject({ code: 2, stdout: "" });
      expect(missing.stderr).toBe(
        `troupe agents: --agents ${join(directory, "nowhere")}: no such folder (name a folder of agent.yaml files, or give --no-agents for the built-in agents only)\n`,
      );
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
      expect(mermaid.stdout).toMatch(/^stateDiagram-v2\n {2}\[\*\] --> running\n/);
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
