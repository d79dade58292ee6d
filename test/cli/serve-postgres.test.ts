/**
 * `troupe serve --store postgres://…`: the server keeps what it must in PostgreSQL (a real server started for
 * this file), says so without the password, and comes back with it after a restart.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/engine-process.js";
import { startPostgres, type PostgresServer } from "../support/postgres-server.js";
import { collect, exitCodeOf, run, troupe } from "./support.js";

let server: PostgresServer;

beforeAll(async () => {
  server = await startPostgres();
  await server.query("ALTER USER troupe PASSWORD 'pw-never-shown'");
}, 30_000);

afterAll(async () => {
  await server?.stop();
});

/** `troupe serve --store <url>` on a free port; resolves once it listens. */
async function serveWithStore(url: string) {
  const child = troupe(["serve", "--port", "0", "--host", "127.0.0.1", "--store", url]);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const [line = "", listening = ""] = await stdout.until(/troupe listening on (http:\/\/\S+).*\n/);
  return { child, url: listening, line, stderr };
}

describe("troupe serve --store", () => {
  it("keeps registrations in PostgreSQL across a restart, and names the store without its password", async () => {
    const url = `postgres://troupe:pw-never-shown@127.0.0.1:${server.port}/postgres`;
    const first = await serveWithStore(url);
    expect(first.line).toContain(`store: PostgreSQL at postgres://troupe@127.0.0.1:${server.port}/postgres`);
    expect(first.line + first.stderr.text()).not.toContain("pw-never-shown");
    const registered = await fetch(`${first.url}/agents/register`, { method: "POST", body: JSON.stringify({ agent_id: "claude-code://kept" }) });
    expect(registered.status).toBe(201);
    first.child.kill("SIGTERM");
    expect(await exitCodeOf(first.child)).toBe(0);
    expect(await server.query("SELECT id FROM troupe.records WHERE collection = 'agents'")).toEqual([{ id: "claude-code://kept" }]);

    const second = await serveWithStore(url);
    const agents = (await (await fetch(`${second.url}/agents`)).json()) as { agents: Array<{ agent_id: string }> };
    expect(agents.agents.map((agent) => agent.agent_id)).toContain("claude-code://kept");
    second.child.kill("SIGTERM");
    expect(await exitCodeOf(second.child)).toBe(0);
  });

  it("exits 2 for a --store that is not a postgres:// URL, or given with --data or --in-memory", async () => {
    const [scheme, withData, withMemory] = await Promise.all([
      run(["serve", "--store", "mysql://localhost/db"]),
      run(["serve", "--store", server.url(), "--data", "here"]),
      run(["serve", "--store", server.url(), "--in-memory"]),
    ]);
    expect(scheme).toMatchObject({ code: 2, stderr: expect.stringContaining("--store: give a postgres:// (or postgresql://) URL") });
    expect(withData).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(
        /option '--store <url>' cannot be used with option '--data <dir>'|option '--data <dir>' cannot be used with option '--store <url>'/,
      ),
    });
    expect(withMemory).toMatchObject({ code: 2, stderr: expect.stringMatching(/cannot be used with option/) });
  });

  it("exits 1 when the PostgreSQL server cannot be reached, saying so without the password", async () => {
    const url = `postgres://troupe:pw-never-shown@127.0.0.1:${await freePort()}/postgres`;
    const { code, stderr } = await run(["serve", "--port", "0", "--host", "127.0.0.1", "--store", url]);
    expect(code).toBe(1);
    expect(stderr).toMatch(
      /^troupe serve: Cannot reach the PostgreSQL store at postgres:\/\/troupe@127\.0\.0\.1:\d+\/postgres \(schema troupe\): connect ECONNREFUSED/,
    );
    expect(stderr).not.toContain("pw-never-shown");
  });
});
