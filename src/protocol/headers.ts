/**
 * HTTP headers of troupe's wire protocol, shared by the server and the clients.
 */

/** The header that carries the bus's API key. */
export const API_KEY_HEADER = "x-agent-api-key";
