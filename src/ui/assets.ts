/**
 * The visualizer's files, built by `npm run build` (scripts/build-ui.mjs, esbuild) into `dist/ui/` of the
 * package and read from there the first time they are asked for: `import "troupe"` never loads them.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { BridgeError } from "../errors.js";

/** One built file, as the server answers it. */
export interface UiAsset {
  body: string;
  /** The body gzipped, for clients that take it (the bundle shrinks about four times). */
  gzipped: Buffer;
  contentType: string;
  etag: string;
}

/** The files `/ui` serves, by name under `dist/ui/`. Nothing else can be asked for. */
export const UI_FILES: Record<string, string> = {
  "index.html": "text/html; charset=utf-8",
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
};

/** The folder of troupe's package.json, above this file in `src/ui/` as in `dist/src/ui/`. */
function packageRoot(): string {
  let folder = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(folder, "package.json"))) {
    const parent = dirname(folder);
    if (parent === folder) throw new BridgeError("INTERNAL", "troupe's package.json was not found above its code");
    folder = parent;
  }
  return folder;
}

/** Where `npm run build` writes the visualizer. */
export function uiBuildDir(): string {
  return join(packageRoot(), "dist", "ui");
}

const cache = new Map<string, UiAsset>();

/** A built file; INTERNAL naming the fix when the UI was never built. */
export function uiAsset(name: string): UiAsset {
  const cached = cache.get(name);
  if (cached !== undefined) return cached;
  const contentType = UI_FILES[name];
  if (contentType === undefined) throw new BridgeError("NOT_FOUND", `No UI file ${name}`, { path: `/ui/${name}` });
  const path = join(uiBuildDir(), name);
  let body: string;
  try {
    body = readFileSync(path, "utf8");
  } catch {
    // Said to whoever asks, keyed or not: the fix, not the server's folders.
    throw new BridgeError("INTERNAL", "The UI is not built: run `npm run build` in troupe's folder");
  }
  const asset = { body, gzipped: gzipSync(body), contentType, etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"` };
  cache.set(name, asset);
  return asset;
}
