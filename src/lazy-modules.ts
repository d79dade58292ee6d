/**
 * Packages loaded at their first use rather than when troupe is imported: the provider SDKs, the ACP SDK, ajv,
 * yaml, elkjs. Each costs tens to hundreds of milliseconds to load, and `import "troupe"`, `troupe --version`
 * and a `troupe mcp` that an MCP client starts would otherwise pay for all of them (docs/benchmarks.md, cold
 * start). test/cold-start.test.ts checks that importing troupe loads none of them.
 */
import { createRequire } from "node:module";
import { BridgeError, toBridgeError } from "./errors.js";

const require = createRequire(import.meta.url);

/** CONFIG: a package troupe needs for `usedFor` could not be loaded (not installed, or broken). */
function loadFailure(packageName: string, usedFor: string, error: unknown): BridgeError {
  return new BridgeError("CONFIG", `${usedFor} needs the ${packageName} package, which could not be loaded: ${toBridgeError(error).message}`, {
    package: packageName,
  });
}

/** An ES module loaded by the first call; `loaded` is the module once a call has loaded it. */
export interface LazyModule<Module> {
  (): Promise<Module>;
  /** The module, when a call has loaded it already; code that runs only after a load (an SDK's error classes) reads it here. */
  readonly loaded: Module | undefined;
}

/**
 * An ES module (`load` is `() => import("<packageName>")`) loaded when first needed; every call after the
 * first gets the same module. A failed load is CONFIG naming the package, and the next call tries again.
 */
export function lazyImport<Module>(packageName: string, usedFor: string, load: () => Promise<Module>): LazyModule<Module> {
  let loading: Promise<Module> | undefined;
  let loaded: Module | undefined;
  const lazy = (): Promise<Module> =>
    (loading ??= load().then(
      (module) => (loaded = module),
      (error: unknown) => {
        loading = undefined;
        throw loadFailure(packageName, usedFor, error);
      },
    ));
  return Object.defineProperty(lazy, "loaded", { get: () => loaded }) as LazyModule<Module>;
}

/**
 * A CommonJS package loaded, synchronously, by the first call: for code that is synchronous in troupe's API
 * (`defineTool` compiles a JSON Schema with ajv, `loadAgentTeam` parses YAML). Node caches the module itself.
 */
export function lazyRequire<Module>(packageName: string, usedFor: string): () => Module {
  let loaded: Module | undefined;
  return () => {
    if (loaded !== undefined) return loaded;
    try {
      loaded = require(packageName) as Module;
    } catch (error) {
      throw loadFailure(packageName, usedFor, error);
    }
    return loaded;
  };
}
