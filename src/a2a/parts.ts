/**
 * Text in and out of A2A's message parts, both ways: a troupe prompt or reply is text; A2A carries it as
 * `text` parts (a `data` part reads as its JSON, a file part is named, not read).
 */
import { randomUUID } from "node:crypto";
import { Role, type Message, type Part } from "@a2a-js/sdk";

/** One `text/plain` part. */
export function textPart(text: string): Part {
  return { content: { $case: "text", value: text }, metadata: undefined, filename: "", mediaType: "text/plain" };
}

/** The text of one part: a text part's own, a data part as JSON, a file as its name in brackets. */
function textOfPart(part: Part): string {
  const { content } = part;
  switch (content?.$case) {
    case "text":
      return content.value;
    case "data":
      return JSON.stringify(content.value);
    case "raw":
    case "url":
      return `[file ${part.filename || content.$case}]`;
    default:
      return "";
  }
}

/**
 * The text of a list of parts: text parts run on (an artifact streamed in pieces is one part per piece once
 * stored), other parts each on a line of their own.
 */
export function textOfParts(parts: readonly Part[]): string {
  let text = "";
  let previousWasText = true;
  for (const part of parts) {
    const isText = part.content?.$case === "text";
    const piece = textOfPart(part);
    if (piece === "") continue;
    text += text === "" || (isText && previousWasText) ? piece : `\n${piece}`;
    previousWasText = isText;
  }
  return text;
}

/** Whether any part carries text a prompt can be made of (text or data). */
export function hasPromptText(parts: readonly Part[]): boolean {
  return parts.some((part) => part.content?.$case === "text" || part.content?.$case === "data");
}

/** A message of `role` with one text part, in a context and (when given) a task. */
export function textMessage(role: Role, text: string, contextId: string, taskId: string): Message {
  return {
    messageId: randomUUID(),
    role,
    parts: [textPart(text)],
    contextId,
    taskId,
    metadata: undefined,
    extensions: [],
    referenceTaskIds: [],
  };
}

/** The agent's words in a task's status (its question when it needs input, the reason it failed). */
export function agentMessage(text: string, contextId: string, taskId: string): Message {
  return textMessage(Role.ROLE_AGENT, text, contextId, taskId);
}
