/**
 * Tool events beyond the hub: the stream's filters select them, and the log writes them.
 */
import { describe, expect, it } from "vitest";
import { mock, type RuntimeEvent } from "../../src/index.js";
import { keysOf, matchesFilter, parseEventQuery } from "../../src/events/event-filter.js";
import { RouteQuery } from "../../src/server/http-server.js";
import { LOG_LEVELS, logRuntimeEvents, type EventLogger, type LogLevel } from "../../src/events/event-log.js";
import { failingTool, startToolRuntime, weatherTool } from "./support.js";

interface Line {
  level: LogLevel;
  fields: Record<string, unknown>;
  message: string;
}

function recordingLogger(threshold: LogLevel): EventLogger & { lines: Line[] } {
  const lines: Line[] = [];
  const enabled = (level: string): boolean => LOG_LEVELS.indexOf(level as LogLevel) >= LOG_LEVELS.indexOf(threshold);
  const write = (level: LogLevel) => (fields: Record<string, unknown>, message: string) => {
    if (enabled(level)) lines.push({ level, fields, message });
  };
  return { lines, isLevelEnabled: enabled, trace: write("trace"), debug: write("debug"), info: write("info"), warn: write("warn"), error: write("error") };
}

const callingWeather = () => mock({ script: [{ toolCalls: [{ name: "get_weather", args: { city: "Paris" } }] }, { text: "Done." }] });

describe("tool events on the stream and in the log", () => {
  it("are selected by types=tool.*, by their session and by their agent", async () => {
    const { runtime, events } = await startToolRuntime(callingWeather(), [weatherTool()]);
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Weather?" });

    const selected = (query: string): string[] => {
      const { filter } = parseEventQuery(new RouteQuery(query));
      return events.filter((event: RuntimeEvent) => matchesFilter(filter, keysOf(event))).map((event) => event.type);
    };

    expect(selected("types=tool.*")).toEqual(["tool.called", "tool.completed"]);
    expect(selected(`types=tool.*&session=${sessionId}&agent=assistant`)).toEqual(["tool.called", "tool.completed"]);
    expect(selected("types=tool.*&session=another")).toEqual([]);
    expect(selected("types=tool.*&agent=troupe://assistant")).toEqual(["tool.called", "tool.completed"]);
  });

  it("are logged: a call at debug, a completed call at info, a failed one at warn", async () => {
    const { runtime } = await startToolRuntime(callingWeather(), [failingTool("the weather service is down")]);
    const logger = recordingLogger("debug");
    logRuntimeEvents(runtime, logger);
    const { sessionId } = await runtime.bridge.sessionsCreate({});
    const { requestId } = await runtime.bridge.sessionsPrompt({ sessionId, prompt: "Weather?" });

    const toolLines = logger.lines.filter((line) => String(line.fields.event).startsWith("tool."));
    expect(toolLines).toEqual([
      {
        level: "debug",
        message: "tool get_weather called",
        fields: { event: "tool.called", sessionId, requestId, agentId: "assistant", tool: "get_weather", callId: "call_1_1", round: 1 },
      },
      {
        level: "warn",
        message: "tool get_weather failed (threw): the weather service is down",
        fields: { event: "tool.completed", sessionId, requestId, agentId: "assistant", tool: "get_weather", callId: "call_1_1", ok: false, durationMs: 0 },
      },
    ]);
  });

  it("log a successful call at info", async () => {
    const { runtime } = await startToolRuntime(callingWeather(), [weatherTool()]);
    const logger = recordingLogger("info");
    logRuntimeEvents(runtime, logger);

    await runtime.bridge.tasksDelegate({ prompt: "Weather?" });

    expect(logger.lines.filter((line) => String(line.fields.event).startsWith("tool.")).map(({ level, message }) => [level, message])).toEqual([
      ["info", "tool get_weather completed"],
    ]);
  });
});
