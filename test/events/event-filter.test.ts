/**
 * The stream's query, read at the edge (`parseEventQuery`), and what each filter selects (`matchesFilter` on
 * `keysOf` an event), on events as the hub builds them.
 */
import { describe, expect, it } from "vitest";
import { keysOf, matchesFilter, parseEventQuery } from "../../src/events/event-filter.js";
import { RouteQuery } from "../../src/server/http-server.js";
import type { RuntimeEvent } from "../../src/index.js";

const SESSION = "0f8c7e2a-5d4b-4e1f-9a3c-1b2d3e4f5a6b";
const WORKFLOW = "sess_4e1f9a3c1b2d3e4f5a6b0f8c7e2a5d4b";

function event(fields: Record<string, unknown>): RuntimeEvent {
  return { seq: 1, ts: 0, ...fields } as unknown as RuntimeEvent;
}

const EVENTS = {
  sessionSpawned: event({ type: "actor.spawned", actorId: SESSION, parentId: "shard-0", machine: "session" }),
  promptActorStopped: event({ type: "actor.stopped", actorId: `${SESSION}/prompt`, reason: "done" }),
  delta: event({ type: "prompt.delta", actorId: SESSION, sessionId: SESSION, requestId: "r1", delta: "hi", agentId: "writer" }),
  workflowDelta: event({
    type: "prompt.delta",
    actorId: "b-session",
    sessionId: "b-session",
    requestId: "r2",
    delta: "ok",
    agentId: "coder",
    workflowId: WORKFLOW,
  }),
  workflowSpawned: event({ type: "actor.spawned", actorId: WORKFLOW, parentId: "workflows-0", machine: "workflow" }),
  workflowStep: event({ type: "workflow.step", actorId: WORKFLOW, sessionId: WORKFLOW, previous_step: "design", workflow: {}, cause: "advance" }),
  taskDelegated: event({
    type: "workflow.task_delegated",
    actorId: WORKFLOW,
    sessionId: WORKFLOW,
    task: { from: "claude-code://lead", to: "troupe://coder", task_id: "t" },
  }),
  messageInWorkflow: event({
    type: "message.accepted",
    actorId: "message:m1",
    messageId: "m1",
    target: "troupe://coder",
    from: "claude-code://lead",
    workflowId: WORKFLOW,
  }),
  messageOutside: event({
    type: "message.dead",
    actorId: "message:m2",
    messageId: "m2",
    attempts: 3,
    error: "no ack",
    cause: "exhausted",
    from: "opencode://backend",
  }),
  agentBusy: event({ type: "agent.busy", actorId: "agent:writer", agentId: "writer", kind: "in-process" }),
  workerTransition: event({ type: "actor.transition", actorId: "worker:coder/process", from: "a", to: "b", event: "E" }),
  remoteAgentOnline: event({ type: "agent.online", actorId: "agent:claude-code://qa", agentId: "claude-code://qa", kind: "remote" }),
} as const;

type Name = keyof typeof EVENTS;

function selected(query: string): Name[] {
  const { filter } = parseEventQuery(new RouteQuery(query));
  return (Object.keys(EVENTS) as Name[]).filter((name) => matchesFilter(filter, keysOf(EVENTS[name])));
}

describe("the event stream's filters", () => {
  it("lets everything through without a filter, and with types=*", () => {
    expect(selected("")).toEqual(Object.keys(EVENTS));
    expect(selected("types=*")).toEqual(Object.keys(EVENTS));
  });

  it("selects types by name and by group", () => {
    expect(selected("types=prompt.delta,agent.busy")).toEqual(["delta", "workflowDelta", "agentBusy"]);
    expect(selected("types=actor.*")).toEqual(["sessionSpawned", "promptActorStopped", "workflowSpawned", "workerTransition"]);
    expect(selected("types=message.*&types=workflow.step")).toEqual(["workflowStep", "messageInWorkflow", "messageOutside"]);
  });

  it("selects a session's actor, the actors under it and the events naming it", () => {
    expect(selected(`session=${SESSION}`)).toEqual(["sessionSpawned", "promptActorStopped", "delta"]);
    expect(selected(`session=${WORKFLOW}`)).toEqual(["workflowSpawned", "workflowStep", "taskDelegated"]);
  });

  it("selects a workflow's events, its messages and the prompts of its tasks", () => {
    expect(selected(`workflow=${WORKFLOW}`)).toEqual(["workflowDelta", "workflowSpawned", "workflowStep", "taskDelegated", "messageInWorkflow"]);
  });

  it("selects an agent's events under its runtime id or its bus id", () => {
    expect(selected("agent=writer")).toEqual(["delta", "agentBusy"]);
    expect(selected("agent=troupe://writer")).toEqual(["delta", "agentBusy"]);
    expect(selected("agent=coder")).toEqual(["workflowDelta", "taskDelegated", "messageInWorkflow", "workerTransition"]);
    expect(selected("agent=claude-code://lead")).toEqual(["taskDelegated", "messageInWorkflow"]);
    expect(selected("agent=claude-code://qa")).toEqual(["remoteAgentOnline"]);
    expect(selected("agent=opencode://backend")).toEqual(["messageOutside"]);
  });

  it("combines filters with AND and values with OR", () => {
    expect(selected(`agent=writer,coder&types=prompt.delta`)).toEqual(["delta", "workflowDelta"]);
    expect(selected(`workflow=${WORKFLOW}&agent=claude-code://lead`)).toEqual(["taskDelegated", "messageInWorkflow"]);
  });

  it("reads since, and Last-Event-ID over it", () => {
    expect(parseEventQuery(new RouteQuery("")).since).toBeUndefined();
    expect(parseEventQuery(new RouteQuery("since=0")).since).toBe(0);
    expect(parseEventQuery(new RouteQuery("since=42"), "57").since).toBe(57);
    expect(parseEventQuery(new RouteQuery("since=42"), "").since).toBe(42);
  });

  it.each([
    ["types=prompt", "types", 'types: unknown event type "prompt"'],
    ["types=bogus.*", "types", 'types: unknown event type "bogus.*"'],
    ["types=prompt.delta,", "types", "types: empty value"],
    ["since=1.5", "since", "since: expected an event seq"],
    ["since=1&since=2", "since", "since: given more than once"],
    ["since=99999999999999999", "since", "since: expected an event seq"],
    ["agent_id=x", "agent_id", "agent_id: unknown query parameter"],
  ])("refuses %s with CONFIG naming %s", (query, field, message) => {
    expect(() => parseEventQuery(new RouteQuery(query))).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field }), message: expect.stringContaining(message) }),
    );
  });
});
