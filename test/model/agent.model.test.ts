/**
 * Model-based tests of the agent machine: @xstate/graph walks the bare machine once per kind of agent, and
 * every path is driven on a real runtime behind a real bus, with `agents_discover` and `GET /agents` checked
 * after every step:
 * - in-process: a controlled agent; `WORK.STARTED` is a prompt on a new session, `WORK.FINISHED` its reply;
 * - worker: the fixture ACP agent, held in `initialize` until SIGUSR1 (`AGENT.ONLINE`); its crashes are real
 *   SIGKILLs (`AGENT.OFFLINE`, or `AGENT.UNAVAILABLE` at the path's last crash, as `maxCrashes` is set per
 *   path); `WORK.STARTED` is a `wait` prompt and `WORK.FINISHED` its cancel, or, after a crash, the failure of
 *   the session that ran it, which happens with the crash;
 * - remote: an agent registered over HTTP whose WebSocket connects (`AGENT.ONLINE`) and closes (`AGENT.OFFLINE`).
 * The graph keys states by value and work count, so a restarted worker is its initial state again; a few
 * scripted paths also walk through restarts and a reconnect.
 */
import type { StatePath } from "@xstate/graph";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SimulatedClock } from "xstate";
import { agentMachine, type AgentEvent, type AgentInput, type AgentKind, type AgentState } from "../../machines/index.js";
import { createRuntime, type CommunicationBus, type Runtime, type RuntimeEvent } from "../../src/index.js";
import { call, rawConnect, register, startBus, until, type RawAgent } from "../bus/support.js";
import { createControlledAgent, type ControlledAgent } from "../support/controlled-agent.js";
import { nextEvent } from "../support/runtime.js";
import { fixtureWorker, isAlive, nextPid } from "../support/workers.js";
import { TransitionCoverage } from "./coverage.js";
import { generatePaths, pathFromEvents } from "./paths.js";
import { walkPaths } from "./suite.js";

const AGENT_ID = "a";
const REMOTE_ID = "codex://remote";
/** Every restart of the worker comes this long after its crash. */
const BACKOFF_MS = 100;
/** Prompts running at once that the paths of each kind reach. */
const MAX_WORK: Record<AgentKind, number> = { "in-process": 2, worker: 1, remote: 0, a2a: 0 };

type AgentSnapshot = ReturnType<typeof agentMachine.transition>;
type AgentPath = StatePath<AgentSnapshot, AgentEvent>;

/** What `agents_discover` reports for each state: its enum has no `offline`. */
const DISCOVERED: Record<AgentState, string> = { offline: "unavailable", ready: "ready", busy: "busy", unavailable: "unavailable" };

function inputOf(kind: AgentKind): AgentInput {
  return { agentId: kind === "remote" ? REMOTE_ID : AGENT_ID, kind };
}

const ONLINE: AgentEvent = { type: "AGENT.ONLINE" };
const OFFLINE: AgentEvent = { type: "AGENT.OFFLINE" };
const UNAVAILABLE: AgentEvent = { type: "AGENT.UNAVAILABLE", reason: "it crashed too often" };
const WORK_STARTED: AgentEvent = { type: "WORK.STARTED" };
const WORK_FINISHED: AgentEvent = { type: "WORK.FINISHED" };

/** The events each kind of agent can really be sent in a state. */
function eventsFor(kind: AgentKind) {
  return (snapshot: AgentSnapshot): AgentEvent[] => {
    const { workInFlight } = snapshot.context;
    const started = workInFlight < MAX_WORK[kind] ? [WORK_STARTED] : [];
    const finished = workInFlight > 0 ? [WORK_FINISHED] : [];
    const state = snapshot.value;
    if (kind === "in-process") return [...started, ...finished];
    if (kind === "remote") return state === "offline" ? [ONLINE] : [OFFLINE];
    switch (state) {
      case "offline":
        // Offline with work in flight happens only at a crash, which fails the session that ran it at once.
        return workInFlight > 0 ? finished : [ONLINE, UNAVAILABLE];
      case "ready":
        return [...started, OFFLINE, UNAVAILABLE];
      case "busy":
        return [...finished, OFFLINE, UNAVAILABLE];
      case "unavailable":
        return finished;
    }
  };
}

/** The bare machine spawns no worker while the graph is walked: the paths drive the real one. */
const graphMachine = agentMachine.provide({ actions: { superviseWorker: () => {} } });

function traversalOf(kind: AgentKind) {
  return {
    input: inputOf(kind),
    events: eventsFor(kind),
    serializeState: (snapshot: AgentSnapshot) => JSON.stringify([snapshot.value, snapshot.context.workInFlight]),
  };
}

function pathsOf(kind: AgentKind) {
  return generatePaths(graphMachine, traversalOf(kind));
}

const byKind = { "in-process": pathsOf("in-process"), worker: pathsOf("worker"), remote: pathsOf("remote") };
const families = {
  shortest: Object.values(byKind).flatMap((paths) => paths.shortest),
  simple: Object.values(byKind).flatMap((paths) => paths.simple),
  edges: Object.values(byKind).flatMap((paths) => paths.edges),
};

/** Paths through states the graph merges: a worker's restarts (twice, losing work once) and a reconnect. */
const scripted: Array<[AgentKind, AgentEvent[]]> = [
  ["worker", [ONLINE, OFFLINE, ONLINE, WORK_STARTED, OFFLINE, WORK_FINISHED, ONLINE, WORK_STARTED, WORK_FINISHED, UNAVAILABLE]],
  ["worker", [ONLINE, OFFLINE, UNAVAILABLE]],
  ["remote", [ONLINE, OFFLINE, ONLINE]],
];
const scriptedPaths = scripted.map(([kind, events]) => pathFromEvents(graphMachine, events, inputOf(kind)));

function describePath(path: AgentPath): string {
  const kind = path.steps[0]!.state.context.kind;
  const steps = path.steps
    .slice(1)
    .map(({ event }) => event.type.replace(/^AGENT\./, ""))
    .join(" → ");
  return `${kind}: ${steps || "(initial)"}`;
}

const coverage = new TransitionCoverage();
const pids = new Set<number>();

const agentEnters = (state: AgentState) => (event: RuntimeEvent) =>
  event.type === "actor.transition" && event.actorId === `agent:${AGENT_ID}` && event.to === state;

/** Drives one kind of agent on the real runtime and bus. */
interface Driver {
  /** Brings about the model's event; resolves once the real runtime took it. */
  step(event: AgentEvent, before: AgentSnapshot): Promise<void>;
  close(): Promise<void>;
}

/** A runtime on a simulated clock behind a bus that lists its agents; both stopped by `close`. */
async function startSystem(options: Parameters<typeof createRuntime>[0]): Promise<{ runtime: Runtime; bus: CommunicationBus; clock: SimulatedClock }> {
  const clock = new SimulatedClock();
  clock.set(Date.now());
  const runtime = createRuntime({ clock, inspect: coverage.inspect, ...options });
  await runtime.start();
  const bus = await startBus({ clock, runtime });
  return { runtime, bus, clock };
}

async function inProcessDriver(): Promise<Driver & { runtime: Runtime; bus: CommunicationBus }> {
  const controlled: ControlledAgent = createControlledAgent(AGENT_ID);
  const { runtime, bus } = await startSystem({ agents: [controlled.agent] });
  const replies: Array<Promise<unknown>> = [];
  return {
    runtime,
    bus,
    async step(event) {
      if (event.type === "WORK.STARTED") {
        const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: AGENT_ID });
        const started = nextEvent(runtime, (candidate) => candidate.type === "prompt.started" && candidate.actorId === sessionId);
        const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "work" });
        // Prompts still running when the path ends are cancelled by the shutdown.
        reply.catch(() => undefined);
        replies.push(reply);
        await started;
      } else {
        controlled.current().reply();
        await replies.shift();
      }
    },
    async close() {
      await bus.stop();
      await runtime.stop();
    },
  };
}

/** The number of crashes a path brings about: each `AGENT.OFFLINE`, then its `AGENT.UNAVAILABLE`. */
function maxCrashesFor(path: AgentPath): number {
  return path.steps.filter(({ event }) => event.type === "AGENT.OFFLINE").length + 1;
}

async function workerDriver(path: AgentPath): Promise<Driver & { runtime: Runtime; bus: CommunicationBus }> {
  const directory = mkdtempSync(join(tmpdir(), "troupe-agent-model-"));
  const pidFile = join(directory, "pid");
  const { runtime, bus, clock } = await startSystem({
    workers: [
      fixtureWorker(AGENT_ID, {
        restart: { maxCrashes: maxCrashesFor(path), backoffMs: BACKOFF_MS, maxBackoffMs: BACKOFF_MS, stableAfterMs: 3_600_000 },
        env: { ACP_FIXTURE_PID_FILE: pidFile, ACP_FIXTURE_INIT_ON_SIGUSR1: "1" },
      }),
    ],
  });
  let lastPid = await nextPid(pidFile, undefined);
  pids.add(lastPid);
  /** Whether the last process crashed and the worker waits for its restart delay. */
  let crashed = false;
  let running: { sessionId: string; reply: Promise<unknown> } | undefined;

  /** The worker's process, restarted first when the last one crashed (the clock moves the backoff on). */
  async function livePid(): Promise<number> {
    if (!crashed) return lastPid;
    clock.increment(BACKOFF_MS);
    lastPid = await nextPid(pidFile, lastPid);
    pids.add(lastPid);
    crashed = false;
    return lastPid;
  }

  async function crash(to: AgentState): Promise<void> {
    const reached = nextEvent(runtime, agentEnters(to));
    process.kill(await livePid(), "SIGKILL");
    await reached;
    crashed = true;
    if (running !== undefined) {
      // The session that ran the prompt failed with the process: that is the model's next WORK.FINISHED.
      await expect(running.reply).rejects.toMatchObject({ type: "TRANSPORT" });
      expect((await runtime.bridge.sessionsStatus({ sessionId: running.sessionId })).status).toBe("failed");
    }
  }

  return {
    runtime,
    bus,
    async step(event, before) {
      switch (event.type) {
        case "AGENT.ONLINE": {
          const reached = nextEvent(runtime, agentEnters("ready"));
          process.kill(await livePid(), "SIGUSR1");
          await reached;
          return;
        }
        case "AGENT.OFFLINE":
          return crash("offline");
        case "AGENT.UNAVAILABLE":
          return crash("unavailable");
        case "WORK.STARTED": {
          const { sessionId } = await runtime.bridge.sessionsCreate({ agentId: AGENT_ID });
          const started = nextEvent(runtime, (candidate) => candidate.type === "prompt.started" && candidate.actorId === sessionId);
          const reply = runtime.bridge.sessionsPrompt({ sessionId, prompt: "wait" });
          reply.catch(() => undefined);
          running = { sessionId, reply };
          await started;
          return;
        }
        case "WORK.FINISHED":
          // After a crash the session already failed with it (checked then); otherwise the prompt is cancelled.
          if (before.value === "busy") {
            await runtime.bridge.sessionsCancel({ sessionId: running!.sessionId });
            await expect(running!.reply).rejects.toMatchObject({ type: "CANCELLED" });
          }
          running = undefined;
          return;
      }
    },
    async close() {
      await bus.stop();
      await runtime.stop();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

async function remoteDriver(): Promise<Driver & { runtime: Runtime; bus: CommunicationBus }> {
  const { runtime, bus } = await startSystem({});
  await register(bus, REMOTE_ID);
  let socket: RawAgent | undefined;
  const listedOnline = (online: boolean) => () => bus.listAgents().some((agent) => agent.agent_id === REMOTE_ID && agent.online === online);
  return {
    runtime,
    bus,
    async step(event) {
      if (event.type === "AGENT.ONLINE") {
        socket = await rawConnect(bus, REMOTE_ID);
        await until(listedOnline(true));
      } else {
        socket!.socket.close();
        await socket!.closed;
        await until(listedOnline(false));
      }
    },
    async close() {
      await bus.stop();
      await runtime.stop();
    },
  };
}

/** What `agents_discover` and `GET /agents` say of the agent. */
async function observed(kind: AgentKind, runtime: Runtime, bus: CommunicationBus) {
  const { agents } = await runtime.bridge.agentsDiscover();
  const busAgentId = kind === "remote" ? REMOTE_ID : `troupe://${AGENT_ID}`;
  const listed = ((await call(bus, "GET", "/agents")).body.agents as Array<{ agent_id: string; status: string; online: boolean }>).find(
    (agent) => agent.agent_id === busAgentId,
  );
  return { discovered: agents.find((agent) => agent.id === AGENT_ID)?.status, listed };
}

async function expectObserved(kind: AgentKind, runtime: Runtime, bus: CommunicationBus, state: AgentState, label: string): Promise<void> {
  const { discovered, listed } = await observed(kind, runtime, bus);
  expect(listed?.status, `${label}: GET /agents status`).toBe(state);
  if (kind === "remote") {
    expect(discovered, `${label}: a remote agent is not the runtime's`).toBeUndefined();
    expect(listed?.online, `${label}: GET /agents online`).toBe(state === "ready" || state === "busy");
  } else {
    expect(discovered, `${label}: agents_discover status`).toBe(DISCOVERED[state]);
    expect(listed?.online, `${label}: a runtime agent is online while the runtime runs`).toBe(true);
  }
}

async function runPath(path: AgentPath): Promise<void> {
  const kind = path.steps[0]!.state.context.kind;
  const driver = kind === "in-process" ? await inProcessDriver() : kind === "worker" ? await workerDriver(path) : await remoteDriver();
  try {
    await expectObserved(kind, driver.runtime, driver.bus, path.steps[0]!.state.value, "initial");
    for (let index = 1; index < path.steps.length; index += 1) {
      const { event, state: after } = path.steps[index]!;
      const label = `step ${index}: ${describePath({ ...path, steps: path.steps.slice(0, index + 1) })}`;
      await driver.step(event, path.steps[index - 1]!.state);
      await expectObserved(kind, driver.runtime, driver.bus, after.value, label);
    }
  } finally {
    await driver.close();
  }
}

describe("agent machine, model-based", () => {
  it("generates paths over every state of each kind of agent", () => {
    const states = (kind: keyof typeof byKind) => new Set(byKind[kind].shortest.map((path) => path.state.value));
    expect(states("in-process")).toEqual(new Set(["ready", "busy"]));
    expect(states("worker")).toEqual(new Set(["offline", "ready", "busy", "unavailable"]));
    expect(states("remote")).toEqual(new Set(["offline", "ready"]));
    // Each scripted path ends where its last event leads (nothing in it was ignored on the way).
    expect(scriptedPaths.map((path) => path.state.value)).toEqual(["unavailable", "unavailable", "ready"]);
  });

  describe(`scripted paths (${scriptedPaths.length})`, () => {
    it.each(scriptedPaths.map((path) => [describePath(path), path] as const))("%s", async (_name, path) => {
      await runPath(path);
    });
  });

  walkPaths({ families, describePath, runPath, coverage, name: "agent", covered: [agentMachine] });

  afterAll(() => {
    expect([...pids].filter(isAlive)).toEqual([]);
  });
});
