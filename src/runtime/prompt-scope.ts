/**
 * What a prompt's tools can reach of the runtime that runs the prompt: its long-term memory and its
 * conversations' capability state. The runtime runs every prompt of its in-process agents inside this scope
 * (`AsyncLocalStorage`), so built-in tools such as `memory_save` are plain values, defined before any runtime
 * exists, that work in whichever runtime calls them (a `ToolContext` names the session, not the runtime).
 */
import { AsyncLocalStorage } from "node:async_hooks";
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

const scope = new AsyncLocalStorage<PromptServices>();

/** Runs `prompt` (and everything it starts, tools included) with `services` in reach. */
export function runInPromptScope<T>(services: PromptServices, prompt: () => T): T {
  return scope.run(services, prompt);
}

/** The services of the prompt being run; CONFIG when called outside any runtime's prompt (`what` names the caller). */
export function promptServices(what: string): PromptServices {
  const services = scope.getStore();
  if (services === undefined) {
    throw new BridgeError("CONFIG", `${what} runs only inside a prompt of a troupe runtime (the model's tool call, or an agent's prompt)`, {
      tool: what,
    });
  }
  return services;
}
