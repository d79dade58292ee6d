/**
 * The one mapping from a bridge call's outcome to an MCP tool result (SPEC §7): the JSON as text, for clients
 * that read only text, and the same value as `structuredContent`.
 */
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { toBridgeError } from "../errors.js";

/** A tool's result: its JSON as text and as `structuredContent`. */
export function toolResult(value: object): CallToolResult {
  return { content: [{ type: "text", text: JSON.stringify(value) }], structuredContent: { ...value } };
}

/** A failed call: `isError` with the `BridgeError`'s `{ type, message, details }`, as text and as `structuredContent`. */
export function errorResult(error: unknown): CallToolResult {
  const { type, message, details } = toBridgeError(error).toJSON();
  return { ...toolResult({ type, message, details }), isError: true };
}
