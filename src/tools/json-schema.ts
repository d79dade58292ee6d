/**
 * Tool parameters given as JSON Schema: compiled once with `ajv` when the tool is defined, and the model's
 * arguments checked against them at each call, failures named by field as zod's are. ajv loads with the first
 * JSON Schema tool.
 */
import type { Ajv, ErrorObject, ValidateFunction } from "ajv";
import type { Ajv2019 } from "ajv/dist/2019.js";
import type { Ajv2020 } from "ajv/dist/2020.js";
import { configErrorFromIssues } from "../errors.js";
import { lazyRequire } from "../lazy-modules.js";
import type { JsonSchema } from "./tool.js";

/**
 * `strict: false`: tool schemas carry keywords ajv does not know (`examples`, vendor extensions) that models
 * read and validation can ignore. Formats (`email`, `date-time`) are not checked: ajv needs a plugin for them,
 * and a model is better told by the tool. `useDefaults` fills `default` values, as a zod schema would.
 * `addUsedSchema: false`: two tools whose schemas share an `$id` do not collide in the shared validator.
 */
const OPTIONS = { allErrors: true, strict: false, validateFormats: false, useDefaults: true, addUsedSchema: false } as const;

const USED_FOR = "A tool with a JSON Schema";
const draft7Module = lazyRequire<typeof import("ajv")>("ajv", USED_FOR);
const draft2019Module = lazyRequire<typeof import("ajv/dist/2019.js")>("ajv/dist/2019.js", USED_FOR);
const draft2020Module = lazyRequire<typeof import("ajv/dist/2020.js")>("ajv/dist/2020.js", USED_FOR);

/** One validator per draft, made when first needed. */
const validators = {
  draft7: undefined as Ajv | undefined,
  draft2019: undefined as Ajv2019 | undefined,
  draft2020: undefined as Ajv2020 | undefined,
};

/**
 * The validator of a schema's draft: 2020-12 and 2019-09 when its `$schema` names them, draft-07 otherwise
 * (hand-written tool schemas, OpenAI's and Anthropic's examples, are draft-07 and valid in it).
 */
function validatorFor(schema: JsonSchema): Ajv | Ajv2019 | Ajv2020 {
  const draft = typeof schema.$schema === "string" ? schema.$schema : "";
  if (draft.includes("2020-12")) return (validators.draft2020 ??= new (draft2020Module().Ajv2020)(OPTIONS));
  if (draft.includes("2019-09")) return (validators.draft2019 ??= new (draft2019Module().Ajv2019)(OPTIONS));
  return (validators.draft7 ??= new (draft7Module().Ajv)(OPTIONS));
}

/** The field an ajv error is about, as a dotted path (`address.city`, `items.0`); a missing property names itself. */
function fieldOf(error: ErrorObject): string {
  const path = error.instancePath
    .split("/")
    .slice(1)
    .map((segment) => segment.replace(/~1/g, "/").replace(/~0/g, "~"));
  if (error.keyword === "required" && typeof error.params.missingProperty === "string") path.push(error.params.missingProperty);
  if (error.keyword === "additionalProperties" && typeof error.params.additionalProperty === "string") path.push(error.params.additionalProperty);
  return path.join(".") || "(arguments)";
}

/** Checks values against one JSON Schema. */
export interface JsonSchemaValidator {
  /** Returns the value (with `default`s filled in) or throws CONFIG naming the first failing field, every failure in `details.issues`. */
  parse(value: unknown): unknown;
}

/**
 * Compiles `schema` (without its `$schema` key, which picked the draft). An invalid schema throws ajv's error,
 * which `defineTool` reports as CONFIG.
 */
export function compileJsonSchema(schema: JsonSchema): JsonSchemaValidator {
  const { $schema: _draft, ...body } = schema;
  const validate: ValidateFunction = validatorFor(schema).compile(body);
  return {
    parse(value) {
      if (validate(value)) return value;
      const issues = (validate.errors ?? []).map((error) => ({ field: fieldOf(error), message: error.message ?? "invalid" }));
      throw configErrorFromIssues(issues);
    },
  };
}
