/**
 * lazyImport and lazyRequire: one load per package, a package that cannot load reported as CONFIG naming it.
 */
import { describe, expect, it } from "vitest";
import { lazyImport, lazyRequire } from "../src/lazy-modules.js";

describe("lazyImport", () => {
  it("loads nothing until the first call, then shares one load between calls", async () => {
    let loads = 0;
    const lazy = lazyImport("a-package", "A test", async () => ({ loadedAs: ++loads }));
    expect(loads).toBe(0);
    expect(lazy.loaded).toBeUndefined();
    const [first, second] = await Promise.all([lazy(), lazy()]);
    expect(await lazy()).toBe(first);
    expect(second).toBe(first);
    expect(lazy.loaded).toBe(first);
    expect(loads).toBe(1);
  });

  it("rejects with CONFIG naming the package and what needed it, and tries again at the next call", async () => {
    let attempts = 0;
    const lazy = lazyImport("troupe-no-such-package", "A test", () => {
      attempts += 1;
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- a string, not a literal: tsc must not resolve a package that does not exist
      return import("troupe-no-such-package" as string);
    });
    const failure = {
      type: "CONFIG",
      message: expect.stringMatching(/^A test needs the troupe-no-such-package package, which could not be loaded: /),
      details: { package: "troupe-no-such-package" },
    };
    await expect(lazy()).rejects.toMatchObject(failure);
    await expect(lazy()).rejects.toMatchObject(failure);
    expect(attempts).toBe(2);
    expect(lazy.loaded).toBeUndefined();
  });
});

describe("lazyRequire", () => {
  it("requires a CommonJS package at the first call and returns the same module after", () => {
    const lazy = lazyRequire<typeof import("yaml")>("yaml", "A test");
    const yaml = lazy();
    expect(yaml.parse("a: 1")).toEqual({ a: 1 });
    expect(lazy()).toBe(yaml);
  });

  it("throws CONFIG naming a package that cannot be loaded", () => {
    const lazy = lazyRequire("troupe-no-such-package", "A test");
    let thrown: unknown;
    try {
      lazy();
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({
      type: "CONFIG",
      message: expect.stringMatching(/^A test needs the troupe-no-such-package package/),
      details: { package: "troupe-no-such-package" },
    });
  });
});
