/**
 * Every built-in tool of conversations: long-term memory and capability state. What a conversation agent is
 * given so that memory is "always available" (SPEC §4): `createMultiProviderAgent({ ..., tools: [...conversationTools, ...] })`.
 */
import { memoryTools } from "../memory/memory-tools.js";
import type { Tool } from "../tools/tool.js";
import { capabilityStateTools } from "./capability-tools.js";

/** `memory_save`, `memory_search`, `memory_list`, `memory_delete`, `capability_state_get`, `capability_state_set`. */
export const conversationTools: readonly Tool[] = [...memoryTools, ...capabilityStateTools];
