/**
 * An agent whose sessions open and close, and whose prompts end, only when the test says so: what a model-based
 * test needs to hold a conversation in `opening`, `answering` or `closing` for as long as its path does.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { BridgeError, type Agent, type AgentReply, type PromptContext } from "../../src/index.js";

/** A step of the agent that waits for the test. */
interface Gate {
  sessionId: string;
  resolve(): void;
  reject(error: BridgeError): void;
}

/** A prompt that waits for the test, with a way to run code inside it (as its tools would run). */
export interface GatedPrompt {
  ctx: PromptContext;
  reply(text: string): void;
  fail(error: BridgeError): void;
  /** Runs `fn` in the prompt's async context, as a tool called by its model runs. */
  inPrompt<T>(fn: () => T): T;
}

/** A gated agent and the steps it holds. */
export interface GatedAgent {
  agent: Agent;
  /** Sessions whose `onSessionOpen` waits. */
  opens: Gate[];
  /** Sessions whose `onSessionClose` (reason `closed`) waits. */
  closes: Gate[];
  /** Prompts not answered yet. */
  prompts: GatedPrompt[];
}

function gate(list: Gate[], sessionId: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const held: Gate = {
      sessionId,
      resolve: () => {
        list.splice(list.indexOf(held), 1);
        resolve();
      },
      reject: (error) => {
        list.splice(list.indexOf(held), 1);
        reject(error);
      },
    };
    list.push(held);
  });
}

/**
 * Creates the agent. Every `onSessionOpen` waits in `opens`; the `onSessionClose` of a session that opened,
 * closed with reason `closed`, waits in `closes` (a failed open, a failed session and shutdown close at once);
 * every prompt waits in `prompts` until answered, failed, or aborted.
 */
export function createGatedAgent(id: string): GatedAgent {
  const opens: Gate[] = [];
  const closes: Gate[] = [];
  const prompts: GatedPrompt[] = [];
  const opened = new Set<string>();
  const agent: Agent = {
    id,
    onSessionOpen: async (session) => {
      await gate(opens, session.sessionId);
      opened.add(session.sessionId);
    },
    onSessionClose: async (session, reason) => {
      if (reason === "closed" && opened.has(session.sessionId)) await gate(closes, session.sessionId);
    },
    prompt: (ctx) =>
      new Promise<AgentReply>((resolve, reject) => {
        const inPrompt = AsyncLocalStorage.snapshot();
        const held: GatedPrompt = {
          ctx,
          reply: (text) => {
            prompts.splice(prompts.indexOf(held), 1);
            resolve({ text });
          },
          fail: (error) => {
            prompts.splice(prompts.indexOf(held), 1);
            reject(error);
          },
          inPrompt: (fn) => inPrompt(fn),
        };
        ctx.signal.addEventListener("abort", () => {
          if (prompts.includes(held)) prompts.splice(prompts.indexOf(held), 1);
          reject(new BridgeError("CANCELLED", "aborted"));
        });
        prompts.push(held);
      }),
  };
  return { agent, opens, closes, prompts };
}
