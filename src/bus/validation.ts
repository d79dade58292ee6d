/**
 * Validation at the bus's edge: zod schemas, and their failures as CONFIG errors naming every failing path.
 */
import type { z } from "zod";
import { configErrorFromZod, type BridgeError } from "../errors.js";

/** A zod error as CONFIG: the message names the first failing path; `details.issues` lists them all. */
export function configErrorOf(error: z.ZodError, root = "(body)"): BridgeError {
  return configErrorFromZod(error, { root });
}

/** Parses `value` with `schema`; a failure is CONFIG (HTTP 400) with the failing paths. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, root?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw configErrorOf(parsed.error, root);
  return parsed.data;
}
