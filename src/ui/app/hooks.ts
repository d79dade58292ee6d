import { useEffect, useState } from "preact/hooks";
import type { Model } from "./model.js";

/** Draws the component again when the model changes (at most once a frame). */
export function useModel(model: Model): number {
  const [version, setVersion] = useState(model.version);
  useEffect(() => model.subscribe(() => setVersion(model.version)), [model]);
  return version;
}
