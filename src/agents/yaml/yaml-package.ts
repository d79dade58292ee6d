/**
 * The `yaml` package, loaded with the first agent file read rather than when troupe is imported: most programs
 * that import troupe read no agent.yaml. `yaml` is CommonJS under Node, so it loads synchronously and
 * `loadAgentTeam` stays synchronous.
 */
import { lazyRequire } from "../../lazy-modules.js";

/** The `yaml` package; the first call loads it. */
export const yamlPackage = lazyRequire<typeof import("yaml")>("yaml", "Reading an agent.yaml");
