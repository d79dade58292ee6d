#!/usr/bin/env node
/**
 * A tiny ACP coding agent for the workflow example: it "implements" a task by streaming back a plan of
 * what it would write. A real one would be an ACP adapter of a coding agent; troupe runs either the same way.
 */
import * as acp from "@agentclientprotocol/sdk";
import { Readable, Writable } from "node:stream";

let sessions = 0;

const app = acp
  .agent({ name: "example-coder" })
  .onRequest(acp.methods.agent.initialize, () => ({ protocolVersion: acp.PROTOCOL_VERSION, agentCapabilities: { loadSession: false } }))
  .onRequest(acp.methods.agent.session.new, () => ({ sessionId: `coder-${(sessions += 1)}` }))
  .onRequest(acp.methods.agent.session.prompt, async ({ params, client }) => {
    const prompt = params.prompt.map((block) => (block.type === "text" ? block.text : "")).join("");
    const task = prompt.split("\n")[0];
    const text = `Implemented "${task}": src/notifications.ts (fan-out service), test/notifications.test.ts (3 tests, passing).`;
    await client.notify(acp.methods.client.session.update, {
      sessionId: params.sessionId,
      update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text } },
    });
    return { stopReason: "end_turn" };
  });

app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
