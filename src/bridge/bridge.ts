/**
 * The bridge: the eight tools as typed methods, as `call(toolName, args)`, and as a list with JSON Schemas.
 * Every call is validated here, once; inside, data is trusted.
 */
import { randomId } from "../ids.js";
import { z } from "zod";
import { BridgeError, toBridgeError } from "../errors.js";
import { parseWith } from "../validation.js";
import type { PromptRequest, Runtime } from "../runtime/runtime.js";
import { toolArgumentSchemas, type PromptResult, type ToolArguments, type ToolName, type ToolResults } from "./schemas.js";

/** A tool as MCP and `runtime.bridge.tools` list it. */
export interface ToolDescription {
  name: ToolName;
  description: string;
  inputSchema: Record<string, unknown>;
}

const DESCRIPTIONS: Record<ToolName, string> = {
  bridge_health: "Report whether the bridge is up, its executors, session counts and capacity.",
  agents_discover: "List the agents sessions can be opened with, their capabilities, status and providers.",
  sessions_create: "Open a session with an agent; metadata.provider binds it to one provider for its life.",
  sessions_prompt: "Send a prompt to a session and wait for the reply; queued while the session is busy.",
  sessions_status: "Show a session's status (active, busy, idle, failed), its queue, usage and expiry.",
  sessions_close: "Close a session: it is deleted, and its pending prompts are cancelled.",
  sessions_cancel: "Cancel the in-flight prompt of a session, or a queued one by requestId.",
  tasks_delegate: "Create a session, send one prompt, close the session, and return the reply.",
};

/**
 * What a caller may add to a call of `sessions_prompt` or `tasks_delegate` (other tools ignore it): a way to
 * cancel the prompt and a listener of its streamed text. MCP maps `notifications/cancelled` and progress
 * notifications onto these; a terminal's Ctrl-C can use the same.
 */
export interface CallOptions {
  /** Aborting cancels the prompt through `sessions_cancel` (the provider call stops); the call rejects with CANCELLED. */
  signal?: AbortSignal;
  /** Receives each piece of text the agent streams for the prompt, as the runtime's `prompt.delta` events carry it. */
  onDelta?: (delta: string) => void;
}

/** Every tool name, in the order of SPEC §2.1. */
export const TOOL_NAMES = Object.keys(toolArgumentSchemas) as ToolName[];

/** The tools that name a session (`sessionId`): on a cluster node, the node that runs the session answers them. */
export const SESSION_TOOLS = ["sessions_prompt", "sessions_status", "sessions_close", "sessions_cancel"] as const satisfies readonly ToolName[];

/** A tool that names a session. */
export type SessionToolName = (typeof SESSION_TOOLS)[number];

/** The validated arguments of a session tool. */
export type SessionToolArguments = { sessionId: string } & Record<string, unknown>;

/**
 * Where a cluster node sends the session tools for a session it does not run (docs/cluster.md, "Bridge sessions
 * on any node"). Given by the bus of a cluster node (`forwardSessions`).
 */
export interface RemoteSessions {
  /**
   * Calls `toolName` on the node that runs session `args.sessionId`: `{ result }`, or that node's error thrown
   * as it is; `undefined` when the session is answered here (no other node runs it).
   */
  call(toolName: SessionToolName, args: SessionToolArguments, options: CallOptions): Promise<{ result: unknown } | undefined>;
}

function isSessionTool(name: ToolName): name is SessionToolName {
  return (SESSION_TOOLS as readonly ToolName[]).includes(name);
}

function isToolName(name: string): name is ToolName {
  return Object.hasOwn(toolArgumentSchemas, name);
}

function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

/** The eight tools of a runtime. Reach it as `runtime.bridge`. */
export class Bridge {
  /** The tools with their JSON Schemas, for MCP and HTTP clients. */
  readonly tools: ToolDescription[];
  private inFlight = 0;
  /** On a cluster node: where the session tools go for a session another node runs. */
  private remote: RemoteSessions | undefined;

  constructor(private readonly runtime: Runtime) {
    this.tools = TOOL_NAMES.map((name) => ({
      name,
      description: DESCRIPTIONS[name],
      inputSchema: z.toJSONSchema(toolArgumentSchemas[name], { io: "input" }),
    }));
  }

  /**
   * Calls a tool by its snake_case name with JSON arguments. An unknown name is NOT_FOUND. On a cluster node, a
   * session tool naming a session another node runs is answered by that node (`forwardSessions`).
   */
  async call<T extends ToolName>(toolName: T, args?: unknown, options?: CallOptions): Promise<ToolResults[T]>;
  async call(toolName: string, args?: unknown, options?: CallOptions): Promise<unknown>;
  async call(toolName: string, args: unknown = {}, options: CallOptions = {}): Promise<unknown> {
    return this.callOn(this.remote, toolName, args, options);
  }

  /**
   * Calls a tool as `call` does, answering from this runtime's own sessions only: what a cluster node answers for a
   * call another node sent it (never sent on again, so a call crosses at most one hop).
   */
  async callHere<T extends ToolName>(toolName: T, args?: unknown, options?: CallOptions): Promise<ToolResults[T]>;
  async callHere(toolName: string, args: unknown = {}, options: CallOptions = {}): Promise<unknown> {
    return this.callOn(undefined, toolName, args, options);
  }

  /**
   * Makes the session tools of a session this runtime does not run go to `remote` (a cluster node's bus calls it
   * once it joined its cluster). Returns the function that takes it back.
   */
  forwardSessions(remote: RemoteSessions): () => void {
    this.remote = remote;
    return () => {
      if (this.remote === remote) this.remote = undefined;
    };
  }

  /**
   * Takes one of the runtime's `maxConcurrentRequests` (CAPACITY past it), for work that is no tool call but holds
   * as much (a cluster node's forwarded A2A request, on both nodes); returns the function that gives it back.
   */
  reserve(): () => void {
    if (this.inFlight >= this.runtime.limits.maxConcurrentRequests) {
      throw new BridgeError("CAPACITY", `Too many concurrent requests (maxConcurrentRequests ${this.runtime.limits.maxConcurrentRequests})`, {
        maxConcurrentRequests: this.runtime.limits.maxConcurrentRequests,
      });
    }
    this.inFlight += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
    };
  }

  private async callOn(remote: RemoteSessions | undefined, toolName: string, args: unknown, options: CallOptions): Promise<unknown> {
    if (!isToolName(toolName)) throw new BridgeError("NOT_FOUND", `Unknown tool: ${toolName}`, { tool: toolName });
    const parsed = { data: parseWith(toolArgumentSchemas[toolName], args ?? {}, "(arguments)") };
    const release = this.reserve();
    try {
      if (remote !== undefined && isSessionTool(toolName)) {
        const forwarded = await this.forwarded(remote, toolName, parsed.data as SessionToolArguments, options);
        if (forwarded !== undefined) return forwarded.result;
      }
      return await this.run(toolName, parsed.data, options);
    } catch (error) {
      throw toBridgeError(error);
    } finally {
      release();
    }
  }

  /** `bridge_health` */
  health(args: ToolArguments<"bridge_health"> = {}): Promise<ToolResults["bridge_health"]> {
    return this.call("bridge_health", args);
  }
  /** `agents_discover` */
  agentsDiscover(args: ToolArguments<"agents_discover"> = {}): Promise<ToolResults["agents_discover"]> {
    return this.call("agents_discover", args);
  }
  /** `sessions_create` */
  sessionsCreate(args: ToolArguments<"sessions_create"> = {}): Promise<ToolResults["sessions_create"]> {
    return this.call("sessions_create", args);
  }
  /** `sessions_prompt` */
  sessionsPrompt(args: ToolArguments<"sessions_prompt">, options?: CallOptions): Promise<ToolResults["sessions_prompt"]> {
    return this.call("sessions_prompt", args, options);
  }
  /** `sessions_status` */
  sessionsStatus(args: ToolArguments<"sessions_status">): Promise<ToolResults["sessions_status"]> {
    return this.call("sessions_status", args);
  }
  /** `sessions_close` */
  sessionsClose(args: ToolArguments<"sessions_close">): Promise<ToolResults["sessions_close"]> {
    return this.call("sessions_close", args);
  }
  /** `sessions_cancel` */
  sessionsCancel(args: ToolArguments<"sessions_cancel">): Promise<ToolResults["sessions_cancel"]> {
    return this.call("sessions_cancel", args);
  }
  /** `tasks_delegate` */
  tasksDelegate(args: ToolArguments<"tasks_delegate">, options?: CallOptions): Promise<ToolResults["tasks_delegate"]> {
    return this.call("tasks_delegate", args, options);
  }

  /** A session tool for a session this runtime does not run: the answer of the node that runs it, if another does. */
  private async forwarded(
    remote: RemoteSessions,
    toolName: SessionToolName,
    args: SessionToolArguments,
    options: CallOptions,
  ): Promise<{ result: unknown } | undefined> {
    if (this.runtime.hasSession(args.sessionId)) return undefined;
    // This node's limit first: a prompt it would refuse does not travel.
    if (toolName === "sessions_prompt") this.checkPrompt(args.prompt as string);
    return remote.call(toolName, args, options);
  }

  private checkPrompt(prompt: string): void {
    const { maxPromptBytes } = this.runtime.limits;
    const bytes = utf8Bytes(prompt);
    if (bytes > maxPromptBytes) {
      throw new BridgeError("CONFIG", `prompt: ${bytes} bytes exceeds maxPromptBytes ${maxPromptBytes}`, {
        field: "prompt",
        limitBytes: maxPromptBytes,
        actualBytes: bytes,
      });
    }
  }

  private checkMetadata(metadata: Record<string, unknown> | undefined): Record<string, unknown> {
    if (metadata === undefined) return {};
    const { maxMetadataBytes } = this.runtime.limits;
    const bytes = utf8Bytes(JSON.stringify(metadata));
    if (bytes > maxMetadataBytes) {
      throw new BridgeError("CONFIG", `metadata: ${bytes} bytes exceeds maxMetadataBytes ${maxMetadataBytes}`, {
        field: "metadata",
        limitBytes: maxMetadataBytes,
        actualBytes: bytes,
      });
    }
    return metadata;
  }

  /**
   * Sends a prompt with a known `requestId`, so that an abort of `signal` can cancel exactly it (queued or in
   * flight) and `onDelta` hears only its deltas.
   */
  private async prompt(sessionId: string, request: PromptRequest, { signal, onDelta }: CallOptions): Promise<PromptResult> {
    if (signal === undefined && onDelta === undefined) return this.runtime.promptSession(sessionId, request);
    if (signal?.aborted) throw new BridgeError("CANCELLED", "Prompt cancelled by the caller", { sessionId });
    const requestId = request.requestId ?? randomId();
    const stopListening =
      onDelta === undefined
        ? () => undefined
        : this.runtime.on("prompt.delta", (event) => {
            if (event.sessionId === sessionId && event.requestId === requestId) onDelta(event.delta);
          });
    // The prompt may have ended (or its session closed) just before the abort: then there is nothing to cancel.
    const cancel = (): void => void this.runtime.cancelPrompt(sessionId, requestId).catch(() => undefined);
    signal?.addEventListener("abort", cancel, { once: true });
    try {
      return await this.runtime.promptSession(sessionId, {
        prompt: request.prompt,
        requestId,
        runtimeParams: request.runtimeParams,
        timeoutMs: request.timeoutMs,
      });
    } finally {
      signal?.removeEventListener("abort", cancel);
      stopListening();
    }
  }

  private async run(toolName: ToolName, args: Record<string, unknown>, options: CallOptions): Promise<unknown> {
    const runtime = this.runtime;
    switch (toolName) {
      case "bridge_health":
        return runtime.health();
      case "agents_discover": {
        const { capability } = args as z.output<(typeof toolArgumentSchemas)["agents_discover"]>;
        return runtime.discoverAgents(capability);
      }
      case "sessions_create": {
        const { agentId, metadata } = args as z.output<(typeof toolArgumentSchemas)["sessions_create"]>;
        return runtime.createSession(agentId, this.checkMetadata(metadata));
      }
      case "sessions_prompt": {
        const { sessionId, prompt, runtimeParams, requestId, timeout } = args as z.output<(typeof toolArgumentSchemas)["sessions_prompt"]>;
        this.checkPrompt(prompt);
        return this.prompt(sessionId, { prompt, runtimeParams, requestId, timeoutMs: timeout }, options);
      }
      case "sessions_status":
        return runtime.sessionStatus((args as { sessionId: string }).sessionId);
      case "sessions_close":
        return runtime.closeSession((args as { sessionId: string }).sessionId);
      case "sessions_cancel": {
        const { sessionId, requestId } = args as z.output<(typeof toolArgumentSchemas)["sessions_cancel"]>;
        return runtime.cancelPrompt(sessionId, requestId);
      }
      case "tasks_delegate": {
        const { agentId, prompt, metadata, runtimeParams, timeout } = args as z.output<(typeof toolArgumentSchemas)["tasks_delegate"]>;
        this.checkPrompt(prompt);
        const { sessionId } = await runtime.createSession(agentId, this.checkMetadata(metadata));
        try {
          const reply = await this.prompt(sessionId, { prompt, runtimeParams, timeoutMs: timeout }, options);
          return { sessionId, ...reply };
        } finally {
          await runtime.closeSession(sessionId).catch(() => undefined);
        }
      }
    }
  }
}
