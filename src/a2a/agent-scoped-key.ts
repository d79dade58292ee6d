/**
 * The key of a task or context in a table shared by every agent of an A2A endpoint: two agents' clients may
 * choose the same task or context id, and each must reach only its own.
 */

/** `agentId` and an id of that agent's, as one map key: joined by a newline, which no agent id holds. */
export function agentScopedKey(agentId: string, id: string): string {
  return `${agentId}\n${id}`;
}
