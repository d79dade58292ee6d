/**
 * The agent of the `kill -9` restart test, shared by the killed server and the test that restarts it.
 */
import type { Agent } from "../../src/index.js";

/** Answers each prompt at once, except `hang`, which it never answers. */
export const steadyAgent: Agent = {
  id: "steady",
  prompt: (ctx) => (ctx.prompt === "hang" ? new Promise<never>(() => {}) : Promise.resolve({ text: `noted: ${ctx.prompt}` })),
};

/** The bridge session's TTL: long enough that it runs throughout the test. */
export const KILLED_SESSION_TTL_MS = 600_000;
