/**
 * A fake OpenAI Chat Completions server for the delegation bench, run in a process of its own (as a local
 * vLLM or Ollama would be): `POST /v1/chat/completions` answers at once, JSON for a plain request and SSE
 * chunks ending in `data: [DONE]` for `stream: true`. It answers every request alike, so that the direct SDK
 * call and the call through troupe wait on the same server.
 */
import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

/** The answer's text, and the pieces it is streamed in. */
export const FAKE_ANSWER_PIECES = ["Hello", " from", " the", " fake", " server."];
export const FAKE_ANSWER = FAKE_ANSWER_PIECES.join("");

const BASE = { id: "chatcmpl-bench", created: 1_700_000_000, system_fingerprint: "fp_bench" };
const USAGE = { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 };

function completion(model: string): string {
  return JSON.stringify({
    ...BASE,
    model,
    object: "chat.completion",
    choices: [{ index: 0, message: { role: "assistant", content: FAKE_ANSWER, refusal: null }, logprobs: null, finish_reason: "stop" }],
    usage: USAGE,
  });
}

function chunks(model: string): string[] {
  const chunk = (delta: Record<string, unknown>, finishReason: string | null, usage: unknown = null): string =>
    `data: ${JSON.stringify({ ...BASE, model, object: "chat.completion.chunk", choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }], usage })}\n\n`;
  return [
    chunk({ role: "assistant", content: "" }, null),
    ...FAKE_ANSWER_PIECES.map((piece) => chunk({ content: piece }, null)),
    chunk({}, "stop"),
    `data: ${JSON.stringify({ ...BASE, model, object: "chat.completion.chunk", choices: [], usage: USAGE })}\n\n`,
    "data: [DONE]\n\n",
  ];
}

function serve(): void {
  const server = createServer((req, res) => {
    const body: Buffer[] = [];
    req.on("data", (chunk: Buffer) => body.push(chunk));
    req.on("end", () => {
      const request = JSON.parse(Buffer.concat(body).toString("utf8")) as { model?: string; stream?: boolean };
      const model = request.model ?? "bench-model";
      if (request.stream !== true) {
        res.writeHead(200, { "content-type": "application/json" }).end(completion(model));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      for (const frame of chunks(model)) res.write(frame);
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as AddressInfo).port }));
  process.on("disconnect", () => process.exit(0));
}

/** The fake in a child process, and its base URL (`http://127.0.0.1:<port>/v1`). */
export interface FakeOpenAI {
  baseURL: string;
  stop(): Promise<void>;
}

/** Starts the fake in a process of its own. */
export async function startFakeOpenAI(): Promise<FakeOpenAI> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--serve"], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const [message] = (await once(child, "message")) as [{ port: number }];
  return {
    baseURL: `http://127.0.0.1:${message.port}/v1`,
    stop: async () => {
      const exited = once(child, "exit");
      child.disconnect();
      await exited;
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes("--serve")) serve();
