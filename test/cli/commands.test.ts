/**
 * `troupe` itself (version, help, unknown commands), `troupe agents` and `troupe graph`, run as a person does.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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
