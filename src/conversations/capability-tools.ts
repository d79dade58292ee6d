/**
 * Capability state (SPEC §4): what a multi-step capability (gather the details of a deployment, confirm it,
 * run it) keeps between the turns of a conversation. It lives in the conversation's actor (its context's
 * `capabilityState`, one JSON value per capability, shown by `runtime.conversation(sessionId)`), and is written
 * only while the conversation answers a turn, by the tools of that turn: the built-in `capability_state_get` and
 * `capability_state_set` for the model, `readCapabilityState` / `writeCapabilityState` for tools written in code.
 * A conversation that ends takes its capability state with it; what must last goes to memory.
 */
import { z } from "zod";
import { promptServices } from "../runtime/prompt-scope.js";
import { defineTool } from "../tools/define-tool.js";
import type { Tool, ToolContext } from "../tools/tool.js";

const capabilityName = z.string().min(1).max(64);

/** Every capability's state in the conversation of the tool call's session. CONFIG outside a conversation. */
export function readCapabilityState(ctx: Pick<ToolContext, "session">): Record<string, unknown> {
  return promptServices(ctx.session, "readCapabilityState").capabilities.read(ctx.session);
}

/**
 * Sets one capability's state (a JSON value; `null` removes it) in the conversation of the tool call's session;
 * answers every capability's state after it. CONFIG outside a conversation or past 64 KiB of state.
 */
export function writeCapabilityState(ctx: Pick<ToolContext, "session">, capability: string, state: unknown): Record<string, unknown> {
  return promptServices(ctx.session, "writeCapabilityState").capabilities.write(ctx.session, capability, state ?? null);
}

/** `capability_state_get`: where a multi-step capability stands in this conversation. */
export const capabilityStateGet = defineTool({
  name: "capability_state_get",
  description: "Read the state a multi-step capability kept in this conversation (all capabilities when none is named).",
  parameters: z.strictObject({ capability: capabilityName.optional().describe("The capability, e.g. deploy") }),
  execute: ({ capability }, ctx) => {
    const states = readCapabilityState(ctx);
    return capability === undefined ? { state: states } : { capability, state: states[capability] ?? null };
  },
});

/** `capability_state_set`: records where a multi-step capability stands, for the next turns. */
export const capabilityStateSet = defineTool({
  name: "capability_state_set",
  description:
    "Record the state of a multi-step capability in this conversation (what was gathered, which step is next), for the next turns; null clears it when the flow is done.",
  parameters: z.strictObject({
    capability: capabilityName.describe("The capability, e.g. deploy"),
    // Any JSON value, without the recursive `$ref` schema of `z.json()` that some providers refuse; arguments are parsed JSON already.
    state: z
      .unknown()
      .refine((value) => value !== undefined, { message: "required: any JSON value, or null to clear" })
      .describe("Any JSON value; null clears it"),
  }),
  execute: ({ capability, state }, ctx) => ({ capability, state: writeCapabilityState(ctx, capability, state)[capability] ?? null }),
});

/** The two capability state tools, as an agent's `tools` take them. */
export const capabilityStateTools: readonly Tool[] = [capabilityStateGet, capabilityStateSet];
