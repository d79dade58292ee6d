/**
 * Arithmetic for the `calculate` tool: numbers, `+ - * / % ^`, parentheses, `pi`, `e` and a few functions,
 * parsed by hand (never `eval`), bounded in length and depth.
 */
import { BridgeError } from "../errors.js";

/** The longest expression evaluated, in characters. */
export const MAX_EXPRESSION_LENGTH = 1000;
/** The deepest nesting of parentheses, signs and powers. */
const MAX_DEPTH = 100;

const CONSTANTS: Record<string, number> = { pi: Math.PI, e: Math.E };
const FUNCTIONS: Record<string, (...args: number[]) => number> = {
  sqrt: Math.sqrt,
  abs: Math.abs,
  round: Math.round,
  floor: Math.floor,
  ceil: Math.ceil,
  min: Math.min,
  max: Math.max,
};

const TOKEN = /\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_]\w*)|(\S))/y;

type Token = { kind: "number"; value: number; at: number } | { kind: "name" | "symbol"; text: string; at: number };

function invalid(message: string): BridgeError {
  return new BridgeError("CONFIG", `expression: ${message}`, { field: "expression" });
}

function tokenize(expression: string): Token[] {
  const tokens: Token[] = [];
  TOKEN.lastIndex = 0;
  for (let match = TOKEN.exec(expression); match !== null && match[0] !== ""; match = TOKEN.exec(expression)) {
    const at = match.index + match[0].length - (match[1] ?? match[2] ?? match[3] ?? "").length + 1;
    if (match[1] !== undefined) tokens.push({ kind: "number", value: Number(match[1]), at });
    else if (match[2] !== undefined) tokens.push({ kind: "name", text: match[2], at });
    else tokens.push({ kind: "symbol", text: match[3]!, at });
  }
  return tokens;
}

/** Evaluates an arithmetic expression; a malformed one, or a result that is not a finite number, is CONFIG. */
export function evaluateArithmetic(expression: string): number {
  if (expression.length > MAX_EXPRESSION_LENGTH) throw invalid(`longer than ${MAX_EXPRESSION_LENGTH} characters`);
  const tokens = tokenize(expression);
  let position = 0;
  let depth = 0;
  const peek = (): Token | undefined => tokens[position];
  const isSymbol = (text: string): boolean => {
    const token = peek();
    return token?.kind === "symbol" && token.text === text;
  };
  const describe = (token: Token | undefined): string =>
    token === undefined ? "the end" : `${JSON.stringify(token.kind === "number" ? String(token.value) : token.text)} at character ${token.at}`;
  const expect = (text: string): void => {
    if (!isSymbol(text)) throw invalid(`expected "${text}", found ${describe(peek())}`);
    position += 1;
  };
  const nested = <T>(parse: () => T): T => {
    depth += 1;
    if (depth > MAX_DEPTH) throw invalid(`nested more than ${MAX_DEPTH} deep`);
    try {
      return parse();
    } finally {
      depth -= 1;
    }
  };

  const sum = (): number => {
    let value = product();
    while (isSymbol("+") || isSymbol("-")) {
      const operator = (tokens[position++] as { text: string }).text;
      const right = product();
      value = operator === "+" ? value + right : value - right;
    }
    return value;
  };
  const product = (): number => {
    let value = signed();
    while (isSymbol("*") || isSymbol("/") || isSymbol("%")) {
      const operator = (tokens[position++] as { text: string }).text;
      const right = signed();
      value = operator === "*" ? value * right : operator === "/" ? value / right : value % right;
    }
    return value;
  };
  // A sign binds looser than `^`, as in mathematics: -2^2 is -4.
  const signed = (): number => {
    if (isSymbol("-") || isSymbol("+")) {
      const negative = (tokens[position++] as { text: string }).text === "-";
      const value = nested(signed);
      return negative ? -value : value;
    }
    return power();
  };
  const power = (): number => {
    const base = primary();
    if (!isSymbol("^")) return base;
    position += 1;
    return base ** nested(signed);
  };
  const primary = (): number => {
    const token = peek();
    if (token?.kind === "number") {
      position += 1;
      return token.value;
    }
    if (token?.kind === "symbol" && token.text === "(") {
      position += 1;
      const value = nested(sum);
      expect(")");
      return value;
    }
    if (token?.kind === "name") {
      position += 1;
      const name = token.text.toLowerCase();
      const fn = FUNCTIONS[name];
      if (fn !== undefined) {
        expect("(");
        const args = [nested(sum)];
        while (isSymbol(",")) {
          position += 1;
          args.push(nested(sum));
        }
        expect(")");
        return fn(...args);
      }
      const constant = CONSTANTS[name];
      if (constant !== undefined) return constant;
      throw invalid(`unknown name ${JSON.stringify(token.text)} (known: ${[...Object.keys(CONSTANTS), ...Object.keys(FUNCTIONS)].join(", ")})`);
    }
    throw invalid(`expected a number, found ${describe(token)}`);
  };

  const value = sum();
  if (position < tokens.length) throw invalid(`unexpected ${describe(peek())}`);
  if (!Number.isFinite(value)) throw invalid(`the result is not a finite number (${value}): a division by zero?`);
  return value;
}
