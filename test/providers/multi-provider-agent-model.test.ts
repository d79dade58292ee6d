/**
 * `MultiProviderCompanionAgent`'s `model` (agent.yaml `model`): the model of its sessions, above the provider's
 * default and under session and prompt runtimeParams, as its `systemPrompt` is.
 */
import { describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, type PromptContext } from "../../src/index.js";
import { startTestRuntime } from "../support/runtime.js";

describe("MultiProviderCompanionAgent model", () => {
  it("answers with the agent's model unless the session or the prompt names another", async () => {
    const models: string[] = [];
    const agent = createMultiProviderAgent({
      id: "writer",
      model: "agent-model",
      providers: [
        mock({
          models: ["provider-model"],
          script: (ctx: PromptContext) => {
            models.push(ctx.runtimeParams.model ?? "none");
            return { text: "ok" };
          },
        }),
      ],
    });
    const { runtime } = await startTestRuntime({ agents: [agent] });
    const plain = await runtime.bridge.sessionsCreate({ agentId: "writer" });
    const pinned = await runtime.bridge.sessionsCreate({ agentId: "writer", metadata: { runtimeParams: { model: "session-model" } } });

    await runtime.bridge.sessionsPrompt({ sessionId: plain.sessionId, prompt: "one" });
    await runtime.bridge.sessionsPrompt({ sessionId: pinned.sessionId, prompt: "two" });
    await runtime.bridge.sessionsPrompt({ sessionId: pinned.sessionId, prompt: "three", runtimeParams: { model: "prompt-model" } });

    expect(models).toEqual(["agent-model", "session-model", "prompt-model"]);
  });

  it("refuses an empty model with CONFIG naming model", () => {
    expect(() => createMultiProviderAgent({ id: "writer", model: "", providers: [mock()] })).toThrow(
      expect.objectContaining({ type: "CONFIG", details: expect.objectContaining({ field: "model", agentId: "writer" }) }),
    );
  });
});
