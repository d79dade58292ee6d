/**
 * An in-process agent that understands the same prompts as the ACP fixture agent (test/fixtures/acp-agent.mjs),
 * so one behaviour suite can run against both executors.
 */
import { BridgeError, type Agent } from "../../src/index.js";

/** The in-process twin of the fixture agent. */
export function createScriptedAgent(id: string): Agent {
  return {
    id,
    capabilities: ["test"],
    prompt: async (ctx) => {
      const [command] = ctx.prompt.trim().split(/\s+/);
      switch (command) {
        case "wait":
          ctx.emit("waiting");
          await new Promise<void>((_, reject) => ctx.signal.addEventListener("abort", () => reject(new BridgeError("CANCELLED", "aborted")), { once: true }));
          return { text: "", stopReason: "cancelled" };
        case "crash":
          throw new BridgeError("TRANSPORT", "the agent's process crashed", { sessionValid: false });
        case "fail":
          throw new BridgeError("UPSTREAM", "the fixture was asked to fail");
        default: {
          const text = `Echo: ${ctx.prompt}`;
          for (const piece of text.match(/\S+\s*/g) ?? []) ctx.emit(piece);
          return { text };
        }
      }
    },
  };
}
