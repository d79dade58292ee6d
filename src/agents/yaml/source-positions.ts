/**
 * Where a field of a YAML document is written: the line and column an error names, found from the field's
 * path in the parsed document.
 */
import type { Document, LineCounter, Node } from "yaml";
import { yamlPackage } from "./yaml-package.js";

/** A place in a file, both counted from 1. */
export interface SourcePosition {
  line: number;
  column: number;
}

/** The child of `node` at one step of a path, if it is there. */
function childOf(node: unknown, step: PropertyKey): { key?: Node; value: unknown } | undefined {
  const { isMap, isScalar, isSeq } = yamlPackage();
  if (isMap(node)) {
    const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(step));
    return pair === undefined ? undefined : { key: pair.key as Node, value: pair.value };
  }
  if (isSeq(node) && typeof step === "number") {
    return step < node.items.length ? { value: node.items[step] } : undefined;
  }
  return undefined;
}

function startOf(node: unknown): number | undefined {
  return (node as Node | null)?.range?.[0];
}

/**
 * Where the value at `path` is written; a field that is missing is placed at the closest mapping that holds
 * it, a field without a value at its key. With `key`, where that key of the mapping at `path` is written
 * (an unknown field).
 */
export function positionOf(document: Document, lines: LineCounter, path: readonly PropertyKey[], key?: string): SourcePosition {
  const steps = key === undefined ? path : [...path, key];
  let node: unknown = document.contents;
  let offset = startOf(node) ?? 0;
  for (const [index, step] of steps.entries()) {
    const child = childOf(node, step);
    if (child === undefined) break;
    const wantsKey = key !== undefined && index === steps.length - 1;
    // A value left empty (`model:`) may have no place of its own: its key's is named then.
    offset = (wantsKey ? startOf(child.key) : (startOf(child.value) ?? startOf(child.key))) ?? offset;
    node = child.value;
  }
  const { line, col } = lines.linePos(offset);
  return { line, column: col };
}
