/**
 * What a served task tells its client, as the SDK's execution events: the task, its states, and the text of
 * its answer as an artifact (streamed as appended pieces, then once whole).
 */
import { TaskState, type Message, type Task } from "@a2a-js/sdk";
import { AgentEvent, type ExecutionEventBus } from "@a2a-js/sdk/server";
import type { Clock } from "../clock.js";
import { agentMessage, textPart } from "./parts.js";

/** The events of one task on its execution bus. */
export class TaskEvents {
  constructor(
    private readonly bus: ExecutionEventBus,
    private readonly taskId: string,
    private readonly contextId: string,
    private readonly clock: Clock,
  ) {}

  /** The task as it starts this turn: new with the client's message, or the one it continues. */
  submitted(existing: Task | undefined, userMessage: Message): void {
    this.bus.publish(
      AgentEvent.task({
        id: this.taskId,
        contextId: this.contextId,
        status: this.statusOf(TaskState.TASK_STATE_SUBMITTED),
        artifacts: existing?.artifacts ?? [],
        history: existing?.history ?? [userMessage],
        metadata: existing?.metadata,
      }),
    );
  }

  /** A new state, with what the agent says about it (its question, the reason it failed). */
  status(state: TaskState, text?: string, metadata?: Record<string, unknown>): void {
    this.bus.publish(
      AgentEvent.statusUpdate({
        taskId: this.taskId,
        contextId: this.contextId,
        status: this.statusOf(state, text),
        metadata,
      }),
    );
  }

  /** Text of the answer: a piece appended to the artifact, or (`append` false) its whole text. */
  artifact(artifactId: string, text: string, append: boolean, lastChunk: boolean): void {
    this.bus.publish(
      AgentEvent.artifactUpdate({
        taskId: this.taskId,
        contextId: this.contextId,
        artifact: { artifactId, name: "answer", description: "", parts: [textPart(text)], metadata: undefined, extensions: [] },
        append,
        lastChunk,
        metadata: undefined,
      }),
    );
  }

  private statusOf(state: TaskState, text?: string): { state: TaskState; message: Message | undefined; timestamp: string } {
    return {
      state,
      message: text === undefined ? undefined : agentMessage(text, this.contextId, this.taskId),
      timestamp: new Date(this.clock.now()).toISOString(),
    };
  }
}
