/**
 * The page's one way to the server: JSON calls with the key, and the event stream read as server-sent events
 * over `fetch` (an `EventSource` cannot send the key header).
 */

const KEY_ITEM = "troupe.apiKey";
const KEY_HEADER = "x-agent-api-key";

/** The key this tab was given (kept in the page's session storage, gone when the tab closes). */
export function storedKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(KEY_ITEM, key);
}

/** The server refused the key (or wants one): the page asks for it. */
export class KeyRequired extends Error {}

/** An error the server answered, with its `{ type, message, details }`. */
export class ApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

function headers(json: boolean): Record<string, string> {
  const key = storedKey();
  return { ...(key === null ? {} : { [KEY_HEADER]: key }), ...(json ? { "content-type": "application/json" } : {}) };
}

/** Calls the server; 401 throws `KeyRequired`, any other error `ApiError`. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const response = await fetch(path, { method, headers: headers(body !== undefined), ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await response.text();
  let parsed: unknown;
  try {
    parsed = text === "" ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = (parsed as { error?: { type?: string; message?: string } } | undefined)?.error;
  if (response.status === 401) throw new KeyRequired(error?.message ?? "This server needs its API key");
  if (!response.ok) throw new ApiError(error?.type ?? "HTTP", error?.message ?? `${method} ${path}: HTTP ${response.status}`, response.status);
  return parsed as T;
}

/** One frame of the event stream: an event (with `seq`) or a control frame (`missed`, `overflow`). */
export interface StreamFrame {
  type: string;
  seq?: number;
  ts?: number;
  actorId?: string;
  [field: string]: unknown;
}

/**
 * Reads `/events` (after `since`, when given) until `signal` aborts or the server ends it, calling `onFrame`
 * for each frame. Resolves when the stream ends; 401 rejects with `KeyRequired`.
 */
export async function readEvents(since: number | undefined, signal: AbortSignal, onFrame: (frame: StreamFrame) => void): Promise<void> {
  const response = await fetch(since === undefined ? "/events" : `/events?since=${since}`, { headers: headers(false), signal });
  if (response.status === 401) throw new KeyRequired("This server needs its API key");
  if (!response.ok || response.body === null) throw new ApiError("HTTP", `/events: HTTP ${response.status}`, response.status);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let end = buffered.indexOf("\n\n");
    while (end >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = block
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trimStart())
        .join("\n");
      if (data !== "") onFrame(JSON.parse(data) as StreamFrame);
      end = buffered.indexOf("\n\n");
    }
  }
}

/** An id as a person reads it: a message's key joins its sender and id with U+001F, shown as ` › `. */
export function displayId(id: string): string {
  return id.replaceAll("\u001f", " › ");
}
