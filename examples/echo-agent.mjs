#!/usr/bin/env node
/**
 * A minimal ACP agent: the smallest program troupe can run as a worker (`examples/troupe.json`).
 *
 * It speaks the Agent Client Protocol over stdio with the official SDK: it answers `initialize`, opens a
 * session for each `session/new`, and answers each `session/prompt` by streaming the prompt back word by word
 * as `agent_message_chunk` updates, stopping early when troupe sends `session/cancel`. Anything it writes to
 * stderr shows up in troupe's log under the worker's id. Replace the echo with a call to your own code.
 */
import * as acp from "@agentclientprotocol/sdk";
import { Readable, Writable } from "node:stream";

/** Milliseconds between streamed words, so that streaming and cancelling can be seen. */
const WORD_DELAY_MS = Number(process.env.ECHO_AGENT_WORD_DELAY_MS ?? 50);

let sessions = 0;
/** The sessions whose prompt was cancelled, until that prompt has answered. */
const cancelled = new Set();

const app = acp
  .agent({ name: "echo-agent" })
  .onRequest(acp.methods.agent.initialize, () => ({ protocolVersion: acp.PROTOCOL_VERSION, agentCapabilities: { loadSession: false } }))
  .onRequest(acp.methods.agent.session.new, () => {
    sessions += 1;
    process.stderr.write(`echo-agent: session ${sessions} opened\n`);
    return { sessionId: `echo-${sessions}` };
  })
  .onNotification(acp.methods.agent.session.cancel, ({ params }) => {
    cancelled.add(params.sessionId);
  })
  .onRequest(acp.methods.agent.session.prompt, async ({ params, client }) => {
    const { sessionId } = params;
    const text = params.prompt.map((block) => (block.type === "text" ? block.text : "")).join("");
    cancelled.delete(sessionId);
    for (const word of `Echo: ${text}`.match(/\S+\s*/g) ?? []) {
      if (cancelled.has(sessionId)) break;
      await client.notify(acp.methods.client.session.update, {
        sessionId,
        update: { sessionUpdate: "agent_message_chunk", content: { type: "text", text: word } },
      });
      await new Promise((resolve) => setTimeout(resolve, WORD_DELAY_MS));
    }
    const stopReason = cancelled.delete(sessionId) ? "cancelled" : "end_turn";
    return { stopReason };
  });

app.connect(acp.ndJsonStream(Writable.toWeb(process.stdout), Readable.toWeb(process.stdin)));
