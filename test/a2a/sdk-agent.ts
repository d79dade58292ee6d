/**
 * An A2A agent built the way the SDK's own samples build one (`@a2a-js/sdk/server` with its Express adapter),
 * on 127.0.0.1 port 0, for troupe to use as a remote agent. Its executor answers by the prompt's first word:
 *
 * - `wait`: works until the task is cancelled (`tasks/cancel`), then ends `canceled`;
 * - `hang`: streams one piece and never ends (for crashing the server mid-task);
 * - `fail`: ends `failed` with a reason;
 * - `ask`: ends `input-required` with a question; the next message into that task completes it;
 * - anything else: streams `Echo: <prompt>` word by word as artifact updates, then `completed`; with
 *   `(turn n)` when `n` messages came in its context, so that tests see contexts continue.
 *
 * Servers are closed after each test.
 */
import express from "express";
import type { Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { A2A_PROTOCOL_VERSION, AGENT_CARD_PATH, Role, TaskState, type AgentCard, type Message, type TaskStatus } from "@a2a-js/sdk";
import { AgentEvent, DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor, type ExecutionEventBus, type RequestContext } from "@a2a-js/sdk/server";
import { agentCardHandler, jsonRpcHandler, UserBuilder } from "@a2a-js/sdk/server/express";
import { afterEach } from "vitest";

const servers = new Set<SdkAgent>();

afterEach(async () => {
  await Promise.all([...servers].map((server) => server.close()));
});

function text(value: string): Message["parts"][number] {
  return { content: { $case: "text", value }, metadata: undefined, filename: "", mediaType: "text/plain" };
}

function agentSays(value: string, contextId: string, taskId: string): Message {
  return {
    messageId: crypto.randomUUID(),
    role: Role.ROLE_AGENT,
    parts: [text(value)],
    contextId,
    taskId,
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

function status(state: TaskState, message?: Message): TaskStatus {
  return { state, message, timestamp: new Date().toISOString() };
}

/** What the test agent saw. */
export interface SdkAgentLog {
  /** Every message's text with its context and task, in order. */
  messages: Array<{ text: string; contextId: string; taskId: string }>;
  /** Every task `tasks/cancel` was called for. */
  cancelled: string[];
}

/** The scripted executor. */
class ScriptedExecutor implements AgentExecutor {
  private readonly turns = new Map<string, number>();
  private readonly cancels = new Map<string, () => void>();

  constructor(private readonly log: SdkAgentLog) {}

  cancelTask = async (taskId: string, eventBus: ExecutionEventBus): Promise<void> => {
    this.log.cancelled.push(taskId);
    const stop = this.cancels.get(taskId);
    if (stop !== undefined) return stop();
    eventBus.publish(AgentEvent.statusUpdate({ taskId, contextId: "", status: status(TaskState.TASK_STATE_CANCELED), metadata: undefined }));
  };

  async execute(context: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { taskId, contextId, userMessage } = context;
    const prompt = userMessage.parts.map((part) => (part.content?.$case === "text" ? part.content.value : "")).join("");
    this.log.messages.push({ text: prompt, contextId, taskId });
    const turn = (this.turns.get(contextId) ?? 0) + 1;
    this.turns.set(contextId, turn);
    const update = (state: TaskState, message?: string): void =>
      bus.publish(
        AgentEvent.statusUpdate({
          taskId,
          contextId,
          status: status(state, message === undefined ? undefined : agentSays(message, contextId, taskId)),
          metadata: undefined,
        }),
      );
    const artifact = (piece: string, append: boolean): void =>
      bus.publish(
        AgentEvent.artifactUpdate({
          taskId,
          contextId,
          artifact: { artifactId: "answer", name: "answer", description: "", parts: [text(piece)], metadata: undefined, extensions: [] },
          append,
          lastChunk: false,
          metadata: undefined,
        }),
      );
    const task = context.task;
    bus.publish(
      AgentEvent.task({
        id: taskId,
        contextId,
        status: status(TaskState.TASK_STATE_SUBMITTED),
        artifacts: task?.artifacts ?? [],
        history: [...(task?.history ?? [])],
        metadata: undefined,
      }),
    );
    update(TaskState.TASK_STATE_WORKING);
    if (task?.status?.state === TaskState.TASK_STATE_INPUT_REQUIRED) {
      artifact(`Weather in ${prompt}: sunny`, false);
      return update(TaskState.TASK_STATE_COMPLETED);
    }
    const [command] = prompt.trim().split(/\s+/);
    switch (command) {
      case "wait":
        await new Promise<void>((resolve) => this.cancels.set(taskId, resolve));
        this.cancels.delete(taskId);
        return update(TaskState.TASK_STATE_CANCELED, "Stopped as asked");
      case "hang":
        artifact("Thinking", false);
        return new Promise<void>(() => undefined);
      case "fail":
        return update(TaskState.TASK_STATE_FAILED, "The forecast service is down");
      case "ask":
        return update(TaskState.TASK_STATE_INPUT_REQUIRED, "Which city?");
      default: {
        const pieces = `Echo: ${prompt}${turn > 1 ? ` (turn ${turn})` : ""}`.match(/\S+\s*/g) ?? [];
        pieces.forEach((piece, index) => artifact(piece, index > 0));
        return update(TaskState.TASK_STATE_COMPLETED);
      }
    }
  }
}

/** A running SDK-built A2A agent. */
export class SdkAgent {
  private readonly sockets = new Set<Socket>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly server: Server,
    /** What it saw. */
    readonly log: SdkAgentLog,
  ) {
    server.on("connection", (socket: Socket) => {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    });
  }

  /**
   * Starts one. `requiredHeader` makes every JSON-RPC call need that header and value (its card stays public,
   * as A2A cards are); `streaming: false` declares no streaming in its card.
   */
  static async start(options: { requiredHeader?: [string, string]; streaming?: boolean } = {}): Promise<SdkAgent> {
    const log: SdkAgentLog = { messages: [], cancelled: [] };
    const card: AgentCard = {
      name: "Weather agent",
      description: "Answers about the weather",
      // Its URL is known once it listens (below).
      supportedInterfaces: [{ url: "", protocolBinding: "JSONRPC", tenant: "", protocolVersion: A2A_PROTOCOL_VERSION }],
      provider: undefined,
      version: "1.0.0",
      capabilities: { streaming: options.streaming ?? true, pushNotifications: false, extensions: [], extendedAgentCard: false },
      securitySchemes: {},
      securityRequirements: [],
      defaultInputModes: ["text/plain"],
      defaultOutputModes: ["text/plain"],
      skills: [
        {
          id: "forecast",
          name: "Forecast",
          description: "Tells the weather",
          tags: ["weather"],
          examples: [],
          inputModes: [],
          outputModes: [],
          securityRequirements: [],
        },
      ],
      signatures: [],
    };
    const requestHandler = new DefaultRequestHandler(card, new InMemoryTaskStore(), new ScriptedExecutor(log));
    const app = express();
    app.use(`/${AGENT_CARD_PATH}`, agentCardHandler({ agentCardProvider: requestHandler }));
    if (options.requiredHeader !== undefined) {
      const [name, value] = options.requiredHeader;
      app.use((req, res, next) => (req.header(name) === value ? next() : res.status(401).json({ error: "unauthorized" })));
    }
    app.use(jsonRpcHandler({ requestHandler, userBuilder: UserBuilder.noAuthentication }));
    const server = await new Promise<Server>((resolve) => {
      const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
    });
    const agent = new SdkAgent(server, log);
    card.supportedInterfaces[0]!.url = agent.url;
    servers.add(agent);
    return agent;
  }

  /** `http://127.0.0.1:<port>/`: its base URL (the card is under it). */
  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/`;
  }

  /** Stops as a crash would: every connection is reset at once and nothing listens any more. */
  crash(): Promise<void> {
    for (const socket of this.sockets) socket.resetAndDestroy();
    return this.close();
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      servers.delete(this);
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }
}
