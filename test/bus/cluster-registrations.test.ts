/**
 * `ClusterRegistrations.readEverything` on its own (a node's start, NATS back): one read of every registration
 * at a time, whose outcome is every asker's (the start fails when the store did not answer, even when the read
 * was begun by a reconnection that came first).
 */
import { describe, expect, it } from "vitest";
import { ClusterRegistrations } from "../../src/bus/cluster-registrations.js";
import type { StoredRegistration } from "../../src/bus/agent-registry.js";
import type { ClusterNode } from "../../src/cluster/node.js";

/** Registrations over a stand-in node whose NATS state the test changes, and whose store reads it answers. */
function registrations(): {
  reconnected: () => void;
  reads: Array<{ resolve: (stored: StoredRegistration[]) => void; reject: (error: Error) => void }>;
  applied: string[];
  subject: ClusterRegistrations;
} {
  let onState: (state: string) => void = () => undefined;
  const reads: Array<{ resolve: (stored: StoredRegistration[]) => void; reject: (error: Error) => void }> = [];
  const applied: string[] = [];
  const node = {
    nodeId: "node-a",
    connection: {
      nats: { subscribe: () => ({ unsubscribe: () => undefined }) },
      onStateChange: (listener: (state: string) => void) => {
        onState = listener;
        return () => undefined;
      },
    },
  } as unknown as ClusterNode;
  const subject = new ClusterRegistrations({
    node,
    clock: { now: () => 0 },
    maxAgeMs: 10_000,
    holds: () => false,
    read: () => Promise.resolve(undefined),
    readAll: () => new Promise((resolve, reject) => reads.push({ resolve, reject })),
    held: () => [],
    apply: (agentId) => applied.push(agentId),
  });
  return { reconnected: () => onState("connected"), reads, applied, subject };
}

const registration = (agentId: string): StoredRegistration => ({ descriptor: { agent_id: agentId }, registeredAt: 0 }) as unknown as StoredRegistration;

describe("ClusterRegistrations.readEverything", () => {
  it("joins a read begun by a reconnection, and fails with it", async () => {
    const { reconnected, reads, subject } = registrations();
    reconnected();
    const start = subject.readEverything();
    expect(reads).toHaveLength(1);
    reads[0]!.reject(new Error("store down"));
    await expect(start).rejects.toThrow("store down");
  });

  it("resolves once the read it joined has applied every registration, and reads again when asked after it", async () => {
    const { reconnected, reads, applied, subject } = registrations();
    reconnected();
    const start = subject.readEverything();
    reads[0]!.resolve([registration("test://worker")]);
    await start;
    expect(applied).toEqual(["test://worker"]);
    expect(subject.isCurrent("test://worker")).toBe(true);
    void subject.readEverything();
    expect(reads).toHaveLength(2);
    reads[1]!.resolve([]);
    subject.stop();
  });
});
