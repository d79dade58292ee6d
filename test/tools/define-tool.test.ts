import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defineTool, ToolRegistry, type JsonSchema } from "../../src/index.js";

const noop = (): string => "ok";

function configErrorOf(define: () => unknown): { type?: string; message: string; details?: Record<string, unknown> } {
  try {
    define();
  } catch (error) {
    return error as { type?: string; message: string; details?: Record<string, unknown> };
  }
  throw new Error("expected defineTool to throw");
}

describe("defineTool with a zod schema", () => {
  const weather = defineTool({
    name: "get_weather",
    description: "The current weather in a city",
    parameters: z.object({ city: z.string().describe("The city"), units: z.enum(["celsius", "fahrenheit"]).default("celsius") }),
    execute: ({ city, units }) => `${city} in ${units}`,
  });

  it("sends the input's JSON Schema, without $schema, defaults optional for the model", () => {
    expect(weather.inputSchema).toEqual({
      type: "object",
      properties: { city: { type: "string", description: "The city" }, units: { type: "string", enum: ["celsius", "fahrenheit"], default: "celsius" } },
      required: ["city"],
    });
  });

  it("parses the model's arguments with zod, filling defaults", () => {
    expect(weather.parse({ city: "Paris" })).toEqual({ city: "Paris", units: "celsius" });
  });

  it("rejects bad arguments with CONFIG naming the field", () => {
    expect(() => weather.parse({ city: 42 })).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "city" }) }));
    expect(() => weather.parse("Paris")).toThrow(expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "(arguments)" }) }));
  });

  it("refuses a schema with no JSON Schema form, and one that is not an object", () => {
    expect(configErrorOf(() => defineTool({ name: "when", description: "d", parameters: z.object({ at: z.date() }), execute: noop }))).toMatchObject({
      type: "CONFIG",
      message: expect.stringMatching(/^tool "when": parameters: the zod schema has no JSON Schema form: .*Date/),
      details: { field: "parameters", tool: "when" },
    });
    expect(configErrorOf(() => defineTool({ name: "echo", description: "d", parameters: z.string(), execute: noop }))).toMatchObject({
      type: "CONFIG",
      message: 'tool "echo": parameters: must describe an object (type "object"), got type "string": models call tools with named arguments',
    });
  });
});

describe("defineTool with a JSON Schema", () => {
  const schema: JsonSchema = {
    type: "object",
    properties: {
      city: { type: "string", format: "not-a-known-format" },
      address: { type: "object", properties: { zip: { type: "string", pattern: "^[0-9]{5}$" } } },
      days: { type: "integer", minimum: 1, default: 1 },
    },
    required: ["city"],
    additionalProperties: false,
  };

  it("sends the schema as given and checks arguments with it, filling defaults", () => {
    const forecast = defineTool<{ city: string; days: number }>({ name: "forecast", description: "A forecast", parameters: schema, execute: noop });

    expect(forecast.inputSchema).toEqual(schema);
    expect(forecast.parse({ city: "Paris" })).toEqual({ city: "Paris", days: 1 });
  });

  it.each([
    [{}, "city", "city: must have required property 'city'"],
    [{ city: "Paris", address: { zip: "75" } }, "address.zip", 'address.zip: must match pattern "^[0-9]{5}$"'],
    [{ city: "Paris", days: 0 }, "days", "days: must be >= 1"],
    [{ city: "Paris", colour: "red" }, "colour", "colour: must NOT have additional properties"],
    [[1, 2], "(arguments)", "(arguments): must be object"],
  ])("rejects %j with CONFIG naming %s", (args, field, message) => {
    const forecast = defineTool({ name: "forecast", description: "A forecast", parameters: schema, execute: noop });

    expect(() => forecast.parse(args)).toThrow(expect.objectContaining({ type: "CONFIG", message, details: expect.objectContaining({ field }) }));
  });

  it("keeps its own copy: changing the schema object later changes nothing", () => {
    const mutable: JsonSchema = { type: "object", properties: { n: { type: "number" } } };
    const tool = defineTool({ name: "count", description: "Counts", parameters: mutable, execute: noop });

    (mutable.properties as Record<string, unknown>).n = { type: "string" };

    expect(tool.inputSchema).toEqual({ type: "object", properties: { n: { type: "number" } } });
    expect(() => tool.parse({ n: "3" })).toThrow(expect.objectContaining({ type: "CONFIG" }));
  });

  it("takes draft-07 ($ref into definitions) and 2020-12 (prefixItems) schemas, and leaves $schema out of what it sends", () => {
    const draft7 = defineTool({
      name: "move",
      description: "Moves",
      parameters: {
        $schema: "http://json-schema.org/draft-07/schema#",
        type: "object",
        definitions: { point: { type: "object", properties: { x: { type: "number" } }, required: ["x"] } },
        properties: { to: { $ref: "#/definitions/point" } },
      },
      execute: noop,
    });
    const draft2020 = defineTool({
      name: "pair",
      description: "Pairs",
      parameters: {
        $schema: "https://json-schema.org/draft/2020-12/schema",
        type: "object",
        properties: { pair: { type: "array", prefixItems: [{ type: "string" }, { type: "number" }] } },
      },
      execute: noop,
    });

    expect(draft7.inputSchema).not.toHaveProperty("$schema");
    expect(() => draft7.parse({ to: { x: "far" } })).toThrow(expect.objectContaining({ message: "to.x: must be number" }));
    expect(() => draft2020.parse({ pair: [1, 2] })).toThrow(expect.objectContaining({ message: "pair.0: must be string" }));
    expect(draft2020.parse({ pair: ["a", 2] })).toEqual({ pair: ["a", 2] });
  });

  it("lets two tools share a schema $id", () => {
    const parameters = { $id: "https://example.com/args", type: "object", properties: {} };
    defineTool({ name: "one", description: "One", parameters, execute: noop });

    expect(() => defineTool({ name: "two", description: "Two", parameters, execute: noop })).not.toThrow();
  });
});

describe("defineTool refuses a bad definition with CONFIG", () => {
  const valid = { name: "ok_tool", description: "A tool", parameters: { type: "object", properties: {} }, execute: noop };

  it.each<[string, Record<string, unknown>, string, RegExp]>([
    [
      "a name with a space",
      { name: "get weather" },
      "name",
      /^tool "get weather": name: must be 1 to 64 letters, digits, '_' or '-', starting with a letter or '_'/,
    ],
    ["a name starting with a digit", { name: "1tool" }, "name", /name: must be/],
    ["a name of 65 characters", { name: "a".repeat(65) }, "name", /name: must be/],
    ["an empty description", { description: "  " }, "description", /description: must be a non-empty string/],
    ["an execute that is not a function", { execute: "run" }, "execute", /execute: must be a function/],
    ["no parameters", { parameters: undefined }, "parameters", /parameters: must be a zod schema or a JSON Schema object/],
    ["a JSON Schema of a string", { parameters: { type: "string" } }, "parameters", /parameters: must describe an object/],
    [
      "an invalid JSON Schema",
      { parameters: { type: "object", properties: { n: { type: "nope" } } } },
      "parameters",
      /parameters: not a valid JSON Schema: schema is invalid/,
    ],
  ])("%s", (_case, override, field, message) => {
    expect(configErrorOf(() => defineTool({ ...valid, ...override }))).toMatchObject({
      type: "CONFIG",
      message: expect.stringMatching(message),
      details: expect.objectContaining({ field }),
    });
  });

  it("accepts names of 64 characters with digits, '_' and '-'", () => {
    expect(defineTool({ ...valid, name: `_a-1${"b".repeat(60)}` }).name).toHaveLength(64);
  });
});

describe("ToolRegistry", () => {
  const first = defineTool({ name: "first", description: "First", parameters: { type: "object" }, execute: noop });
  const second = defineTool({ name: "second", description: "Second", parameters: { type: "object" }, execute: noop });

  it("registers tools by name, in order", () => {
    const registry = new ToolRegistry([first]).register(second);

    expect(registry.names()).toEqual(["first", "second"]);
    expect(registry.get("second")).toBe(second);
    expect(registry.has("first")).toBe(true);
    expect(registry.has("third")).toBe(false);
    expect(registry.get("third")).toBeUndefined();
  });

  it("refuses a second tool of one name with CONFIG", () => {
    const registry = new ToolRegistry([first]);
    const again = defineTool({ name: "first", description: "Another first", parameters: { type: "object" }, execute: noop });

    expect(() => registry.register(again)).toThrow(
      expect.objectContaining({ type: "CONFIG", message: "tools: duplicate tool name first", details: expect.objectContaining({ tool: "first" }) }),
    );
  });

  it("refuses a definition that defineTool did not make", () => {
    expect(() => new ToolRegistry([{ name: "raw", description: "Raw", parameters: {}, execute: noop } as never])).toThrow(
      expect.objectContaining({ type: "CONFIG", message: expect.stringContaining("make it with defineTool") }),
    );
  });
});
