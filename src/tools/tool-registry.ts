/**
 * `ToolRegistry`: tools by name, as agent.yaml names them and as an agent's model calls them.
 */
import { BridgeError } from "../errors.js";
import type { Tool } from "./tool.js";

/** Whether a value is a tool `defineTool` made (or an object of the same shape). */
function isTool(value: unknown): value is Tool {
  if (typeof value !== "object" || value === null) return false;
  const candidate = value as Partial<Tool>;
  return (
    typeof candidate.name === "string" &&
    typeof candidate.inputSchema === "object" &&
    typeof candidate.parse === "function" &&
    typeof candidate.execute === "function"
  );
}

/** Tools by name, in registration order. */
export class ToolRegistry {
  private readonly tools = new Map<string, Tool>();

  /** Registers tools given at once (as an agent's `tools` option does). */
  constructor(tools: readonly Tool[] = []) {
    for (const tool of tools) this.register(tool);
  }

  /**
   * Adds a tool. A name already registered is CONFIG: a model calls tools by name, so two of one name would
   * make its calls ambiguous. Anything not made by `defineTool` is CONFIG too.
   */
  register(tool: Tool): this {
    if (!isTool(tool))
      throw new BridgeError("CONFIG", "tools: not a tool: make it with defineTool({ name, description, parameters, execute })", { field: "tools" });
    if (this.tools.has(tool.name)) throw new BridgeError("CONFIG", `tools: duplicate tool name ${tool.name}`, { field: "tools", tool: tool.name });
    this.tools.set(tool.name, tool);
    return this;
  }

  /** The tool with this name, if registered. */
  get(name: string): Tool | undefined {
    return this.tools.get(name);
  }

  /** Whether a tool with this name is registered. */
  has(name: string): boolean {
    return this.tools.has(name);
  }

  /** Registered names, in registration order. */
  names(): string[] {
    return [...this.tools.keys()];
  }

  /** Registered tools, in registration order. */
  list(): Tool[] {
    return [...this.tools.values()];
  }

  /** How many tools are registered. */
  get size(): number {
    return this.tools.size;
  }
}
