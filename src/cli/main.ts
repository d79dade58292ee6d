#!/usr/bin/env node
/**
 * `troupe`: the command line. Each command's definition (`<name>-command.ts`) adds it to the program with its
 * `register…Command(program)` and loads what the command runs only when it runs, so that `troupe --version`
 * and `--help` stay quick. Exit codes: 0 done, 1 failed, 2 bad usage, 130 interrupted.
 */
import { Command, CommanderError } from "commander";
import { toBridgeError } from "../errors.js";
import { VERSION } from "../version.js";
import { registerAgentsCommand } from "./agents-command.js";
import { registerDelegateCommand } from "./delegate-command.js";
import { CliFailure, EXIT_FAILED, EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
import { registerGraphCommand } from "./graph.js";
import { registerServeCommand } from "./serve-command.js";

/** The program with every command; commander's own exits become thrown `CommanderError`s. */
function createProgram(): Command {
  const program = new Command("troupe")
    .description("An actor-model runtime for AI agents, on XState v5: serve the bus and the bridge tools, delegate a prompt, list agents, draw state machines.")
    .version(VERSION, "-v, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .helpCommand("help [command]", "show help for a command")
    .exitOverride()
    .showHelpAfterError("(add --help for usage)")
    .addHelpText("after", "\nExit codes: 0 done, 1 failed, 2 bad usage, 130 interrupted (Ctrl-C).\nDocs: docs/cli.md");
  registerServeCommand(program);
  registerDelegateCommand(program);
  registerAgentsCommand(program);
  registerGraphCommand(program);
  // `troupe mcp` parses its own options (src/cli/mcp.ts): stdout carries nothing but MCP.
  program
    .command("mcp")
    .description("serve the bridge tools to an MCP client over stdio (troupe mcp --help)")
    .helpOption(false)
    .allowUnknownOption()
    .argument("[options...]")
    .action(async (options: string[]) => {
      const { runMcp } = await import("./mcp.js");
      process.exitCode = await runMcp(options);
    });
  return program;
}

/** Runs `troupe` with these arguments; resolves with the exit code (an action may have set `process.exitCode`). */
async function main(argv: string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : EXIT_OK;
  } catch (error) {
    // Commander has printed its message (and help) already: only its exit code is left to choose.
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    const command = program.args[0] === undefined ? "troupe" : `troupe ${program.args[0]}`;
    if (error instanceof CliFailure) {
      process.stderr.write(`${command}: ${error.message}\n`);
      return error.exitCode;
    }
    process.stderr.write(`${command}: ${toBridgeError(error).message}\n`);
    return EXIT_FAILED;
  }
}

process.exitCode = await main(process.argv.slice(2));
