/**
 * Model-based tests of the supervisor (and the shards under it): @xstate/graph walks the bare supervisor
 * machine with maxSessions 2 and shards of 2; every path is driven through a real runtime's bridge, and the
 * session count, the shards and each call's answer are checked after every step.
 */
import type { StatePath } from "@xstate/graph";
import { describe, expect, it } from "vitest";
import { liveShards, sessionMachine, sessionShardMachine, supervisorMachine, type SupervisorEvent } from "../../machines/index.js";
import { settle, startTestRuntime } from "../support/runtime.js";
import { TransitionCoverage } from "./coverage.js";
import { generatePaths } from "./paths.js";
import { walkPaths } from "./suite.js";

const MAX_SESSIONS = 2;
const SHARD_SIZE = 2;

type SupervisorSnapshot = ReturnType<typeof supervisorMachine.transition>;
type SupervisorPath = StatePath<SupervisorSnapshot, SupervisorEvent>;

const session = { sessionId: "s", agentId: "controlled", metadata: {} };
function eventsFor(snapshot: SupervisorSnapshot): SupervisorEvent[] {
  if (snapshot.value === "stopped") return [];
  const releases: SupervisorEvent[] = liveShards(snapshot.context)
    .filter((shard) => shard.live > 0)
    .map((shard) => ({ type: "SESSION.RELEASED", shardId: shard.shardId, session, reason: "closed" }));
  if (snapshot.value === "stopping") return [{ type: "SHUTDOWN.NEXT" }, ...releases];
  return [
    {
      type: "SESSION.CREATE",
      session: { ...session, createdAt: 0, ttlMs: 0, idleMs: 0, maxQueuedPrompts: 1, historyWindow: 30 },
    },
    ...releases,
    { type: "SHUTDOWN" },
  ];
}

function byShardId(left: [string, number], right: [string, number]): number {
  return left[0] < right[0] ? -1 : left[0] > right[0] ? 1 : 0;
}

function serializeState(snapshot: SupervisorSnapshot): string {
  const { live, current, sealed } = snapshot.context;
  return JSON.stringify([snapshot.value, live, current, sealed]);
}

const { shortest, simple, edges } = generatePaths(supervisorMachine, {
  input: { maxSessions: MAX_SESSIONS, shardSize: SHARD_SIZE, maxWorkflows: 0 },
  events: eventsFor,
  serializeState,
});

function describePath(path: SupervisorPath): string {
  return (
    path.steps
      .slice(1)
      .map(({ event }) => (event.type === "SESSION.RELEASED" ? `RELEASE(${event.shardId})` : event.type.replace(/^SESSION\./, "")))
      .join(" → ") || "(initial)"
  );
}

const coverage = new TransitionCoverage();

async function runPath(path: SupervisorPath): Promise<void> {
  const { runtime, controlled } = await startTestRuntime({ maxSessions: MAX_SESSIONS, shardSize: SHARD_SIZE, inspect: coverage.inspect });
  const shardOf = new Map<string, string>();
  const realShards = new Set<string>();
  runtime.on("actor.spawned", (event) => {
    if (event.machine === "sessionShard") realShards.add(event.actorId);
    if (event.machine === "session" && event.parentId) shardOf.set(event.actorId, event.parentId);
  });
  runtime.on("actor.stopped", (event) => {
    realShards.delete(event.actorId);
    shardOf.delete(event.actorId);
  });
  let aliveAtShutdown: string[] | undefined;

  for (let index = 1; index < path.steps.length; index += 1) {
    const before = path.steps[index - 1]!.state;
    const { event, state: after } = path.steps[index]!;
    const label = `step ${index}: ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;

    if (before.value === "stopping") continue; // the real runtime released everything within SHUTDOWN
    switch (event.type) {
      case "SESSION.CREATE": {
        const created = runtime.bridge.sessionsCreate({}).then(
          (result) => result.sessionId,
          (error: { type: string }) => error.type,
        );
        const outcome = await created;
        if (after.context.live > before.context.live) expect(shardOf.has(outcome), label).toBe(true);
        else expect(outcome, label).toBe("CAPACITY");
        break;
      }
      case "SESSION.RELEASED": {
        const sessionId = [...shardOf].find(([, shardId]) => shardId === event.shardId)?.[0];
        expect(sessionId, `${label}: a live session in ${event.shardId}`).toBeDefined();
        await runtime.bridge.sessionsClose({ sessionId: sessionId! });
        break;
      }
      case "SHUTDOWN":
        aliveAtShutdown = [...shardOf.keys()];
        await runtime.stop();
        break;
    }
    await settle();

    if (aliveAtShutdown !== undefined) continue;
    expect((await runtime.bridge.health()).sessions.total, label).toBe(after.context.live);
    // In the order of shard ids: which shard was opened first is not the supervisor's concern.
    const realLoads = [...realShards]
      .map((shardId): [string, number] => [shardId, [...shardOf.values()].filter((owner) => owner === shardId).length])
      .sort(byShardId);
    expect(realLoads, `${label}: sessions per shard`).toEqual(
      liveShards(after.context)
        .map((shard): [string, number] => [shard.shardId, shard.live])
        .sort(byShardId),
    );
  }

  if (aliveAtShutdown !== undefined) {
    expect(path.state.value === "stopped" || path.state.value === "stopping", "the path shut down").toBe(true);
    const shutdowns = controlled.closes.filter((close) => close.reason === "shutdown").map((close) => close.sessionId);
    expect(shutdowns.sort()).toEqual(aliveAtShutdown.sort());
    expect(realShards.size).toBe(0);
    await expect(runtime.bridge.health()).rejects.toMatchObject({ type: "INTERNAL" });
  } else {
    await runtime.stop();
  }
}

describe("supervisor machine, model-based", () => {
  it("generates paths over every state", () => {
    expect(new Set(shortest.map((path) => path.state.value))).toEqual(new Set(["running", "stopping", "stopped"]));
  });

  walkPaths({
    families: { shortest, simple, edges },
    describePath,
    runPath,
    coverage,
    name: "supervisor",
    covered: [supervisorMachine, sessionShardMachine],
    reported: [supervisorMachine, sessionShardMachine, sessionMachine],
  });
});
