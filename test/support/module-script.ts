/**
 * A fresh Node process for tests that must see a process from its start (what importing troupe loads, what an
 * exit leaves behind): runs an ES module given as text, TypeScript through tsx, from the project's root.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `script` and resolves, once the process exited, with what it wrote to stdout and stderr as it came. */
export async function runModuleScript(script: string): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: projectRoot });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  await once(child, "exit");
  return output;
}
