/**
 * Which agent a message mentions as `@<agentId>`.
 */
import { describe, expect, it } from "vitest";
import { firstMention } from "../../src/conversations/mentions.js";

const AGENTS = ["backend", "ops", "ops-lead", "opencode://reviewer", "Écrivain"];

describe("firstMention", () => {
  it.each([
    ["@backend add a route", "backend"],
    ["please, @backend.", "backend"],
    ["(@ops) restart", "ops"],
    ["ask @ops-lead first", "ops-lead"],
    ["@opencode://reviewer look", "opencode://reviewer"],
    ["merci @Écrivain", "Écrivain"],
    ["@nobody then @backend", "backend"],
    ["@ops and @backend", "ops"],
  ])("finds the agent in %j", (text, agentId) => {
    expect(firstMention(text, AGENTS)).toBe(agentId);
  });

  it.each([["write to me@backend.io"], ["@backend2 is not backend"], ["@@backend"], ["@Backend is another id"], ["no mention at all"], ["@"]])(
    "finds none in %j",
    (text) => {
      expect(firstMention(text, AGENTS)).toBeUndefined();
    },
  );
});
