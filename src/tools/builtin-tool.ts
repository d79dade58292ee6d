/**
 * The built-in tools troupe itself defines (`memory_*`, `capability_state_*`) are `Tool`s written with a zod
 * schema: its JSON Schema is what providers send, and a failed parse is CONFIG naming the field, as
 * `src/tools/tool.ts` asks of every tool.
 */
import { z } from "zod";
import { parseWith } from "../validation.js";
import type { JsonSchema, Tool, ToolContext } from "./tool.js";

/** A `Tool` from a zod object schema and an `execute` over its parsed arguments. */
export function builtinTool<S extends z.ZodType>(definition: {
  name: string;
  description: string;
  parameters: S;
  execute(args: z.output<S>, ctx: ToolContext): unknown;
}): Tool<z.output<S>> {
  const { name, description, parameters, execute } = definition;
  return {
    name,
    description,
    inputSchema: z.toJSONSchema(parameters, { io: "input" }) as JsonSchema,
    parse: (args) => parseWith(parameters, args ?? {}, { root: "(arguments)", details: { tool: name } }),
    execute,
  };
}
