/**
 * The names `troupe graph` takes, apart from the machines themselves (machines.ts), so that the command's
 * definition and its `--help` load no machine and no XState.
 */

/** Every machine `troupe graph` knows, in the order `troupe graph --help` lists them. */
export const MACHINE_NAMES = [
  "session",
  "session-shard",
  "supervisor",
  "agent",
  "worker",
  "delivery",
  "workflow",
  "pool",
  "pool-shard",
  "conversation",
] as const;

/** A machine `troupe graph` knows. */
export type MachineName = (typeof MACHINE_NAMES)[number];

/** The steps of the workflow machine drawn when no others are given: the seed's pipeline. */
export const EXAMPLE_WORKFLOW_STEPS = ["design", "implementation", "review"];
