/**
 * Module hooks (registered by record-loaded-modules.mjs) that write every URL the ES module loader resolves
 * to the log, synchronously, before the import goes on: once an import has finished, its modules are logged.
 */
import { appendFileSync } from "node:fs";

let log = "";

export function initialize(data) {
  log = data.log;
}

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, context);
  appendFileSync(log, `${resolved.url}\n`);
  return resolved;
}
