/**
 * What a prompt's tools can reach of the runtime that runs the prompt: its long-term memory and its
 * conversations' capability state. While a runtime runs a prompt of one of its in-process agents, the
 * prompt's session is registered here with that runtime's services, so built-in tools such as `memory_save`
 * are plain values, defined before any runtime exists, that work in whichever runtime calls them: a
 * `ToolContext` names the session, and the session names the runtime.
 *
 * Found by session id rather than kept in an `AsyncLocalStorage`: on Node 20, one `AsyncLocalStorage.run`
 * turns on promise hooks for the whole process for good, and every promise afterwards costs about 0.1 µs
 * more (a model call through an SDK makes a hundred), in troupe and in everything else the process runs.
 */
import { BridgeError } from "../errors.js";
import type { SessionInfo } from "../../machines/session.machine.js";
import type { MemoryBook } from "../memory/memory-book.js";

/** A conversation's capability state, read and written by the tools of the turn it is answering. */
export interface CapabilityStates {
  /** The capability state of the conversation `session` belongs to. CONFIG when it belongs to none. */
  read(session: SessionInfo): Record<string, unknown>;
  /** Sets (or with `null` removes) one capability's state; answers the whole state after it. */
  write(session: SessionInfo, capability: string, state: unknown): Record<string, unknown>;
}

/** The runtime's services a prompt's tools may use. */
export interface PromptServices {
  memory: MemoryBook;
  capabilities: CapabilityStates;
}

/**
 * The services of each session with a prompt running, and how many (a cancelled prompt whose agent does not
 * stop at once may still run while the session's next prompt starts). Session ids are random UUIDs: unique
 * across the runtimes of a process.
 */
const running = new Map<string, { services: PromptServices; prompts: number }>();

/** Runs `prompt` (and everything it starts, tools included) with `services` in reach of the tools of `sessionId`. */
export async function runInPromptScope<T>(sessionId: string, services: PromptServices, prompt: () => Promise<T>): Promise<T> {
  const scope = running.get(sessionId);
  if (scope === undefined) running.set(sessionId, { services, prompts: 1 });
  else scope.prompts += 1;
  try {
    return await prompt();
  } finally {
    const ended = running.get(sessionId);
    if (ended !== undefined && --ended.prompts === 0) running.delete(sessionId);
  }
}

/** The services of the prompt `session` is running; CONFIG when it runs none in any runtime (`what` names the caller). */
export function promptServices(session: Pick<SessionInfo, "sessionId">, what: string): PromptServices {
  const services = running.get(session.sessionId)?.services;
  if (services === undefined) {
    throw new BridgeError("CONFIG", `${what} runs only inside a prompt of a troupe runtime (the model's tool call, or an agent's prompt)`, {
      tool: what,
    });
  }
  return services;
}
