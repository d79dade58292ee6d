/**
 * JSON-RPC 2.0's answers to input that is not a request at all (JSON-RPC 2.0 §5.1): what an MCP client is owed
 * for a line or a body it sent that the server could not read, instead of silence or troupe's own envelope.
 */

/** Invalid JSON was received. */
export const PARSE_ERROR = -32700;
/** The JSON sent is not a valid JSON-RPC message. */
export const INVALID_REQUEST = -32600;

/** An error response to a message whose id could not be read: its `id` is null, as the specification says. */
export interface UnreadableMessageError {
  jsonrpc: "2.0";
  id: null;
  error: { code: number; message: string; data?: string };
}

/** The response to unreadable input: `code` says whether it was not JSON or not JSON-RPC; `detail` what failed. */
export function unreadableMessageError(code: typeof PARSE_ERROR | typeof INVALID_REQUEST, detail?: string): UnreadableMessageError {
  const message = code === PARSE_ERROR ? "Parse error: Invalid JSON" : "Invalid Request: not a JSON-RPC message";
  return { jsonrpc: "2.0", id: null, error: { code, message, ...(detail === undefined ? {} : { data: detail }) } };
}

/**
 * The response owed for an error the MCP SDK's stdio transport reports (`onerror`) while reading a line: a
 * `SyntaxError` is a line that is not JSON, a `ZodError` one that is not a JSON-RPC message. Anything else (a
 * stream error, an oversized buffer) answers no message: undefined.
 */
export function responseToUnreadableLine(error: Error): UnreadableMessageError | undefined {
  if (error instanceof SyntaxError) return unreadableMessageError(PARSE_ERROR, error.message);
  if (error.name === "ZodError") return unreadableMessageError(INVALID_REQUEST);
  return undefined;
}
