/**
 * HTTP headers of troupe's wire protocol, shared by the server and the clients.
 */

/** The header that carries the bus's API key. */
export const API_KEY_HEADER = "x-agent-api-key";

/** The header that carries an agent's own token (`agentAuth: "token"`). */
export const AGENT_TOKEN_HEADER = "x-agent-token";
