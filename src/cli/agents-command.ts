/**
 * `troupe agents`'s definition. What it runs is in `agents.ts`, loaded only when the command runs.
 */
import type { Command } from "commander";
import { asUsage } from "./exit-codes.js";
import { agentsOption, configOption, noAgentsOption } from "./options.js";

/** Adds `troupe agents` to the program. */
export function registerAgentsCommand(program: Command): void {
  program
    .command("agents")
    .summary("list the agents troupe serve would run")
    .description(
      "List the agents troupe serve would run with these options, where each runs, and the providers it answers with (* the default); " +
        "then how each agent.yaml agent is routed (default, inline or delegate) and why. Checks every agent.yaml; starts nothing.",
    )
    .addOption(configOption())
    .addOption(agentsOption())
    .addOption(noAgentsOption())
    .option("--json", "print the list as JSON")
    .action(async (flags: { config?: string; agents?: string | false; json?: boolean }) => {
      const { formatAgents, listAgents } = await import("./agents.js");
      const listing = asUsage(() => listAgents(flags.config, flags.agents));
      process.stdout.write(flags.json === true ? `${JSON.stringify(listing, null, 2)}\n` : formatAgents(listing));
    });
}
