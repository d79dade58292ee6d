/**
 * The process the `kill -9` restart test kills (argument: a data directory): a bus over a runtime whose store
 * is the SQLite store of that directory. It makes a bridge session with one answered prompt and one that never
 * ends, and a workflow moved to its second step, prints `ready <json>` once all of it is durable, and waits to
 * be killed. It imports nothing of vitest: it runs as a process of its own.
 */
import { CommunicationBus, createRuntime, openSqliteStore } from "../../src/index.js";
import { KILLED_SESSION_TTL_MS, steadyAgent } from "./steady-agent.js";

const LEAD = "claude-code://orchestrator";
const PARTICIPANTS = [
  { agent_id: "opencode://backend", role: "implementer" },
  { agent_id: "claude-code://qa", role: "reviewer" },
];
const STEPS = [
  { name: "design", required_agents: [LEAD] },
  { name: "implementation", required_agents: ["opencode://backend"] },
  { name: "review", required_agents: ["claude-code://qa"] },
];

const dir = process.argv[2] ?? "";
const runtime = createRuntime({ agents: [steadyAgent], defaultAgentId: "steady", store: () => openSqliteStore({ dir }), sessionTtlMs: KILLED_SESSION_TTL_MS });
await runtime.start();
const bus = new CommunicationBus({ runtime, host: "127.0.0.1", port: 0, apiKey: "killed-key", env: {} });
await bus.start();
const { sessionId } = await runtime.bridge.sessionsCreate({ metadata: { owner: "killed" } });
await runtime.bridge.sessionsPrompt({ sessionId, prompt: "first" });
runtime.bridge.sessionsPrompt({ sessionId, prompt: "hang", requestId: "hanging" }).catch(() => undefined);
const workflowId = bus.sessionManager.createSession(LEAD, PARTICIPANTS, STEPS);
bus.sessionManager.updateWorkflow(workflowId, { current_step: "implementation" });
await bus.sessionManager.whenSettled();
await new Promise((resolve) => setImmediate(resolve));
await runtime.store.flush();
const status = await runtime.bridge.sessionsStatus({ sessionId });
process.stdout.write(`ready ${JSON.stringify({ sessionId, workflowId, status })}\n`);
// Killed here, with a prompt in flight and everything above committed.
setInterval(() => undefined, 60_000);
