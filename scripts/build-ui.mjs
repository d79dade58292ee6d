#!/usr/bin/env node
/**
 * Builds troupe's visualizer (src/ui/app) into dist/ui: one ES module bundle with preact and elkjs inside,
 * its stylesheet, and the page. Run by `npm run build`, and by the tests before they open /ui.
 */
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Builds into `outdir` (default dist/ui); returns the bundle's size in bytes. */
export async function buildUi(outdir = join(root, "dist", "ui")) {
  mkdirSync(outdir, { recursive: true });
  const result = await build({
    entryPoints: { app: join(root, "src", "ui", "app", "main.tsx") },
    outdir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome110", "firefox110", "safari16"],
    minify: true,
    sourcemap: false,
    jsx: "automatic",
    jsxImportSource: "preact",
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  copyFileSync(join(root, "src", "ui", "app", "index.html"), join(outdir, "index.html"));
  return Object.values(result.metafile.outputs).reduce((sum, output) => sum + output.bytes, 0);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const bytes = await buildUi();
  console.log(`dist/ui built (${(bytes / 1024).toFixed(0)} KiB)`);
}
