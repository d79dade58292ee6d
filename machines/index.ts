/**
 * troupe's machines: pure XState definitions and their typed events. Import as `troupe/machines`.
 */
export * from "./session.machine.js";
export * from "./session-shard.machine.js";
export * from "./supervisor.machine.js";
export * from "./worker.machine.js";
export * from "./agent.machine.js";
export * from "./delivery.machine.js";
export * from "./workflow.machine.js";
export * from "./pool.machine.js";
export * from "./pool-shard.machine.js";
export * from "./conversation.machine.js";
export * from "./shard-loads.js";
