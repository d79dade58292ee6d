/**
 * A preload (`node --import ./test/support/record-loaded-modules.mjs`) that appends to the file named by
 * $TROUPE_LOADED_MODULES_LOG every module the process loads: what the ES module loader resolves (through the
 * hooks below, which write as they resolve) and, at exit, what `require` loaded (CommonJS packages and their
 * own requires, which the ES loader never sees). Used by test/cold-start.test.ts.
 */
import { appendFileSync } from "node:fs";
import { createRequire, register } from "node:module";

const log = process.env.TROUPE_LOADED_MODULES_LOG;
if (log === undefined) throw new Error("record-loaded-modules: set TROUPE_LOADED_MODULES_LOG");
register(new URL("./loaded-modules-hooks.mjs", import.meta.url), { data: { log } });
process.on("exit", () => appendFileSync(log, `${Object.keys(createRequire(import.meta.url).cache).join("\n")}\n`));
