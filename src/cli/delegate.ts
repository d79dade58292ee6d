/**
 * `troupe delegate <agentId> <prompt>`: one prompt to one of the agents `troupe serve` would run, in this
 * process: the answer is streamed to stdout as it comes, a spinner waits for the first token on a terminal,
 * the usage follows on stderr. Ctrl-C cancels the prompt (its provider request really stops) and exits 130.
 * Its options are defined in `delegate-command.ts`.
 */
import type { Agent } from "../agents/agent.js";
import { BridgeError, toBridgeError } from "../errors.js";
import { createRuntime, type Runtime } from "../runtime/runtime.js";
import type { PromptResult } from "../bridge/schemas.js";
import { loadServerConfig } from "./config.js";
import { serverAgents } from "./server-agents.js";
import { asUsage, CliFailure, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE } from "./exit-codes.js";
import type { DelegateFlags } from "./delegate-command.js";
import { logRuntimeToStderr } from "./logger.js";
import { handleSignals } from "./signals.js";
import { startSpinner } from "./spinner.js";

/** What `troupe delegate` was asked. */
export interface DelegateRequest {
  agentId: string;
  prompt: string;
  flags: DelegateFlags;
}

/** Where `troupe delegate` writes. */
export interface DelegateIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
}

/** Hints for errors a person can fix, by type. */
const HINTS: Partial<Record<BridgeError["type"], string>> = {
  AUTH: "check the provider's key: OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY",
  CONFIG: "troupe agents lists the agents and their providers; troupe delegate --help the options",
  TIMEOUT: "the provider did not answer in time; try again",
};

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    process.stdin.setEncoding("utf8");
    process.stdin.on("data", (chunk: string) => (text += chunk));
    process.stdin.once("end", () => resolve(text));
    process.stdin.once("error", reject);
  });
}

/** The line after the answer: why it stopped, the tokens it took, and which provider answered. */
function usageLine(reply: PromptResult, provider: string | undefined): string {
  const tokens = reply.usage === undefined ? "usage not reported" : `tokens: ${reply.usage.inputTokens} in, ${reply.usage.outputTokens} out`;
  return `— stop: ${reply.stopReason} · ${tokens}${provider === undefined ? "" : ` · provider: ${provider}`}\n`;
}

/** Exit code and message of a failed delegation: bad usage (a CONFIG error, an unknown agent) is 2. */
function failureOf(error: unknown): CliFailure {
  const bridgeError = toBridgeError(error);
  const hint = HINTS[bridgeError.type];
  const message = `${bridgeError.type}: ${bridgeError.message}${hint === undefined ? "" : ` (${hint})`}`;
  return new CliFailure(message, bridgeError.type === "CONFIG" ? EXIT_USAGE : EXIT_FAILED);
}

/** Fails with exit code 2 when `agentId` is none of the agents: naming the one it is inlined into, or listing them. */
function checkAgent(runtime: Runtime, agentId: string, agents: readonly Agent[], known: string[]): void {
  if (runtime.hasAgent(agentId)) return;
  const host = agents.find((agent) => agent.inlined?.includes(agentId) === true);
  if (host !== undefined) throw new CliFailure(`${agentId} is inlined into ${host.id}: delegate to ${host.id}`, EXIT_USAGE);
  throw new CliFailure(`no agent ${JSON.stringify(agentId)}; the agents are ${known.join(", ")} (troupe agents describes them)`, EXIT_USAGE);
}

const MOCK_HINT = "set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY for a real model";

/** The flags the mock provider does not read (it echoes), when the session answers with it: said, not silently dropped. */
function mockIgnores(provider: string | undefined, flags: DelegateFlags): string[] {
  if (provider !== "mock") return [];
  return [
    ...(flags.model === undefined ? [] : [`--model ${flags.model}`]),
    ...(flags.temperature === undefined ? [] : ["--temperature"]),
    ...(flags.maxTokens === undefined ? [] : ["--max-tokens"]),
  ];
}

/** Runs one delegation; resolves with the exit code. */
export async function delegate(request: DelegateRequest, io: DelegateIo): Promise<number> {
  const { agentId, flags } = request;
  const config = flags.config === undefined ? {} : asUsage(() => loadServerConfig(flags.config!));
  const workers = config.workers ?? [];
  const { agents, defaultAgentId } = asUsage(() => serverAgents(flags.agents, workers));
  const runtime = createRuntime({ agents, defaultAgentId, workers });
  checkAgent(
    runtime,
    agentId,
    agents,
    [...agents, ...workers].map((agent) => agent.id),
  );
  const prompt = request.prompt === "-" ? await readStdin() : request.prompt;
  await logRuntimeToStderr(runtime, flags.logLevel);
  const stream = flags.stream !== false;
  let sessionId: string | undefined;
  let lastWritten = "\n";
  const spinner = startSpinner(io.stderr, `asking ${agentId}…`);
  const write = (text: string): void => {
    if (text === "") return;
    spinner.stop();
    io.stdout.write(text);
    lastWritten = text;
  };
  // The first Ctrl-C cancels the prompt and lets troupe stop in order; a second one leaves at once.
  const cancel = new AbortController();
  const stopHandling = handleSignals(["SIGINT"], () => {
    spinner.stop();
    cancel.abort();
  });
  await runtime.start();
  try {
    const created = await runtime.bridge
      .sessionsCreate({ agentId, metadata: flags.provider === undefined ? {} : { provider: flags.provider } })
      .catch((error: unknown) => {
        throw failureOf(error);
      });
    sessionId = created.sessionId;
    if (cancel.signal.aborted) return EXIT_INTERRUPTED;
    const runtimeParams = {
      ...(flags.model === undefined ? {} : { model: flags.model }),
      ...(flags.temperature === undefined ? {} : { temperature: flags.temperature }),
      ...(flags.maxTokens === undefined ? {} : { maxTokens: flags.maxTokens }),
    };
    const provider = runtime.sessionStatus(sessionId).provider;
    const ignored = mockIgnores(provider, flags);
    if (ignored.length > 0) {
      spinner.stop();
      io.stderr.write(`troupe delegate: the offline mock provider ignores ${ignored.join(", ")} (${MOCK_HINT})\n`);
    }
    const callOptions = { signal: cancel.signal, ...(stream ? { onDelta: write } : {}) };
    const reply = await runtime.bridge.sessionsPrompt({ sessionId, prompt, runtimeParams }, callOptions).catch((error: unknown) => {
      if (cancel.signal.aborted) return undefined;
      throw failureOf(error);
    });
    if (reply === undefined) {
      if (!lastWritten.endsWith("\n")) io.stdout.write("\n");
      io.stderr.write("— cancelled\n");
      return EXIT_INTERRUPTED;
    }
    if (!stream) write(reply.text);
    if (!lastWritten.endsWith("\n")) io.stdout.write("\n");
    io.stderr.write(usageLine(reply, provider));
    return cancel.signal.aborted ? EXIT_INTERRUPTED : EXIT_OK;
  } finally {
    spinner.stop();
    if (sessionId !== undefined) await runtime.bridge.sessionsClose({ sessionId }).catch(() => undefined);
    await runtime.stop();
    stopHandling();
  }
}
