/**
 * The SDK's own A2A client (`@a2a-js/sdk/client`) as the tests call troupe with it: a client for an agent's
 * URL (with the bus key, or without), messages, and reading tasks and streams.
 */
import { AgentCard, Role, TaskState, type Part, type SendMessageRequest, type StreamResponse, type Task } from "@a2a-js/sdk";
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory, type Client } from "@a2a-js/sdk/client";
import { TEST_KEY } from "../bus/support.js";

/** A fetch that sends `headers` with every request. */
export function fetchWith(headers: Record<string, string>): typeof fetch {
  return (input, init) => {
    const merged = new Headers(init?.headers);
    for (const [name, value] of Object.entries(headers)) merged.set(name, value);
    return fetch(input, { ...init, headers: merged });
  };
}

/** A client for the agent at `url` (its card is read from it), sending the test key unless `key` says otherwise. */
export async function clientFor(url: string, { key = TEST_KEY, legacy = false }: { key?: string | null; legacy?: boolean } = {}): Promise<Client> {
  const fetchImpl = key === null ? fetch : fetchWith({ "x-agent-api-key": key });
  const factory = new ClientFactory({
    transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat: { enabled: legacy } })],
    cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
  });
  if (!legacy) return factory.createFromUrl(url);
  // The card lists v1.0 first: keeping only its v0.3 interface makes the client speak v0.3.
  const card = AgentCard.fromJSON(await (await fetchImpl(new URL(".well-known/agent-card.json", url))).json());
  return factory.createFromAgentCard({ ...card, supportedInterfaces: card.supportedInterfaces.filter((each) => each.protocolVersion === "0.3") });
}

function textPart(text: string): Part {
  return { content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" };
}

/** A user's message with one text part, in a context and a task when given. */
export function message(text: string, { contextId = "", taskId = "" }: { contextId?: string; taskId?: string } = {}): SendMessageRequest {
  return {
    tenant: "",
    message: {
      messageId: crypto.randomUUID(),
      role: Role.ROLE_USER,
      parts: [textPart(text)],
      contextId,
      taskId,
      metadata: undefined,
      extensions: [],
      referenceTaskIds: [],
    },
    configuration: undefined,
    metadata: undefined,
  };
}

/** The text of a task's artifacts. */
export function answerOf(task: Task): string {
  return task.artifacts.flatMap((artifact) => artifact.parts.map((part) => (part.content?.$case === "text" ? part.content.value : ""))).join("");
}

/** What a task's status message says. */
export function statusTextOf(task: Pick<Task, "status">): string {
  return task.status?.message?.parts.map((part) => (part.content?.$case === "text" ? part.content.value : "")).join("") ?? "";
}

/** A result that must be a task. */
export function asTask(result: unknown): Task {
  if (typeof result !== "object" || result === null || !("status" in result)) throw new Error(`not a task: ${JSON.stringify(result)}`);
  return result as Task;
}

/** A state's name as the protocol writes it in words: `working`, `input_required`. */
export function stateName(state: TaskState | undefined): string {
  return (TaskState[state ?? TaskState.TASK_STATE_UNSPECIFIED] ?? "unknown").replace("TASK_STATE_", "").toLowerCase();
}

/** One stream event in short: `task:<state>`, `status:<state>`, `artifact:<append|replace>:<text>` or `message:<text>`. */
export function describeEvent(event: StreamResponse): string {
  const payload = event.payload;
  switch (payload?.$case) {
    case "task":
      return `task:${stateName(payload.value.status?.state)}`;
    case "statusUpdate":
      return `status:${stateName(payload.value.status?.state)}`;
    case "artifactUpdate": {
      const text = payload.value.artifact?.parts.map((part) => (part.content?.$case === "text" ? part.content.value : "")).join("") ?? "";
      return `artifact:${payload.value.append ? "append" : "replace"}:${text}`;
    }
    case "message":
      return `message:${payload.value.parts.length}`;
    default:
      return "empty";
  }
}

/** Reads a whole stream. */
export async function collect(stream: AsyncGenerator<StreamResponse>): Promise<StreamResponse[]> {
  const events: StreamResponse[] = [];
  for await (const event of stream) events.push(event);
  return events;
}
