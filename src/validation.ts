/**
 * Validation at the edge: zod schemas, and their failures as CONFIG errors naming every failing path. The one
 * way troupe turns a zod failure into a `BridgeError`.
 */
import type { z } from "zod";
import { configErrorFromZod } from "./errors.js";

/** Where a failure is reported: `root` names the value itself, `prefix` goes before every path, `details` join the error's. */
export interface ParseOptions {
  root?: string;
  prefix?: string[];
  details?: Record<string, unknown>;
}

/** Parses `value` with `schema`; a failure is CONFIG (HTTP 400) naming the failing paths (`details.issues` lists them all). */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where: string | ParseOptions = {}): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const options = typeof where === "string" ? { root: where } : where;
  throw configErrorFromZod(parsed.error, { root: "(body)", ...options });
}
