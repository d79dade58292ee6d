/**
 * `defineTool`: a tool from its definition, checked once — a bad name, description, schema or `execute` is
 * CONFIG here, at definition, never at the model's first call.
 */
import { z, type ZodType } from "zod";
import { BridgeError, messageOf } from "../errors.js";
import { parseWith } from "../validation.js";
import { compileJsonSchema, type JsonSchemaValidator } from "./json-schema.js";
import type { JsonSchema, Tool, ToolDefinition } from "./tool.js";

/**
 * What every provider accepts as a function name: OpenAI and Anthropic allow letters, digits, `_` and `-`
 * up to 64; Gemini also wants a letter or `_` first.
 */
const TOOL_NAME = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

/** Whether `parameters` is a zod 4 schema rather than a JSON Schema object. */
function isZodSchema(parameters: unknown): parameters is ZodType {
  return typeof parameters === "object" && parameters !== null && "_zod" in parameters;
}

/** Throws CONFIG about one field of the definition. */
type Fail = (field: string, message: string) => never;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The schema providers are sent: without `$schema`, which no API wants, and always an object. */
function sendableSchema(schema: JsonSchema, fail: Fail): JsonSchema {
  const { $schema: _draft, ...body } = schema;
  if (body.type !== "object")
    fail("parameters", `must describe an object (type "object"), got type ${JSON.stringify(body.type)}: models call tools with named arguments`);
  return body;
}

/** The parameters of a zod tool: its input's JSON Schema (what the model writes), and zod itself as the parser. */
function fromZod<Args>(schema: ZodType<Args>, fail: Fail): Pick<Tool<Args>, "inputSchema" | "parse"> {
  let jsonSchema: JsonSchema;
  try {
    jsonSchema = z.toJSONSchema(schema, { io: "input", unrepresentable: "throw" });
  } catch (error) {
    fail("parameters", `the zod schema has no JSON Schema form: ${messageOf(error)}`);
  }
  return { inputSchema: sendableSchema(jsonSchema, fail), parse: (args) => parseWith(schema, args, { root: "(arguments)" }) };
}

/** The parameters of a JSON Schema tool: a copy of the schema, and ajv as the parser. */
function fromJsonSchema<Args>(schema: unknown, fail: Fail): Pick<Tool<Args>, "inputSchema" | "parse"> {
  if (!isPlainObject(schema)) fail("parameters", "must be a zod schema or a JSON Schema object");
  if ("_def" in schema && "safeParse" in schema) fail("parameters", "a zod 3 schema: troupe takes zod 4 schemas or JSON Schema");
  let copy: JsonSchema;
  try {
    // The tool keeps its own copy: a caller changing its object later changes nothing.
    copy = JSON.parse(JSON.stringify(schema)) as JsonSchema;
  } catch (error) {
    fail("parameters", `the JSON Schema is not JSON: ${messageOf(error)}`);
  }
  let validator: JsonSchemaValidator;
  try {
    validator = compileJsonSchema(copy);
  } catch (error) {
    fail("parameters", `not a valid JSON Schema: ${messageOf(error)}`);
  }
  return { inputSchema: sendableSchema(copy, fail), parse: (args) => validator.parse(args) as Args };
}

/**
 * Defines a tool a model can call: `parameters` as a zod 4 schema (sent as its JSON Schema, arguments parsed
 * by zod, `execute` typed by it) or as a JSON Schema object (arguments checked with ajv). What `execute`
 * returns goes back to the model as JSON, a string as it is; what it throws goes back as an error, and the
 * model carries on. Throws CONFIG for a name providers refuse, an empty description, a schema that is not
 * an object schema or not valid, or an `execute` that is not a function.
 *
 * ```ts
 * const weather = defineTool({
 *   name: "get_weather",
 *   description: "The current weather in a city",
 *   parameters: z.object({ city: z.string() }),
 *   execute: async ({ city }, { signal }) => fetchWeather(city, { signal }),
 * });
 * ```
 */
export function defineTool<Args>(definition: ToolDefinition<Args>): Tool<Args> {
  if (!isPlainObject(definition)) throw new BridgeError("CONFIG", "defineTool: expected { name, description, parameters, execute }", { field: "(definition)" });
  const { name, description, parameters, execute } = definition as Partial<ToolDefinition<Args>>;
  const label = typeof name === "string" ? `tool ${JSON.stringify(name)}` : "tool";
  const fail: Fail = (field, message) => {
    throw new BridgeError("CONFIG", `${label}: ${field}: ${message}`, { field, ...(typeof name === "string" ? { tool: name } : {}) });
  };
  if (typeof name !== "string" || !TOOL_NAME.test(name)) {
    fail("name", "must be 1 to 64 letters, digits, '_' or '-', starting with a letter or '_' (what OpenAI, Anthropic and Gemini all accept)");
  }
  if (typeof description !== "string" || description.trim() === "") fail("description", "must be a non-empty string: the model reads it to choose the tool");
  if (typeof execute !== "function") fail("execute", "must be a function (args, ctx) => result");
  const { inputSchema, parse } = isZodSchema(parameters) ? fromZod<Args>(parameters, fail) : fromJsonSchema<Args>(parameters, fail);
  return Object.freeze({
    name: name,
    description: description,
    inputSchema,
    parse,
    execute: (args: Args, ctx: Parameters<Tool<Args>["execute"]>[1]) => execute(args, ctx),
  });
}
