/**
 * The machines of `machines/` by the name `troupe graph` takes: each built as the runtime builds it, with
 * no effects provided (a graph only reads their definitions).
 */
import type { AnyStateMachine } from "xstate";
import {
  agentMachine,
  conversationMachine,
  createWorkflowMachine,
  deliveryMachine,
  poolMachine,
  poolShardMachine,
  sessionMachine,
  sessionShardMachine,
  supervisorMachine,
  workerMachine,
} from "../../machines/index.js";

/** The steps of the workflow machine drawn when no others are given: the seed's pipeline. */
export const EXAMPLE_WORKFLOW_STEPS = ["design", "implementation", "review"];

/** Every machine `troupe graph` knows, by name. `workflow` is built from `steps`. */
export const MACHINES: Record<string, (steps: string[]) => AnyStateMachine> = {
  session: () => sessionMachine,
  "session-shard": () => sessionShardMachine,
  supervisor: () => supervisorMachine,
  agent: () => agentMachine,
  worker: () => workerMachine,
  delivery: () => deliveryMachine,
  workflow: (steps) => createWorkflowMachine(steps.map((name) => ({ name, required_agents: [] }))),
  pool: () => poolMachine,
  "pool-shard": () => poolShardMachine,
  conversation: () => conversationMachine,
};

/** The names of the machines, in the order `troupe graph --help` lists them. */
export const MACHINE_NAMES = Object.keys(MACHINES);
