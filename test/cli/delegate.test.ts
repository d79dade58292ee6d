/**
 * `troupe delegate` run as a person does, against the fake OpenAI API: streaming, usage, Ctrl-C, bad usage.
 */
import { describe, expect, it } from "vitest";
import { chatError, chatReply, startOpenAIFake } from "../fakes/openai-fake.js";
import { collect, exitCodeOf, run, troupe } from "./support.js";

describe("troupe delegate", () => {
  const openAIEnv = (baseURL: string) => ({ OPENAI_API_KEY: "sk-delegate-test", OPENAI_BASE_URL: baseURL });

  it("streams the assistant's OpenAI answer to stdout, prints the usage on stderr, and exits 0", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatReply({ deltas: ["Hello", " from", " the fake"], usage: { prompt_tokens: 12, completion_tokens: 5 } }));
    const { code, stdout, stderr } = await run(
      ["delegate", "assistant", "Say hi", "--model", "gpt-4o-mini", "--temperature", "0.2", "--max-tokens", "50"],
      openAIEnv(fake.baseURL),
    );
    expect({ code, stdout }).toEqual({ code: 0, stdout: "Hello from the fake\n" });
    expect(stderr).toBe("— stop: end_turn · tokens: 12 in, 5 out · provider: openai\n");
    expect(fake.lastRequest.body).toMatchObject({ model: "gpt-4o-mini", temperature: 0.2, max_tokens: 50, stream: true });
    expect(fake.lastRequest.body.messages.at(-1)).toEqual({ role: "user", content: "Say hi" });
  });

  it("writes each token as it comes; Ctrl-C cancels the prompt, whose HTTP request stops, and exits 130", async () => {
    const fake = await startOpenAIFake();
    // The provider streams two pieces, then never finishes: only streaming can show them.
    fake.enqueue(chatReply({ deltas: ["Partial ", "answer"], hangAfterDeltas: true }));
    const child = troupe(["delegate", "assistant", "Tell me everything"], openAIEnv(fake.baseURL));
    const stdout = collect(child.stdout);
    const stderr = collect(child.stderr);
    await stdout.until(/Partial answer/);
    child.kill("SIGINT");
    expect(await exitCodeOf(child)).toBe(130);
    await fake.lastRequest.clientClosed;
    expect(stdout.text()).toBe("Partial answer\n");
    expect(stderr.text()).toContain("— cancelled");
  });

  it("prints the answer at the end with --no-stream, and reads the prompt from stdin with -", async () => {
    const child = troupe(["delegate", "mock", "-", "--no-stream"]);
    const stdout = collect(child.stdout);
    child.stdin.end("from stdin");
    expect(await exitCodeOf(child)).toBe(0);
    expect(stdout.text()).toBe("Echo: from stdin\n");
  });

  it("says on stderr that the offline mock provider ignores --model, --temperature and --max-tokens, and answers", async () => {
    const [assistant, plain] = await Promise.all([
      run(["delegate", "assistant", "hi", "--model", "gpt-4o", "--temperature", "0.5", "--max-tokens", "9"]),
      run(["delegate", "assistant", "hi"]),
    ]);
    expect(assistant).toEqual({
      code: 0,
      stdout: "Echo: hi\n",
      stderr:
        "troupe delegate: the offline mock provider ignores --model gpt-4o, --temperature, --max-tokens (set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY for a real model)\n" +
        "— stop: end_turn · tokens: 1 in, 2 out · provider: mock\n",
    });
    expect(plain.stderr).toBe("— stop: end_turn · tokens: 1 in, 2 out · provider: mock\n");
  });

  it("exits 2 naming a bad flag, a missing argument, an unknown agent, an inlined one or an unknown provider", async () => {
    const [temperature, tokens, missing, agent, provider, inlined] = await Promise.all([
      run(["delegate", "assistant", "hi", "--temperature", "3"]),
      run(["delegate", "assistant", "hi", "--max-tokens", "lots"]),
      run(["delegate", "assistant"]),
      run(["delegate", "nobody", "hi"]),
      run(["delegate", "assistant", "hi", "--provider", "gemini"]),
      run(["delegate", "frontend", "hi"]),
    ]);
    expect(temperature).toMatchObject({
      code: 2,
      stdout: "",
      stderr: expect.stringContaining("option '--temperature <number>' argument '3' is invalid. expected a number from 0 to 2."),
    });
    expect(tokens).toMatchObject({
      code: 2,
      stderr: expect.stringContaining("option '--max-tokens <count>' argument 'lots' is invalid. expected a whole number above 0."),
    });
    expect(missing).toMatchObject({ code: 2, stderr: expect.stringContaining("missing required argument 'prompt'") });
    // Run from the project's folder: the bundled team of ./agents is there too.
    expect(agent).toMatchObject({
      code: 2,
      stderr: 'troupe delegate: no agent "nobody"; the agents are orchestrator, backend, reviewer, assistant, mock (troupe agents describes them)\n',
    });
    // The bundled frontend has no session of its own: its prompts and tools are the orchestrator's.
    expect(inlined).toMatchObject({ code: 2, stderr: "troupe delegate: frontend is inlined into orchestrator: delegate to orchestrator\n" });
    expect(provider).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/^troupe delegate: CONFIG: metadata\.provider: no provider gemini is registered with agent assistant \(registered: mock\)/),
    });
  });

  it("exits 1 saying which key to check when the provider refuses it", async () => {
    const fake = await startOpenAIFake();
    fake.enqueue(chatError(401, "Incorrect API key provided"));
    const { code, stdout, stderr } = await run(["delegate", "assistant", "hi"], openAIEnv(fake.baseURL));
    expect({ code, stdout }).toEqual({ code: 1, stdout: "" });
    expect(stderr).toMatch(/^troupe delegate: AUTH: .*Incorrect API key provided.*\(check the provider's key: OPENAI_API_KEY/m);
  });
});
