/**
 * `MockProvider` ("mock"): the offline, scriptable engine of `mock.ts` behind the `Provider` interface, with
 * the same defaults, retries, timeouts and cancellation as the real providers.
 */
import type { ToolRequest } from "../tools/tool-call.js";
import { BaseProvider, type ProviderCall } from "./base-provider.js";
import { mockStepPicker, playMockStep, type MockScript, type MockStep } from "./mock.js";
import type { ProviderOptions, ProviderReply } from "./provider.js";
import type { UpstreamFailure } from "./upstream-errors.js";
import { messageOf } from "../errors.js";

/** Options of `MockProvider`: the common ones that apply offline, and the script. `maxRetries` defaults to 0. */
export interface MockProviderOptions extends Omit<ProviderOptions, "credentials" | "baseURL" | "stream"> {
  /** Steps in order (then echo), or a function choosing one per attempt; it sees the resolved RuntimeParams. */
  script?: MockScript;
}

/** Answers from a script: fixed replies, deltas, delays, hangs, errors, token counts and tool calls. */
export class MockProvider extends BaseProvider {
  private readonly pickStep: (ctx: ProviderCall["ctx"], tools?: ToolRequest) => MockStep;

  constructor(options: MockProviderOptions = {}) {
    const { script, ...common } = options;
    super({ kind: "mock", defaultModel: "mock-1", secrets: [], defaultMaxRetries: 0 }, common);
    this.pickStep = mockStepPicker(script);
  }

  protected override send({ ctx, params, signal, emit, tools }: ProviderCall): Promise<ProviderReply> {
    const attemptCtx = { ...ctx, runtimeParams: params, signal, emit };
    return playMockStep(this.pickStep(attemptCtx, tools), attemptCtx, this.clock, tools);
  }

  protected override classify(error: unknown): UpstreamFailure {
    return { kind: "other", message: messageOf(error) };
  }
}

/** A `MockProvider`, as `createMultiProviderAgent({ providers: [mock({...})] })` takes it. */
export function mock(options: MockProviderOptions = {}): MockProvider {
  return new MockProvider(options);
}
