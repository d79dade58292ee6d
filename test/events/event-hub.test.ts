/**
 * The one event hub: events are built only for listeners, and every listener sees them in `seq` order, even
 * when a listener causes another event while the first is being delivered.
 */
import { describe, expect, it } from "vitest";
import { EventHub, type RuntimeEvent } from "../../src/events/event-hub.js";
import { systemClock } from "../../src/index.js";

describe("EventHub", () => {
  it("delivers an event emitted by a listener after the current one has reached every listener", () => {
    const hub = new EventHub(systemClock);
    const seenByAll: number[] = [];
    const seenByTyped: number[] = [];
    hub.on("agent.busy", (event) => {
      seenByTyped.push(event.seq);
      // A listener whose work causes another event (as a bus listener closing a session does).
      hub.emit("agent.ready", event.actorId, { agentId: event.agentId, kind: event.kind });
    });
    hub.on("*", (event: RuntimeEvent) => seenByAll.push(event.seq));
    hub.emit("agent.busy", "agent:a", { agentId: "a", kind: "in-process" });

    expect(seenByTyped).toEqual([1]);
    expect(seenByAll).toEqual([1, 2]);
    expect(hub.lastSeq).toBe(2);
  });

  it("builds no event, and takes no seq, for a type nobody listens to", () => {
    const hub = new EventHub(systemClock);
    hub.emit("agent.busy", "agent:a", { agentId: "a", kind: "in-process" });
    expect(hub.lastSeq).toBe(0);
    const unsubscribe = hub.on("agent.busy", () => {});
    hub.emit("agent.busy", "agent:a", { agentId: "a", kind: "in-process" });
    unsubscribe();
    hub.emit("agent.busy", "agent:a", { agentId: "a", kind: "in-process" });
    expect(hub.lastSeq).toBe(1);
  });

  it("keeps delivering after a listener threw during a nested delivery", async () => {
    const hub = new EventHub(systemClock);
    const seen: string[] = [];
    hub.on("agent.busy", () => {
      hub.emit("agent.ready", "agent:a", { agentId: "a", kind: "in-process" });
      throw new Error("broken");
    });
    hub.on("*", (event: RuntimeEvent) => seen.push(event.type));
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning.message);
    };
    process.on("warning", onWarning);
    try {
      hub.emit("agent.busy", "agent:a", { agentId: "a", kind: "in-process" });
      hub.emit("agent.offline", "agent:a", { agentId: "a", kind: "in-process", unavailable: false });
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off("warning", onWarning);
    }
    expect(seen).toEqual(["agent.busy", "agent.ready", "agent.offline"]);
    expect(warnings).toEqual(["troupe: a agent.busy listener threw: broken"]);
  });
});
