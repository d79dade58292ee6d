/**
 * Snapshots that share their empty parts: the actors behave as the machine's own, and idle ones share.
 */
import { describe, expect, it } from "vitest";
import { createActor, createMachine, fromPromise } from "xstate";
import { compactSnapshots } from "../../src/runtime/compact-snapshots.js";

const machine = createMachine({
  id: "door",
  initial: "closed",
  states: {
    closed: { on: { OPEN: "open" } },
    open: {
      tags: ["visible"],
      invoke: { id: "guard", src: fromPromise(() => new Promise<never>(() => {})) },
      on: { CLOSE: "closed" },
    },
  },
});

describe("compact snapshots", () => {
  it("leave the actor's behaviour as the machine's: states, tags, children, what it can take", () => {
    const actor = createActor(compactSnapshots(machine)).start();
    expect(actor.getSnapshot().hasTag("visible")).toBe(false);
    expect(actor.getSnapshot().can({ type: "OPEN" })).toBe(true);
    actor.send({ type: "OPEN" });
    const open = actor.getSnapshot();
    expect(open.value).toBe("open");
    expect(open.hasTag("visible")).toBe(true);
    expect(Object.keys(open.children)).toEqual(["guard"]);
    actor.send({ type: "CLOSE" });
    expect(actor.getSnapshot().matches("closed")).toBe(true);
    expect(actor.getSnapshot().children).toEqual({});
    actor.stop();
  });

  it("share the empty tag set, history and children records and the state nodes between idle actors", () => {
    const logic = compactSnapshots(machine);
    const [first, second] = [createActor(logic).start(), createActor(logic).start()];
    const [one, two] = [first.getSnapshot(), second.getSnapshot()];
    expect(one.tags).toBe(two.tags);
    expect(one.historyValue).toBe(two.historyValue);
    expect(one.children).toBe(two.children);
    expect(one._nodes).toBe(two._nodes);
    expect(Object.isFrozen(one.children)).toBe(true);
    first.stop();
    second.stop();
  });
});
