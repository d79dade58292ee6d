/**
 * The server's configuration file: paths in it are relative to its folder, whatever the server's own.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadServerConfig } from "../../src/cli/config.js";

const directories: string[] = [];

afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true });
});

function configFile(content: unknown): { folder: string; path: string } {
  const folder = mkdtempSync(join(tmpdir(), "troupe-config-"));
  directories.push(folder);
  const path = join(folder, "troupe.json");
  writeFileSync(path, JSON.stringify(content));
  return { folder, path };
}

describe("loadServerConfig", () => {
  it("resolves a relative command, ./ and ../ arguments, cwd and fsRoot against the file's folder", () => {
    const { folder, path } = configFile({
      workers: [
        { id: "w", command: "./bin/agent", args: ["./agent.mjs", "../shared/tool.json", "--mode", "fast", "plain.txt"], cwd: "work", fsRoot: "../data" },
      ],
    });
    expect(loadServerConfig(path).workers).toEqual([
      {
        id: "w",
        command: join(folder, "bin/agent"),
        args: [join(folder, "agent.mjs"), join(folder, "../shared/tool.json"), "--mode", "fast", "plain.txt"],
        cwd: join(folder, "work"),
        fsRoot: join(folder, "../data"),
      },
    ]);
  });

  it("leaves a command without a slash for the PATH, and absolute paths as they are", () => {
    const { path } = configFile({ workers: [{ id: "w", command: "node", args: ["/srv/agent.mjs"], cwd: "/srv" }] });
    expect(loadServerConfig(path).workers).toEqual([{ id: "w", command: "node", args: ["/srv/agent.mjs"], cwd: "/srv" }]);
  });

  it("resolves against the file's folder when the file is named by a relative path", () => {
    const { folder, path } = configFile({ workers: [{ id: "w", command: "node", args: ["./agent.mjs"] }] });
    const relativePath = relative(process.cwd(), path);
    expect(relativePath.startsWith("/")).toBe(false);
    expect(loadServerConfig(relativePath).workers?.[0]?.args).toEqual([join(folder, "agent.mjs")]);
  });
});
