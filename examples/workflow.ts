/**
 * An auto-dispatched workflow, offline: one `POST /sessions` runs design → implementation → review.
 *
 *   design          an in-process LLM agent (the mock provider; swap in openAI({ ... }) for a real model)
 *   implementation  an ACP worker process (examples/coder-worker.mjs)
 *   review          a remote agent on the bus's WebSocket (connectAgent)
 *
 * Run it with `npx tsx examples/workflow.ts`.
 */
import { fileURLToPath } from "node:url";
import { CommunicationBus, connectAgent, createMultiProviderAgent, createRuntime, mock } from "../src/index.js";

const API_KEY = "dev-key";

// The runtime's agents are bus agents too: `designer` is `troupe://designer`, the worker `troupe://coder`.
const designer = createMultiProviderAgent({
  id: "designer",
  description: "Designs services",
  providers: [mock({ script: (ctx) => ({ text: `Design for "${ctx.prompt.split("\n")[0]}": a queue, a fan-out worker and an audit log.` }) })],
});
const runtime = createRuntime({
  agents: [designer],
  workers: [{ id: "coder", command: process.execPath, args: [fileURLToPath(new URL("./coder-worker.mjs", import.meta.url))] }],
});
await runtime.start();
const bus = new CommunicationBus({ port: 0, apiKey: API_KEY, runtime });
await bus.start();

// A reviewer somewhere else on the network: it registers, connects and answers the tasks it is sent.
await fetch(`${bus.url}/agents/register`, {
  method: "POST",
  headers: { "content-type": "application/json", "x-agent-api-key": API_KEY },
  body: JSON.stringify({ agent_descriptor: { agent_id: "claude-code://qa", capabilities: ["review"] } }),
});
const reviewer = connectAgent({
  url: bus.url,
  agentId: "claude-code://qa",
  apiKey: API_KEY,
  onMessage: async (message, { reply }) => {
    if (message.message_type !== "task_request") return;
    const implemented = Object.keys((message.payload["results"] as Record<string, unknown>) ?? {}).join(" and ");
    await reply({ text: `Approved: checked the ${implemented} results.` });
  },
});
await reviewer.ready();

// One request runs the whole pipeline; troupe://orchestrator is the bus itself taking the answers.
const created = await fetch(`${bus.url}/sessions`, {
  method: "POST",
  headers: { "content-type": "application/json", "x-agent-api-key": API_KEY },
  body: JSON.stringify({
    initiator: "troupe://orchestrator",
    participants: [
      { agent_id: "troupe://designer", role: "designer" },
      { agent_id: "troupe://coder", role: "implementer" },
      { agent_id: "claude-code://qa", role: "reviewer" },
    ],
    steps: [
      { name: "design", required_agents: ["troupe://designer"], task: "Design a notification service" },
      { name: "implementation", required_agents: ["troupe://coder"], task: "Implement the design", timeout: "60s" },
      { name: "review", required_agents: ["claude-code://qa"], task: { checklist: ["tests", "docs"] }, timeout: "60s" },
    ],
    shared_context: { project: "feature/notifications" },
    dispatch: "auto",
  }),
});
const { session_id: sessionId } = (await created.json()) as { session_id: string };

await new Promise<void>((resolve) => {
  const done = (event: { sessionId: string }): void => {
    if (event.sessionId === sessionId) resolve();
  };
  bus.sessionManager.on("session_completed", done);
  bus.sessionManager.on("session_terminated", done);
});

const summary = await fetch(`${bus.url}/sessions/${sessionId}/summary?format=markdown`, { headers: { "x-agent-api-key": API_KEY } });
console.log(((await summary.json()) as { markdown: string }).markdown);

await reviewer.close();
await bus.stop();
await runtime.stop();
