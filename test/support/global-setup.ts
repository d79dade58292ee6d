/** Before any test: the visualizer's bundle is built from the sources under test (what `/ui` serves). */
// @ts-expect-error: a plain ES module script without types
import { buildUi } from "../../scripts/build-ui.mjs";

export async function setup(): Promise<void> {
  await (buildUi as () => Promise<number>)();
}
