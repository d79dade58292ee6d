/**
 * An agent whose every prompt waits until the test settles it: the test decides when and how each prompt ends.
 */
import type { Agent, AgentReply, PromptContext } from "../../src/index.js";
import { BridgeError, type BridgeErrorDetails, type BridgeErrorType } from "../../src/index.js";
import type { SessionCloseReason, SessionInfo } from "../../machines/index.js";

/** One prompt the agent received and has not answered yet. */
export interface HeldPrompt {
  ctx: PromptContext;
  settled: boolean;
  reply(reply?: Partial<AgentReply>): void;
  fail(type: BridgeErrorType, message?: string, details?: Partial<BridgeErrorDetails>): void;
}

/** A controlled agent and what it observed. */
export interface ControlledAgent {
  agent: Agent;
  /** Every prompt received, in order. */
  prompts: HeldPrompt[];
  /** The oldest prompt not settled yet; throws if none. */
  current(): HeldPrompt;
  opened: SessionInfo[];
  cancels: Array<{ sessionId: string; requestId: string }>;
  closes: Array<{ sessionId: string; reason: SessionCloseReason }>;
}

/** Creates an agent whose prompts stay pending until `reply` or `fail` is called (or they are aborted). */
export function createControlledAgent(id = "controlled", capabilities: string[] = []): ControlledAgent {
  const prompts: HeldPrompt[] = [];
  const opened: SessionInfo[] = [];
  const cancels: ControlledAgent["cancels"] = [];
  const closes: ControlledAgent["closes"] = [];
  const agent: Agent = {
    id,
    capabilities,
    prompt: (ctx) =>
      new Promise<AgentReply>((resolve, reject) => {
        const held: HeldPrompt = {
          ctx,
          settled: false,
          reply: (reply = {}) => {
            held.settled = true;
            resolve({ text: `reply to ${ctx.prompt}`, ...reply });
          },
          fail: (type, message = `${type} failure`, details) => {
            held.settled = true;
            reject(new BridgeError(type, message, details));
          },
        };
        ctx.signal.addEventListener("abort", () => {
          held.settled = true;
          reject(new BridgeError("CANCELLED", "aborted"));
        });
        prompts.push(held);
      }),
    onSessionOpen: (session) => {
      opened.push(session);
    },
    onCancel: ({ session, requestId }) => {
      cancels.push({ sessionId: session.sessionId, requestId });
    },
    onSessionClose: (session, reason) => {
      closes.push({ sessionId: session.sessionId, reason });
    },
  };
  return {
    agent,
    prompts,
    opened,
    cancels,
    closes,
    current: () => {
      const held = prompts.find((prompt) => !prompt.settled);
      if (held === undefined) throw new Error("no pending prompt");
      return held;
    },
  };
}
