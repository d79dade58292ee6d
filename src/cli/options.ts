/**
 * Options and value parsers shared by `troupe`'s commands. A bad value is commander's `InvalidArgumentError`,
 * which it reports naming the option; `main` turns that into exit code 2.
 */
import { InvalidArgumentError, Option } from "commander";
import { CLI_LOG_LEVELS, type CliLogLevel } from "./logger.js";

/** `--port`: an integer from 0 to 65535. */
export function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65_535) throw new InvalidArgumentError("expected a port from 0 to 65535.");
  return port;
}

/** A number from `min` to `max`, e.g. `--temperature`. */
export function numberBetween(min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value) || value < min || value > max) throw new InvalidArgumentError(`expected a number from ${min} to ${max}.`);
    return value;
  };
}

/** A whole number above zero, e.g. `--max-tokens`. */
export function positiveInteger(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1) throw new InvalidArgumentError("expected a whole number above 0.");
  return value;
}

/** `--config <file>`: the option of every command that runs the server's agents. */
export function configOption(): Option {
  return new Option(
    "--config <file>",
    'a JSON configuration: { "workers": [{ "id", "command", "args", "env", "cwd", "capabilities", ... }] }; ' +
      "relative paths in it are relative to the file's folder",
  );
}

/** `--log-level <level>` with this default. */
export function logLevelOption(defaultLevel: CliLogLevel): Option {
  return new Option("--log-level <level>", "what to log on stderr (JSON lines; readable ones in a terminal)").choices(CLI_LOG_LEVELS).default(defaultLevel);
}

/** `--agents <dir>`: the folder of agent.yaml files; without it, `./agents` when it holds any. */
export function agentsOption(): Option {
  return new Option(
    "--agents <dir>",
    "a folder of agent.yaml files to run as a team next to the built-in agents (default: ./agents when it holds any; docs/agent-yaml.md)",
  );
}

/** `--no-agents`: the built-in agents only, even where `./agents` holds a team. */
export function noAgentsOption(): Option {
  return new Option("--no-agents", "run the built-in agents only, even where ./agents holds agent.yaml files");
}
