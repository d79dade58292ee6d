/**
 * Which events a subscriber of the stream gets: the query (`types`, `session`, `agent`, `workflow`, `since`),
 * validated once at the edge, and the keys of an event that the filters read.
 *
 * A filter reads only the event itself, never the state of the runtime, so a replay from the ring buffer
 * selects exactly what the live stream selected. Filters combine with AND; the values of one filter (a comma
 * list, or the parameter repeated) with OR.
 *
 * - `types`: the event's type is one of them; `prompt.*` stands for every `prompt.` type, `*` for all.
 * - `session=<id>`: the events of that bridge session or workflow session: its actor's (`actorId` is the id,
 *   or is under it: `<id>/prompt`), and those naming it as `sessionId` (`prompt.*` of a bridge session,
 *   `workflow.*` of a workflow).
 * - `workflow=<id>`: everything of that workflow session: its actor's events, its `workflow.*` events, the
 *   `message.*` events of the messages sent in it (`sender.session_id`), and the `prompt.*` events of the
 *   bridge sessions the bus opened to answer its tasks.
 * - `agent=<id>`: the events concerning that agent: its actor's (`agent:<id>`, and its worker's
 *   `worker:<id>`), `agent.*`, `prompt.*` of its sessions, `message.*` of messages it sent (`from`) or that
 *   were handed to it (`target`), and `workflow.*` naming it as a participant or as a task's `from`, `to` or
 *   `answered_by`. A runtime agent may be named by its id (`writer`) or its bus id (`troupe://writer`).
 */
import { BridgeError } from "../errors.js";
import type { RouteQuery } from "../server/http-server.js";
import { EVENT_QUERY_PARAMS } from "../protocol/event-frames.js";
import { busAgentIdOf, runtimeAgentIdCandidates } from "../runtime/bus-agents.js";
import { RUNTIME_EVENT_TYPES, type RuntimeEvent, type RuntimeEventType } from "./event-hub.js";

/** What the filters read of one event. */
export interface EventKeys {
  type: RuntimeEventType;
  actorId: string;
  sessionId: string | undefined;
  workflowId: string | undefined;
  agentIds: readonly string[];
}

/** The filters of one subscriber; an absent filter lets every event through. */
export interface EventFilter {
  types?: { exact: ReadonlySet<string>; prefixes: readonly string[] };
  sessions?: ReadonlySet<string>;
  workflows?: ReadonlySet<string>;
  agents?: ReadonlySet<string>;
}

/** What a subscriber asked for: its filters, and where its replay starts (after `since`), if anywhere. */
export interface EventStreamRequest {
  filter: EventFilter;
  since: number | undefined;
}

/** `prompt.*` and the like: the groups of event types. */
const TYPE_GROUPS = new Set(RUNTIME_EVENT_TYPES.map((type) => type.slice(0, type.indexOf(".") + 1)));
const KNOWN_TYPES: ReadonlySet<string> = new Set(RUNTIME_EVENT_TYPES);
/** The suffix of the actor that runs an ACP worker's process, under its worker (`worker:<id>/process`). */
const WORKER_PROCESS_SUFFIX = "/process";

/** The fields of events that name an agent: `agent.*`, `prompt.*`, `workflow.participant_removed` (`agentId`), `message.*`. */
const AGENT_FIELDS = ["agentId", "from", "target"] as const;
/** The fields of a workflow's task that name an agent. */
const TASK_AGENT_FIELDS = ["from", "to", "answered_by"] as const;

function pushString(into: string[], value: unknown): void {
  if (typeof value === "string") into.push(value);
}

function objectOf(value: unknown): Record<string, unknown> | undefined {
  return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : undefined;
}

/** The agent an actor id belongs to (`agent:writer`, `worker:writer`, `worker:writer/process` → `writer`), if any. */
function agentOfActor(actorId: string): string | undefined {
  if (actorId.startsWith("agent:")) return actorId.slice("agent:".length);
  if (!actorId.startsWith("worker:")) return undefined;
  const workerId = actorId.slice("worker:".length);
  return workerId.endsWith(WORKER_PROCESS_SUFFIX) ? workerId.slice(0, -WORKER_PROCESS_SUFFIX.length) : workerId;
}

/** The keys of an event: read once, when the stream records it (every event passes here: no closure, no copy). */
export function keysOf(event: RuntimeEvent): EventKeys {
  const fields = event as unknown as Record<string, unknown>;
  const agentIds: string[] = [];
  pushString(agentIds, agentOfActor(event.actorId));
  for (const field of AGENT_FIELDS) pushString(agentIds, fields[field]);
  pushString(agentIds, objectOf(fields["participant"])?.["agent_id"]);
  const task = objectOf(fields["task"]);
  if (task !== undefined) for (const field of TASK_AGENT_FIELDS) pushString(agentIds, task[field]);
  const sessionId = typeof fields["sessionId"] === "string" ? fields["sessionId"] : undefined;
  const workflowId = event.type.startsWith("workflow.") ? sessionId : typeof fields["workflowId"] === "string" ? fields["workflowId"] : undefined;
  return { type: event.type, actorId: event.actorId, sessionId, workflowId, agentIds };
}

function anyOf(values: ReadonlySet<string>, candidates: ReadonlyArray<string | undefined>): boolean {
  return candidates.some((candidate) => candidate !== undefined && values.has(candidate));
}

/** Whether an event passes every filter. */
export function matchesFilter(filter: EventFilter, keys: EventKeys): boolean {
  const { types, sessions, workflows, agents } = filter;
  if (types !== undefined && !types.exact.has(keys.type) && !types.prefixes.some((prefix) => keys.type.startsWith(prefix))) return false;
  if (sessions !== undefined && !sessions.has(keys.actorId) && !anyOf(sessions, [keys.sessionId, parentSessionOf(keys.actorId)])) return false;
  if (workflows !== undefined && !anyOf(workflows, [keys.actorId, keys.workflowId])) return false;
  if (agents !== undefined && !anyOf(agents, keys.agentIds)) return false;
  return true;
}

/** The session a child actor runs under (`<sessionId>/prompt` → `<sessionId>`). */
function parentSessionOf(actorId: string): string | undefined {
  const slash = actorId.indexOf("/");
  return slash < 0 ? undefined : actorId.slice(0, slash);
}

/** The values of a filter parameter: comma lists, or the parameter repeated. Empty values are CONFIG. */
function listOf(query: URLSearchParams, name: string): string[] | undefined {
  const raw = query.getAll(name);
  if (raw.length === 0) return undefined;
  const values = raw.flatMap((value) => value.split(",")).map((value) => value.trim());
  if (values.some((value) => value === "")) throw new BridgeError("CONFIG", `${name}: empty value in ${JSON.stringify(raw.join(","))}`, { field: name });
  return values;
}

function typesFilter(values: string[]): NonNullable<EventFilter["types"]> | undefined {
  if (values.includes("*")) return undefined;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const value of values) {
    if (KNOWN_TYPES.has(value)) exact.add(value);
    else if (value.endsWith(".*") && TYPE_GROUPS.has(value.slice(0, -1))) prefixes.push(value.slice(0, -1));
    else {
      const groups = [...TYPE_GROUPS].map((group) => `${group}*`).join(", ");
      throw new BridgeError("CONFIG", `types: unknown event type ${JSON.stringify(value)} (an event type such as prompt.delta, a group ${groups}, or *)`, {
        field: "types",
      });
    }
  }
  return { exact, prefixes };
}

/** Every id an agent may appear under in events: its runtime id and its bus id (`writer`, `troupe://writer`). */
function agentAliases(values: string[]): Set<string> {
  return new Set(values.flatMap((agentId) => [agentId, busAgentIdOf(agentId), ...runtimeAgentIdCandidates(agentId)]));
}

/** A sequence number given by the client (`since`, `Last-Event-ID`): a non-negative integer. */
function seqOf(value: string, field: string): number {
  const seq = /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(seq))
    throw new BridgeError("CONFIG", `${field}: expected an event seq (a non-negative integer), got ${JSON.stringify(value.slice(0, 40))}`, { field });
  return seq;
}

/**
 * Reads a subscriber's query; CONFIG (400) names the parameter that is wrong. `lastEventId` (the header an
 * `EventSource` sends when it reconnects) wins over `since`: the query still holds the first connection's.
 */
export function parseEventQuery(query: RouteQuery, lastEventId?: string): EventStreamRequest {
  for (const name of query.keys()) {
    if (!(EVENT_QUERY_PARAMS as readonly string[]).includes(name)) {
      throw new BridgeError("CONFIG", `${name}: unknown query parameter (expected ${EVENT_QUERY_PARAMS.join(", ")})`, { field: name });
    }
  }
  const filter: EventFilter = {};
  const types = listOf(query, "types");
  const typeFilter = types === undefined ? undefined : typesFilter(types);
  if (typeFilter !== undefined) filter.types = typeFilter;
  const sessions = listOf(query, "session");
  if (sessions !== undefined) filter.sessions = new Set(sessions);
  const workflows = listOf(query, "workflow");
  if (workflows !== undefined) filter.workflows = new Set(workflows);
  const agents = listOf(query, "agent");
  if (agents !== undefined) filter.agents = agentAliases(agents);
  const sinceValue = query.get("since");
  const since =
    lastEventId !== undefined && lastEventId !== "" ? seqOf(lastEventId, "Last-Event-ID") : sinceValue === null ? undefined : seqOf(sinceValue, "since");
  return { filter, since };
}
