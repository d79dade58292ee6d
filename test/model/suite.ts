/**
 * The shape every model-based suite shares: one test per generated path, then the coverage check.
 */
import type { StatePath } from "@xstate/graph";
import { afterAll, describe, expect, it } from "vitest";
import type { AnyStateMachine, EventObject, Snapshot } from "xstate";
import type { TransitionCoverage } from "./coverage.js";

/**
 * Registers one test per path of each family (shortest, simple, edge), then a test that every transition of
 * `covered` was taken on the real runtime; the reports of `reported` are saved for `npm run model:coverage`.
 */
export function walkPaths<TSnapshot extends Snapshot<unknown>, TEvent extends EventObject>(options: {
  families: Record<"shortest" | "simple" | "edges", Array<StatePath<TSnapshot, TEvent>>>;
  describePath: (path: StatePath<TSnapshot, TEvent>) => string;
  runPath: (path: StatePath<TSnapshot, TEvent>) => Promise<void>;
  coverage: TransitionCoverage;
  name: string;
  covered: AnyStateMachine[];
  reported?: AnyStateMachine[];
}): void {
  const { families, describePath, runPath, coverage } = options;
  for (const [family, paths] of Object.entries(families)) {
    // A family left out (a graph with too many simple paths to enumerate) registers nothing.
    if (paths.length === 0) continue;
    describe(`${family === "edges" ? "edge" : family} paths (${paths.length})`, () => {
      it.each(paths.map((path) => [describePath(path), path] as const))("%s", async (_name, path) => {
        await runPath(path);
      });
    });
  }

  afterAll(() => {
    coverage.save(options.name, options.reported ?? options.covered);
  });

  it(`covers every transition of ${options.covered.map((machine) => machine.id).join(" and ")} on the real runtime`, () => {
    for (const machine of options.covered) {
      const report = coverage.report(machine);
      expect(report.missing, machine.id).toEqual([]);
      expect(report.covered).toBe(report.total);
    }
  });
}
