/**
 * A `Tool` from a zod schema, for the tools troupe itself ships (`delegate_to_agent`, the utility tools):
 * the schema gives the JSON Schema providers send and checks the model's arguments.
 */
import { z } from "zod";
import { parseWith } from "../validation.js";
import type { JsonSchema, Tool, ToolContext } from "./tool.js";

/** A tool whose arguments `schema` describes; bad arguments are CONFIG naming the field. */
export function zodTool<S extends z.ZodType>(spec: {
  name: string;
  description: string;
  parameters: S;
  execute(args: z.output<S>, ctx: ToolContext): unknown;
}): Tool<z.output<S>> {
  // Providers take the schema itself; `$schema` is a document's header, which some refuse inside a tool.
  const { $schema: _dialect, ...inputSchema } = z.toJSONSchema(spec.parameters) as JsonSchema;
  return {
    name: spec.name,
    description: spec.description,
    inputSchema,
    parse: (args) => parseWith(spec.parameters, args, { root: "(arguments)", details: { tool: spec.name } }),
    execute: (args, ctx) => spec.execute(args, ctx),
  };
}
