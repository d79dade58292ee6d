/**
 * Loading a folder of agent.yaml files: every field checked, and every problem a CONFIG error naming its file,
 * line and field, as a person fixing the file needs it.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BridgeError, loadAgentTeam, MAX_AGENT_FILE_BYTES, type LoadTeamOptions } from "../../../src/index.js";
import { folderWith } from "./support.js";

const OPTIONS: LoadTeamOptions = { toolNames: ["calculate", "word_count", "current_time"], providerIds: ["mock", "openai"] };

function loadError(folder: string, options: LoadTeamOptions = OPTIONS): BridgeError {
  try {
    loadAgentTeam(folder, options);
  } catch (error) {
    expect(error).toBeInstanceOf(BridgeError);
    return error as BridgeError;
  }
  throw new Error(`${folder} loaded without an error`);
}

describe("loadAgentTeam: the table of broken files", () => {
  // Each file alone in its folder; the message after `<folder>/broken.yaml:`.
  const cases: Array<{ problem: string; text: string; line: number; field?: string; message: string }> = [
    {
      problem: "an unknown tool",
      text: "name: backend\ndescription: Builds the APIs\ncapabilities:\n  - name: deploy\n    prompt: Deploy it.\n    tools:\n      - calculate\n      - deploy\n",
      line: 8,
      field: "capabilities[0].tools[1]",
      message: 'unknown tool "deploy" (known: calculate, current_time, word_count)',
    },
    {
      problem: "an unknown field",
      text: "name: backend\nroutng: delegate\n",
      line: 2,
      field: "routng",
      message: 'unknown field "routng" (fields: name, default, description, provider, model, system_prompt, routing, capabilities, session)',
    },
    {
      problem: "an unknown field of a capability",
      text: "name: backend\ncapabilities:\n  - name: deploy\n    tool: [calculate]\n",
      line: 4,
      field: "capabilities[0].tool",
      message: 'unknown field "tool" (fields: name, prompt, tools)',
    },
    {
      problem: "a bad routing",
      text: "name: backend\nrouting: sometimes\n",
      line: 2,
      field: "routing",
      message: 'expected one of auto, inline, delegate (got "sometimes")',
    },
    { problem: "a missing name", text: "description: nameless\nrouting: auto\n", line: 1, field: "name", message: "missing (required)" },
    {
      problem: "a name with a space",
      text: "name: back end\n",
      line: 1,
      field: "name",
      message: 'expected letters, digits, "_", "-" or ".", optionally after a framework:// prefix (got "back end")',
    },
    { problem: "a model left empty", text: "name: backend\nmodel:\n", line: 2, field: "model", message: "expected text, got nothing" },
    {
      problem: "default that is not a boolean",
      text: "name: backend\ndefault: yes\n",
      line: 2,
      field: "default",
      message: 'expected true or false, got "yes"',
    },
    {
      problem: "an unknown provider",
      text: "name: backend\nprovider: anthropic\n",
      line: 2,
      field: "provider",
      message: 'no provider "anthropic" is available (available: mock, openai)',
    },
    {
      problem: "a trigger out of its enum",
      text: "name: backend\nsession:\n  trigger: sometimes\n",
      line: 3,
      field: "session.trigger",
      message: 'expected one of mention, always (got "sometimes")',
    },
    {
      problem: "isolation out of its enum",
      text: "name: backend\nsession:\n  isolation: thread\n",
      line: 3,
      field: "session.isolation",
      message: 'expected one of shared, per_thread (got "thread")',
    },
    {
      problem: "a zero idle timeout",
      text: "name: backend\nsession:\n  idle_timeout_minutes: 0\n",
      line: 3,
      field: "session.idle_timeout_minutes",
      message: "expected a number of minutes above 0",
    },
    {
      problem: "a fractional history window",
      text: "name: backend\nsession:\n  history_window: 2.5\n",
      line: 3,
      field: "session.history_window",
      message: "expected a whole number, got 2.5",
    },
    {
      problem: "tools that are not a list",
      text: "name: backend\ncapabilities:\n  - name: x\n    tools: calculate\n",
      line: 4,
      field: "capabilities[0].tools",
      message: 'expected a list, got "calculate"',
    },
    { problem: "a file that is a list", text: "- name: backend\n", line: 1, field: "(file)", message: "expected a mapping, got a list" },
    { problem: "an empty file", text: "", line: 1, field: "(file)", message: "empty: an agent file needs at least a name" },
    {
      problem: "a capability named twice",
      text: "name: backend\ncapabilities:\n  - name: x\n  - name: x\n",
      line: 4,
      field: "capabilities[1].name",
      message: 'duplicate capability "x"',
    },
    {
      problem: "an inline agent with its own model",
      text: "name: backend\nrouting: inline\nmodel: gpt-4o\n",
      line: 3,
      field: "model",
      message: "an inline agent runs on the default agent's model: remove model, or use routing: delegate",
    },
    { problem: "a key written twice (YAML)", text: "name: backend\nname: frontend\n", line: 2, message: "invalid YAML: Map keys must be unique" },
    {
      problem: "an unclosed flow list (YAML)",
      text: "name: backend\ncapabilities:\n  - name: x\n    tools: [calculate\n",
      line: 5,
      message: expect.stringMatching(/^invalid YAML: /),
    },
    {
      problem: "two documents in one file (YAML)",
      text: "name: backend\n---\nname: frontend\n",
      line: 2,
      message: "invalid YAML: one agent per file: this file holds several YAML documents (---)",
    },
  ];

  for (const { problem, text, line, field, message } of cases) {
    it(`names the file, line ${line} and field of ${problem}`, () => {
      const folder = folderWith({ "broken.yaml": text });
      const file = join(folder, "broken.yaml");

      const error = loadError(folder);

      expect(error.type).toBe("CONFIG");
      if (typeof message === "string")
        expect(error.message).toBe(field === undefined ? `${file}:${line}: ${message}` : `${file}:${line}: ${field}: ${message}`);
      expect(error.details).toMatchObject({ file, line, message, ...(field === undefined ? {} : { field }) });
    });
  }

  it("names every problem of every file, one per line, in file and line order", () => {
    const folder = folderWith({
      "a.yaml": "name: a\ndefault: true\nroutng: auto\nmodel: 3\n",
      "b.yaml": "name: b\ncapabilities:\n  - name: x\n    tools: [deploy]\n",
    });

    const error = loadError(folder);

    expect(error.message.split("\n")).toEqual([
      `${join(folder, "a.yaml")}:3: routng: unknown field "routng" (fields: name, default, description, provider, model, system_prompt, routing, capabilities, session)`,
      `${join(folder, "a.yaml")}:4: model: expected text, got 3`,
      `${join(folder, "b.yaml")}:4: capabilities[0].tools[0]: unknown tool "deploy" (known: calculate, current_time, word_count)`,
    ]);
    expect(error.details.issues).toHaveLength(3);
  });
});

describe("loadAgentTeam: the folder", () => {
  it("refuses an agent name used by two files, naming both places", () => {
    const folder = folderWith({ "a.yaml": "name: backend\ndefault: true\n", "b.yaml": "# the same agent again\nname: backend\n" });

    expect(loadError(folder).message).toBe(`${join(folder, "b.yaml")}:2: name: duplicate agent "backend" (also in ${join(folder, "a.yaml")}:1)`);
  });

  it("refuses a name that a built-in agent or a worker holds", () => {
    const folder = folderWith({ "assistant.yaml": "name: assistant\n" });

    const error = loadError(folder, { ...OPTIONS, takenIds: new Map([["assistant", "a built-in agent"]]) });

    expect(error.message).toBe(`${join(folder, "assistant.yaml")}:1: name: agent "assistant" exists already (a built-in agent)`);
  });

  it("refuses a second default agent at its default: line", () => {
    const folder = folderWith({ "a.yaml": "name: a\ndefault: true\n", "b.yaml": "name: b\ndescription: also\ndefault: true\n" });

    expect(loadError(folder).message).toBe(`${join(folder, "b.yaml")}:3: default: a (${join(folder, "a.yaml")}:1) is the default agent already`);
  });

  it("asks for a default agent when several agents mark none", () => {
    const folder = folderWith({ "a.yaml": "name: a\n", "b.yaml": "name: b\n" });

    expect(loadError(folder).message).toBe(`${folder}: no default agent: mark one with default: true (agents: a, b)`);
  });

  it("makes a folder's only agent its default", () => {
    const folder = folderWith({ "solo.yaml": "name: solo\n" });

    expect(loadAgentTeam(folder, OPTIONS)).toMatchObject({ defaultAgentId: "solo", defaultReason: `the only agent of ${folder}` });
  });

  it("says so when the folder is missing, is a file, or holds no agent file", () => {
    const folder = folderWith({ "notes.txt": "not an agent", ".hidden.yaml": "name: hidden\n" });
    mkdirSync(join(folder, "nested.yaml"));

    expect(loadError(join(folder, "missing")).message).toBe(`${join(folder, "missing")}: no such folder`);
    expect(loadError(join(folder, "notes.txt")).message).toBe(`${join(folder, "notes.txt")}: not a folder`);
    expect(loadError(folder).message).toBe(`${folder}: no agent files (*.yaml) in this folder`);
  });

  it("refuses a file over the size bound without parsing it", () => {
    const folder = folderWith({ "big.yaml": `name: big\nsystem_prompt: ${"x".repeat(MAX_AGENT_FILE_BYTES)}\n` });

    expect(loadError(folder).message).toMatch(new RegExp(`^${join(folder, "big.yaml")}: too large: \\d+ bytes \\(at most ${MAX_AGENT_FILE_BYTES}\\)$`));
  });

  it("reads every field into the agent, .yml files too, trimming prompts and defaulting routing to auto", () => {
    const folder = folderWith({
      "backend.yml": [
        "name: opencode://backend",
        "default: true",
        "description: Builds the APIs",
        "provider: openai",
        "model: gpt-4o",
        "system_prompt: |",
        "  You build APIs.",
        "capabilities:",
        "  - name: capacity",
        "    prompt: |",
        "      Estimate with calculate.",
        "    tools: [calculate, calculate, word_count]",
        "session:",
        "  trigger: always",
        "  idle_timeout_minutes: 0.5",
        "  isolation: per_thread",
        "  history_window: 12",
        "",
      ].join("\n"),
    });

    const team = loadAgentTeam(folder, OPTIONS);

    expect(team).toEqual({
      dir: folder,
      defaultAgentId: "opencode://backend",
      defaultReason: "default: true",
      agents: [
        {
          id: "opencode://backend",
          file: join(folder, "backend.yml"),
          line: 1,
          isDefault: true,
          description: "Builds the APIs",
          provider: "openai",
          model: "gpt-4o",
          systemPrompt: "You build APIs.",
          routing: "auto",
          capabilities: [{ name: "capacity", prompt: "Estimate with calculate.", tools: ["calculate", "word_count"] }],
          conversation: { trigger: "always", idleTimeoutMinutes: 0.5, isolation: "per_thread", historyWindow: 12 },
        },
      ],
    });
  });
});
