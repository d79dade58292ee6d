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
import type { MachineName } from "./machine-names.js";

export { MACHINE_NAMES } from "./machine-names.js";

/** Every machine `troupe graph` knows, by name (each of `MACHINE_NAMES`). `workflow` is built from `steps`. */
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
} satisfies Record<MachineName, (steps: string[]) => AnyStateMachine>;
