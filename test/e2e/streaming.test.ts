/**
 * Streamed deltas of a task to a runtime agent (`metadata.stream: true`): gathered per turn of the event loop,
 * held while the sender's queue is busy, and never in the way of the final answer.
 */
import { afterEach, describe, expect, it } from "vitest";
import { createMultiProviderAgent, mock, type Agent, type MessageEnvelope } from "../../src/index.js";
import { call, connect, envelope, rawConnect, register, until } from "../bus/support.js";
import { startRuntimeBus } from "./support.js";

const CLIENT = "codex://client";

const warnings: Error[] = [];
const onWarning = (warning: Error): void => {
  warnings.push(warning);
};
process.on("warning", onWarning);
afterEach(() => {
  warnings.length = 0;
});

/** The text of the `status_update`s among `messages`, in order. */
function deltasOf(messages: MessageEnvelope[]): string[] {
  return messages.filter((message) => message.message_type === "status_update").map((message) => message.payload["delta"] as string);
}

describe("streamed deltas", () => {
  it("sends a 20,000-word echo as a few updates that add up to the answer, and the answer arrives", async () => {
    const echo = createMultiProviderAgent({ id: "echo", providers: [mock()] });
    const { bus } = await startRuntimeBus({ agents: [echo] }, { maxQueuedPerAgent: 50, maxInFlightPerAgent: 10 });
    await register(bus, CLIENT);
    const client = await connect(bus, CLIENT);
    const prompt = Array.from({ length: 20_000 }, (_, index) => `w${index}`).join(" ");

    await client.client.send({ recipient: "troupe://echo", message_type: "task_request", payload: { prompt }, metadata: { stream: true } });
    await until(() => client.received.some((message) => message.message_type === "task_response"), 10_000);

    const answer = client.received.find((message) => message.message_type === "task_response")!;
    expect(answer.payload["text"]).toBe(`Echo: ${prompt}`);
    const deltas = deltasOf(client.received);
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.length).toBeLessThanOrEqual(2);
    expect(deltas.join("")).toBe(`Echo: ${prompt}`);
    expect(client.received.at(-1)).toBe(answer);
    expect(warnings.filter((warning) => warning.name === "TroupeBusWarning")).toEqual([]);
  });

  it("holds deltas while the sender's queue is busy, so the final answer always finds room", async () => {
    const text = Array.from({ length: 10 }, (_, index) => `part${index} `);
    const streamer: Agent = {
      id: "streamer",
      prompt: async (ctx) => {
        for (const delta of text) {
          ctx.emit(delta);
          await new Promise((resolve) => setImmediate(resolve));
        }
        return { text: text.join("") };
      },
    };
    // A sender that acks nothing until the test says so: one message on its socket, four in its queue at most.
    const { bus } = await startRuntimeBus({ agents: [streamer] }, { maxInFlightPerAgent: 1, maxQueuedPerAgent: 4 });
    await register(bus, CLIENT);
    const raw = await rawConnect(bus, CLIENT);

    expect(
      (await call(bus, "POST", "/messages/send", envelope(CLIENT, "troupe://streamer", { payload: { prompt: "go" }, metadata: { stream: true } }))).status,
    ).toBe(202);
    await until(() => raw.frames.length === 1);
    const acked = new Set<string>();
    await until(() => {
      for (const frame of raw.frames) {
        if (acked.has(frame.message_id)) continue;
        acked.add(frame.message_id);
        raw.ack(frame.message_id);
      }
      return raw.frames.some((frame) => frame.message_type === "task_response");
    });

    expect(raw.frames.at(-1)).toMatchObject({ message_type: "task_response", payload: { text: text.join("") } });
    expect(deltasOf(raw.frames).join("")).toBe(text.join(""));
    expect(deltasOf(raw.frames).length).toBeLessThan(text.length);
    expect(warnings.filter((warning) => warning.name === "TroupeBusWarning")).toEqual([]);
  });

  it("does not stream to a sync sender, which waits for the answer alone", async () => {
    const echo = createMultiProviderAgent({ id: "echo", providers: [mock({ script: [{ text: "one two" }] })] });
    const { bus } = await startRuntimeBus({ agents: [echo] });

    const answer = await call(
      bus,
      "POST",
      "/messages/send",
      envelope("cli://once", "troupe://echo", { payload: { prompt: "hi" }, metadata: { stream: true }, routing: { delivery_mode: "sync" } }),
    );

    expect(answer.body).toMatchObject({ status: "delivered", response: { message_type: "task_response", payload: { text: "one two" } } });
  });
});
