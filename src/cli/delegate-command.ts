/**
 * `troupe delegate`'s definition: its arguments and options. What it runs is in `delegate.ts`, loaded only
 * when the command runs.
 */
import type { Command } from "commander";
import type { CliLogLevel } from "./logger.js";
import { agentsOption, configOption, logLevelOption, noAgentsOption, numberBetween, positiveInteger } from "./options.js";

/** The flags of `troupe delegate` as commander parses them. */
export interface DelegateFlags {
  provider?: string;
  model?: string;
  temperature?: number;
  maxTokens?: number;
  /** `--no-stream` sets it to false; undefined means the default, streaming. */
  stream?: boolean;
  config?: string;
  /** `--agents DIR`, or false for `--no-agents`. */
  agents?: string | false;
  logLevel: CliLogLevel;
}

/** Adds `troupe delegate` to the program. */
export function registerDelegateCommand(program: Command): void {
  program
    .command("delegate")
    .summary("send one prompt to an agent and stream its answer")
    .description(
      "Send one prompt to one of the agents troupe serve runs (in this process, no server needed) and print the answer " +
        "as it streams; the usage follows on stderr. Provider keys come from OPENAI_API_KEY (and OPENAI_BASE_URL), " +
        "ANTHROPIC_API_KEY and GEMINI_API_KEY; with none, the assistant answers with the offline mock provider. " +
        "Ctrl-C cancels the prompt and exits 130.",
    )
    .argument("<agentId>", "the agent to ask (troupe agents lists them)")
    .argument("<prompt>", 'the prompt; "-" reads it from stdin')
    .option("--provider <id>", "the provider to answer with (default: the agent's; troupe agents lists them)")
    .option("--model <model>", "the model to use (default: the provider's)")
    .option("--temperature <number>", "sampling temperature, 0 to 2", numberBetween(0, 2))
    .option("--max-tokens <count>", "the most tokens the answer may take", positiveInteger)
    .option("--stream", "print the answer as it comes (the default)")
    .option("--no-stream", "print the answer only once it is complete")
    .addOption(configOption())
    .addOption(agentsOption())
    .addOption(noAgentsOption())
    .addOption(logLevelOption("error"))
    .action(async (agentId: string, prompt: string, flags: DelegateFlags) => {
      const { delegate } = await import("./delegate.js");
      process.exitCode = await delegate({ agentId, prompt, flags }, { stdout: process.stdout, stderr: process.stderr });
    });
}
