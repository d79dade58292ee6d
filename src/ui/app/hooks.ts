import { useEffect, useState } from "preact/hooks";
import type { Model } from "./model.js";

/**
 * Draws the component again when the model changes (at most once a frame). Returns the model's version to key
 * memos on. A change between the first render and the subscription (the effect runs after paint) is caught
 * when subscribing, not missed.
 */
export function useModel(model: Model): number {
  const [, setVersion] = useState(model.version);
  useEffect(() => {
    const update = (): void => setVersion(model.version);
    const stop = model.subscribe(update);
    update();
    return stop;
  }, [model]);
  return model.version;
}
