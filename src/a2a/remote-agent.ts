/**
 * One remote A2A agent as troupe talks to it, through the SDK's client (`@a2a-js/sdk/client`, protocol v1.0,
 * and v0.3 for agents whose card says so): its card, a prompt as a streamed message, and cancelling a task.
 *
 * Every request carries the agent's configured headers. A request that cannot reach the agent is TRANSPORT,
 * one it refuses (401, 403) is AUTH, a task it fails or rejects is UPSTREAM. Loaded only once a remote agent
 * is reached, so that a runtime without one never loads the SDK.
 */
import { AgentCard, Role, TaskState, type Artifact, type StreamResponse, type TaskStatus } from "@a2a-js/sdk";
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory, RestTransportFactory, type Client } from "@a2a-js/sdk/client";
import { A2AError } from "@a2a-js/sdk/errors";
import type { PromptReply } from "../../machines/session.machine.js";
import { BridgeError, promptCancelled, toBridgeError } from "../errors.js";
import type { A2aAgentConfig } from "./config.js";
import { textMessage, textOfParts } from "./parts.js";
import { INPUT_REQUIRED_STOP_REASON } from "./stop-reasons.js";

/** How long a cancelled prompt keeps reading its stream for the id of the task to cancel, when it had none yet. */
const CANCEL_GRACE_MS = 5_000;
/** How long `tasks/cancel` may take before troupe stops waiting for it. */
const CANCEL_TIMEOUT_MS = 5_000;

/** Where a session is in its A2A context: the context the agent gave it, and the task that waits for input. */
export interface ContextBinding {
  contextId?: string;
  /** The task in `input-required`: the next prompt is sent into it. */
  inputTaskId?: string;
}

/** Whether an error is the abort of a request troupe cancelled. */
function isAbort(error: unknown): boolean {
  return error instanceof Error && (error.name === "AbortError" || error.name === "TimeoutError");
}

/** What one task told its stream: its id, its context, its state, its artifacts' text and its last status message. */
class TaskOutcome {
  taskId: string | undefined;
  contextId: string | undefined;
  state: TaskState | undefined;
  /** A reply given as a message instead of a task. */
  message: string | undefined;
  statusText = "";
  private readonly artifacts = new Map<string, string>();

  constructor(private readonly onDelta: (delta: string) => void) {}

  /** Takes one event of the stream; the text it adds to an artifact is streamed. */
  take(event: StreamResponse): void {
    const payload = event.payload;
    switch (payload?.$case) {
      case "task": {
        const task = payload.value;
        this.taskId = task.id;
        this.contextId = task.contextId || this.contextId;
        this.status(task.status);
        for (const artifact of task.artifacts) this.artifact(artifact, false);
        return;
      }
      case "statusUpdate":
        this.taskId = payload.value.taskId || this.taskId;
        this.contextId = payload.value.contextId || this.contextId;
        this.status(payload.value.status);
        return;
      case "artifactUpdate":
        if (payload.value.artifact !== undefined) this.artifact(payload.value.artifact, payload.value.append);
        return;
      case "message":
        this.contextId = payload.value.contextId || this.contextId;
        this.message = textOfParts(payload.value.parts);
        this.onDelta(this.message);
        return;
      default:
    }
  }

  /** The answer's text: its artifacts', else what its status said last. */
  get text(): string {
    const artifacts = [...this.artifacts.values()].filter((text) => text !== "");
    return artifacts.length > 0 ? artifacts.join("\n") : this.statusText;
  }

  private status(status: TaskStatus | undefined): void {
    if (status === undefined) return;
    this.state = status.state;
    if (status.message !== undefined) this.statusText = textOfParts(status.message.parts);
  }

  /** An appended piece is streamed; so is a new artifact; a replaced one (the whole text again) is not. */
  private artifact(artifact: Artifact, append: boolean): void {
    const text = textOfParts(artifact.parts);
    const known = this.artifacts.get(artifact.artifactId);
    this.artifacts.set(artifact.artifactId, append && known !== undefined ? known + text : text);
    if ((append || known === undefined) && text !== "") this.onDelta(text);
  }
}

/** A remote A2A agent reached through its card. Make one with `RemoteA2aAgent.connect`. */
export class RemoteA2aAgent {
  private constructor(
    private readonly config: A2aAgentConfig,
    /** The agent card as fetched. */
    readonly card: AgentCard,
    private readonly client: Client,
  ) {}

  /** The card as JSON, as `agents_discover` shows it. */
  get cardJson(): Record<string, unknown> {
    return AgentCard.toJSON(this.card) as Record<string, unknown>;
  }

  /** Capability names from the card: its skills' ids and tags. */
  get capabilities(): string[] {
    return [...new Set(this.card.skills.flatMap((skill) => [skill.id, ...skill.tags]).filter((name) => name !== ""))];
  }

  /** Fetches the agent's card (within `cardTimeoutMs`) and makes a client for the transport it prefers. */
  static async connect(config: A2aAgentConfig, cardTimeoutMs: number): Promise<RemoteA2aAgent> {
    const fetchImpl = fetchFor(config);
    const legacyCompat = { enabled: true };
    const resolver = new DefaultAgentCardResolver({ fetchImpl: fetchFor(config, cardTimeoutMs), legacyCompat });
    const factory = new ClientFactory({
      transports: [new JsonRpcTransportFactory({ fetchImpl, legacyCompat }), new RestTransportFactory({ fetchImpl, legacyCompat })],
      cardResolver: resolver,
    });
    const baseUrl = config.url.endsWith("/") ? config.url : `${config.url}/`;
    try {
      const card = await resolver.resolve(baseUrl);
      return new RemoteA2aAgent(config, card, await factory.createFromAgentCard(card));
    } catch (error) {
      throw failureOf(error, config.id, `its agent card at ${baseUrl} could not be used`);
    }
  }

  /**
   * Sends a prompt as a message into the session's context (and into its task waiting for input), streaming
   * the text the agent adds to its artifacts through `onDelta`. Aborting `signal` cancels the task
   * (`tasks/cancel`) and stops the stream.
   */
  async prompt(prompt: string, binding: ContextBinding, signal: AbortSignal, onDelta: (delta: string) => void): Promise<PromptReply> {
    const outcome = new TaskOutcome(onDelta);
    const stream = new AbortController();
    let graceTimer: ReturnType<typeof setTimeout> | undefined;
    const stopTask = (taskId: string): void => {
      void this.cancel(taskId);
      stream.abort();
    };
    const onAbort = (): void => {
      if (outcome.taskId !== undefined) return stopTask(outcome.taskId);
      // No task yet: keep reading a little for its id, so that the agent hears the cancel.
      graceTimer = setTimeout(() => stream.abort(), CANCEL_GRACE_MS).unref();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    const message = textMessage(Role.ROLE_USER, prompt, binding.contextId ?? "", binding.inputTaskId ?? "");
    try {
      for await (const event of this.client.sendMessageStream(
        { tenant: "", message, configuration: undefined, metadata: undefined },
        { signal: stream.signal },
      )) {
        outcome.take(event);
        if (outcome.contextId !== undefined) binding.contextId = outcome.contextId;
        if (signal.aborted && outcome.taskId !== undefined) {
          stopTask(outcome.taskId);
          break;
        }
      }
    } catch (error) {
      if (!signal.aborted && binding.inputTaskId !== undefined && error instanceof A2AError) binding.inputTaskId = undefined;
      throw signal.aborted ? promptCancelled() : failureOf(error, this.config.id, "its answer failed");
    } finally {
      signal.removeEventListener("abort", onAbort);
      clearTimeout(graceTimer);
    }
    if (signal.aborted) throw promptCancelled();
    return this.replyOf(outcome, binding);
  }

  /** Asks the agent to cancel a task (`tasks/cancel`); a task that ended meanwhile needs none, so failures are dropped. */
  async cancel(taskId: string): Promise<void> {
    await this.client.cancelTask({ tenant: "", id: taskId, metadata: undefined }, { signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS) }).catch(() => undefined);
  }

  /** The reply of a finished stream, by the state its task ended in. */
  private replyOf(outcome: TaskOutcome, binding: ContextBinding): PromptReply {
    const { id } = this.config;
    const details = { agentId: id, ...(outcome.taskId === undefined ? {} : { taskId: outcome.taskId }) };
    const waitsForInput = outcome.state === TaskState.TASK_STATE_INPUT_REQUIRED;
    binding.inputTaskId = waitsForInput ? outcome.taskId : undefined;
    if (outcome.message !== undefined) return { text: outcome.message, stopReason: "end_turn" };
    switch (outcome.state) {
      case TaskState.TASK_STATE_COMPLETED:
        return { text: outcome.text, stopReason: "end_turn" };
      case TaskState.TASK_STATE_INPUT_REQUIRED:
        return { text: outcome.statusText || outcome.text, stopReason: INPUT_REQUIRED_STOP_REASON };
      case TaskState.TASK_STATE_FAILED:
      case TaskState.TASK_STATE_REJECTED: {
        const verb = outcome.state === TaskState.TASK_STATE_FAILED ? "failed" : "rejected";
        throw new BridgeError("UPSTREAM", `A2A agent ${id} ${verb} the task${outcome.statusText === "" ? "" : `: ${outcome.statusText}`}`, details);
      }
      case TaskState.TASK_STATE_CANCELED:
        throw new BridgeError("UPSTREAM", `A2A agent ${id} cancelled the task${outcome.statusText === "" ? "" : `: ${outcome.statusText}`}`, details);
      case TaskState.TASK_STATE_AUTH_REQUIRED:
        throw new BridgeError("AUTH", `A2A agent ${id} needs authentication for the task${outcome.statusText === "" ? "" : `: ${outcome.statusText}`}`, {
          ...details,
          sessionValid: true,
        });
      default:
        throw new BridgeError("TRANSPORT", `A2A agent ${id} ended its stream before the task finished`, details);
    }
  }
}

/**
 * The `fetch` every request to the agent goes through: its headers added, an unreachable agent (or one that
 * does not answer within `timeoutMs`) TRANSPORT, a refusal (401, 403) AUTH. The caller's own abort stays one.
 */
function fetchFor(config: A2aAgentConfig, timeoutMs?: number): typeof fetch {
  return async (input, init = {}) => {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(config.headers ?? {})) if (!headers.has(name)) headers.set(name, value);
    const timeout = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
    const signal = timeout === undefined ? init.signal : init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    let response: Response;
    try {
      response = await fetch(input, { ...init, headers, ...(signal ? { signal } : {}) });
    } catch (error) {
      if (isAbort(error) && init.signal?.aborted) throw error;
      const cause = (error as { cause?: { code?: unknown } }).cause;
      const reason = timeout?.aborted ? `no answer within ${timeoutMs} ms` : typeof cause?.code === "string" ? cause.code : toBridgeError(error).message;
      throw new BridgeError("TRANSPORT", `A2A agent ${config.id} cannot be reached at ${config.url}: ${reason}`, { agentId: config.id, url: config.url });
    }
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw new BridgeError("AUTH", `A2A agent ${config.id} refused troupe's credentials (HTTP ${response.status}): check its headers`, {
        agentId: config.id,
        status: response.status,
      });
    }
    return response;
  };
}

/** Anything a call to the agent threw, as a BridgeError: the connection breaking is TRANSPORT, an error the agent answered UPSTREAM. */
function failureOf(error: unknown, agentId: string, what: string): BridgeError {
  if (error instanceof BridgeError) return error;
  const message = `A2A agent ${agentId}: ${what}: ${toBridgeError(error).message}`;
  if (error instanceof A2AError) return new BridgeError("UPSTREAM", message, { agentId, a2aError: error.name });
  // undici's TypeError: the connection closed or broke while the answer was read.
  if (error instanceof TypeError) return new BridgeError("TRANSPORT", message, { agentId });
  return new BridgeError("UPSTREAM", message, { agentId });
}
