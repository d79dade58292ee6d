/**
 * The seed's routing heuristics at their edges: `auto` inlines an agent iff it has at most 3 tools, no
 * `model`, and capability prompts under 2000 characters together; `inline` and `delegate` are taken as given.
 */
import { describe, expect, it } from "vitest";
import { decideRouting, type AgentSpec } from "../../../src/index.js";

type Routed = Pick<AgentSpec, "routing" | "model" | "capabilities">;

/** An `auto` agent with these tools spread over capabilities, and prompts of these lengths. */
function agent({
  tools = [] as string[],
  prompts = [] as number[],
  model,
  routing = "auto",
}: {
  tools?: string[];
  prompts?: number[];
  model?: string;
  routing?: Routed["routing"];
}): Routed {
  const capabilities = prompts.map((length, index) => ({ name: `c${index}`, prompt: "p".repeat(length), tools: index === 0 ? tools : [] }));
  if (capabilities.length === 0) capabilities.push({ name: "c0", prompt: "", tools });
  return { routing, capabilities, ...(model === undefined ? {} : { model }) };
}

describe("decideRouting", () => {
  it("inlines an auto agent with 3 tools, no model and 1999 characters of prompts, saying why", () => {
    expect(decideRouting(agent({ tools: ["a", "b", "c"], prompts: [1000, 999] }))).toEqual({
      mode: "inline",
      reason: "3 tools (≤ 3), no model, capability prompts 1999 characters (< 2000)",
    });
  });

  it("delegates an auto agent with a fourth tool: 4 tools (> 3)", () => {
    expect(decideRouting(agent({ tools: ["a", "b", "c", "d"] }))).toEqual({ mode: "delegate", reason: "4 tools (> 3)" });
  });

  it("delegates an auto agent whose prompts reach 2000 characters together", () => {
    expect(decideRouting(agent({ tools: ["a"], prompts: [1000, 1000] }))).toEqual({ mode: "delegate", reason: "capability prompts 2000 characters (≥ 2000)" });
  });

  it("delegates an auto agent that overrides the model, however small", () => {
    expect(decideRouting(agent({ model: "gpt-4o-mini" }))).toEqual({ mode: "delegate", reason: "model gpt-4o-mini" });
  });

  it("names every failed test when several fail", () => {
    expect(decideRouting(agent({ tools: ["a", "b", "c", "d", "e"], prompts: [2500], model: "claude-sonnet-4" })).reason).toBe(
      "5 tools (> 3); model claude-sonnet-4; capability prompts 2500 characters (≥ 2000)",
    );
  });

  it("counts a tool named by two capabilities once", () => {
    const twice: Routed = {
      routing: "auto",
      capabilities: [
        { name: "one", prompt: "", tools: ["a", "b"] },
        { name: "two", prompt: "", tools: ["b", "c"] },
      ],
    };
    expect(decideRouting(twice)).toMatchObject({ mode: "inline", reason: expect.stringMatching(/^3 tools/) });
  });

  it("counts characters, not UTF-16 units: 1999 emoji are 1999 characters", () => {
    const emoji: Routed = { routing: "auto", capabilities: [{ name: "e", prompt: "🙂".repeat(1999), tools: [] }] };
    expect(decideRouting(emoji)).toEqual({ mode: "inline", reason: "0 tools (≤ 3), no model, capability prompts 1999 characters (< 2000)" });
  });

  it("takes an explicit inline or delegate as it is, whatever the heuristics would say", () => {
    expect(decideRouting(agent({ routing: "inline", tools: ["a", "b", "c", "d"], prompts: [5000] }))).toEqual({ mode: "inline", reason: "routing: inline" });
    expect(decideRouting(agent({ routing: "delegate" }))).toEqual({ mode: "delegate", reason: "routing: delegate" });
  });
});
