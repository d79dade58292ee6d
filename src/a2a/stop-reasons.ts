/**
 * The stop reason that stands for A2A's `input-required`, both ways: a reply with it leaves the task waiting for
 * the client's next message, and a remote task waiting for input answers with it.
 */
import type { StopReason } from "../agents/agent.js";

/** The agent asks something back: the session's next prompt answers it. */
export const INPUT_REQUIRED_STOP_REASON: StopReason = "input_required";
