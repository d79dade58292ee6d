/**
 * What troupe adds to a model call: `tasks_delegate` (create a session, one prompt, close it) against the
 * same call made directly, in the same run, interleaved in batches so that load falls on both alike.
 *
 * - OpenAI, non-streaming and streaming: `runtime.bridge.tasksDelegate` to a `MultiProviderCompanionAgent`
 *   whose `openAI()` provider talks to a fake Chat Completions server in a process of its own
 *   (bench/fake-openai.ts), against `client.chat.completions.create` of the `openai` SDK on the same server.
 * - ACP worker: `tasksDelegate` to a worker running test/fixtures/acp-agent.mjs, against the ACP SDK's
 *   client calling `session/new` and `session/prompt` on another process of the same agent (what a worker's
 *   delegation does on the wire).
 *
 * Target (issue 13): troupe ÷ direct ≤ 1.05 (median of batches). Run alone: `node --import tsx bench/delegation.bench.ts`.
 */
import * as acp from "@agentclientprotocol/sdk";
import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";
import OpenAI from "openai";
import { createMultiProviderAgent, createRuntime, openAI, type Runtime } from "../src/index.js";
import { fixtureWorker, FIXTURE_AGENT } from "../test/support/workers.js";
import { FAKE_ANSWER, startFakeOpenAI } from "./fake-openai.js";
import { Batches, fullOrQuick, progress, settle, type Cost } from "./measure.js";

/** The target of issue 13: a delegation costs at most this times the direct call. */
export const DELEGATION_MAX_RATIO = 1.05;
/** Calls per timed batch, batches per path and round. */
const BATCH = fullOrQuick(20, 4);
const ROUNDS = fullOrQuick(40, 2);
const WARMUP_CALLS = fullOrQuick(300, 10);
const PROMPT = "Say hello.";
const MODEL = "bench-model";

/** One path timed directly and through troupe. */
export interface DelegationCost {
  path: string;
  /** What the baseline is. */
  direct: Cost;
  troupe: Cost;
  /** troupe ÷ direct, medians. */
  ratio: number;
  /** troupe − direct, medians: what troupe adds per call. */
  overheadMicros: number;
}

/** Everything the delegation bench measures. */
export type DelegationBenchResult = DelegationCost[];

type Call = () => Promise<unknown>;

function check(text: string, expected: string): void {
  if (text !== expected) throw new Error(`the bench got ${JSON.stringify(text)}, expected ${JSON.stringify(expected)}`);
}

/** Times `direct` and `troupe` in interleaved batches, each round in the other order. */
async function compare(path: string, direct: Call, troupe: Call): Promise<DelegationCost> {
  for (let index = 0; index < WARMUP_CALLS; index += 1) {
    await direct();
    await troupe();
  }
  await settle();
  const directBatches = new Batches(0);
  const troupeBatches = new Batches(0);
  for (let round = 0; round < ROUNDS; round += 1) {
    const order: Array<[Batches, Call]> = [
      [directBatches, direct],
      [troupeBatches, troupe],
    ];
    if (round % 2 === 1) order.reverse();
    for (const [batches, call] of order) await batches.time(BATCH, call);
  }
  const directCost = await directBatches.cost();
  const troupeCost = await troupeBatches.cost();
  const result = {
    path,
    direct: directCost,
    troupe: troupeCost,
    ratio: troupeCost.medianMicros / directCost.medianMicros,
    overheadMicros: troupeCost.medianMicros - directCost.medianMicros,
  };
  progress(
    `  ${path}: direct ${directCost.medianMicros.toFixed(0)} µs, troupe ${troupeCost.medianMicros.toFixed(0)} µs per call (× ${result.ratio.toFixed(2)}, +${result.overheadMicros.toFixed(0)} µs)`,
  );
  return result;
}

async function openAIPaths(): Promise<DelegationCost[]> {
  const server = await startFakeOpenAI();
  const provider = (stream: boolean) => openAI({ baseURL: server.baseURL, credentials: { apiKey: "bench" }, models: [MODEL], stream, maxRetries: 0 });
  const runtime = createRuntime({
    agents: [
      createMultiProviderAgent({ id: "openai-json", providers: [provider(false)] }),
      createMultiProviderAgent({ id: "openai-stream", providers: [provider(true)] }),
    ],
  });
  await runtime.start();
  const client = new OpenAI({ baseURL: server.baseURL, apiKey: "bench", maxRetries: 0 });
  const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: PROMPT }];
  try {
    const json = await compare(
      "OpenAI, non-streaming",
      async () => {
        const completion = await client.chat.completions.create({ model: MODEL, messages });
        check(completion.choices[0]?.message.content ?? "", FAKE_ANSWER);
      },
      async () => check((await runtime.bridge.tasksDelegate({ agentId: "openai-json", prompt: PROMPT })).text, FAKE_ANSWER),
    );
    const streamed = await compare(
      "OpenAI, streaming",
      async () => {
        const stream = await client.chat.completions.create({ model: MODEL, messages, stream: true, stream_options: { include_usage: true } });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
        check(text, FAKE_ANSWER);
      },
      async () => check((await runtime.bridge.tasksDelegate({ agentId: "openai-stream", prompt: PROMPT })).text, FAKE_ANSWER),
    );
    return [json, streamed];
  } finally {
    await runtime.stop();
    await server.stop();
  }
}

/** The fixture agent spoken to with the ACP SDK alone: `session/new` and `session/prompt` per call. */
async function directAcpAgent(): Promise<{ delegate(prompt: string): Promise<string>; stop(): Promise<void> }> {
  const child = spawn(process.execPath, [FIXTURE_AGENT], { stdio: ["pipe", "pipe", "inherit"] });
  const chunks = new Map<string, string>();
  const connection = acp
    .client({ name: "bench" })
    .onNotification(acp.methods.client.session.update, ({ params }) => {
      const { update } = params;
      if (update.sessionUpdate === "agent_message_chunk" && update.content.type === "text") {
        chunks.set(params.sessionId, (chunks.get(params.sessionId) ?? "") + update.content.text);
      }
    })
    .connect(acp.ndJsonStream(Writable.toWeb(child.stdin) as WritableStream<Uint8Array>, Readable.toWeb(child.stdout) as ReadableStream<Uint8Array>));
  await connection.agent.request(acp.methods.agent.initialize, { protocolVersion: acp.PROTOCOL_VERSION, clientCapabilities: {} });
  return {
    delegate: async (prompt) => {
      const { sessionId } = await connection.agent.request(acp.methods.agent.session.new, { cwd: process.cwd(), mcpServers: [] });
      chunks.set(sessionId, "");
      await connection.agent.request(acp.methods.agent.session.prompt, { sessionId, prompt: [{ type: "text", text: prompt }] });
      const text = chunks.get(sessionId) ?? "";
      chunks.delete(sessionId);
      return text;
    },
    stop: async () => {
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function acpPath(): Promise<DelegationCost> {
  const direct = await directAcpAgent();
  const runtime: Runtime = createRuntime({ workers: [fixtureWorker("worker")] });
  await runtime.start();
  const expected = `Echo: ${PROMPT}`;
  try {
    return await compare(
      "ACP worker (fixture agent)",
      async () => check(await direct.delegate(PROMPT), expected),
      async () => check((await runtime.bridge.tasksDelegate({ agentId: "worker", prompt: PROMPT })).text, expected),
    );
  } finally {
    await runtime.stop();
    await direct.stop();
  }
}

/** Runs the delegation bench. */
export async function runDelegationBench(): Promise<DelegationBenchResult> {
  progress(`delegation: tasks_delegate against the direct call, ${ROUNDS} interleaved batches of ${BATCH} per path`);
  return [...(await openAIPaths()), await acpPath()];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const results = await runDelegationBench();
  for (const result of results) {
    console.log(
      `${result.path.padEnd(28)} direct ${result.direct.medianMicros.toFixed(0).padStart(5)} µs   troupe ${result.troupe.medianMicros.toFixed(0).padStart(5)} µs   × ${result.ratio.toFixed(2)}   +${result.overheadMicros.toFixed(0)} µs`,
    );
  }
  process.exit(0);
}
