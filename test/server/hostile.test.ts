/**
 * A hostile network (SPEC §3.8, first part): a connection reset at any moment of a refused upgrade is a closed
 * connection, a connection that never sends a byte is closed, and JSON nested too deep is refused at the
 * edge. The reset attack runs against a real `troupe serve` process: it must stay alive and keep answering.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { MAX_JSON_DEPTH } from "../../src/protocol/json-depth.js";
import { call, envelope, rawConnect, register, startBus, until } from "../bus/support.js";

const projectRoot = fileURLToPath(new URL("../..", import.meta.url));
const children: ChildProcessWithoutNullStreams[] = [];
const sockets: Socket[] = [];

afterEach(() => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** Starts `troupe serve` on a free port with a key; resolves with its URL. */
async function serve(): Promise<{ child: ChildProcessWithoutNullStreams; url: string; output: () => string }> {
  const { AGENT_BUS_API_KEY: _ignored, ...env } = process.env;
  const child = spawn(process.execPath, ["--import", "tsx", "src/cli/main.ts", "serve", "--port", "0", "--api-key", "s3cret"], { cwd: projectRoot, env });
  children.push(child);
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
  await until(() => /troupe listening on (http:\/\/\S+)/.test(output), 15_000);
  return { child, url: /troupe listening on (http:\/\/\S+)/.exec(output)![1]!, output: () => output };
}

/** Opens a raw TCP connection to the server. */
async function tcp(url: string): Promise<Socket> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  socket.on("error", () => {});
  await once(socket, "connect");
  return socket;
}

/** JSON text of objects nested `depth` levels deep (text: a client need not be able to build the value). */
function nested(depth: number): string {
  return `${'{"a":'.repeat(depth)}0${"}".repeat(depth)}`;
}

/** An envelope's JSON text whose payload is `payloadText`. */
function envelopeText(from: string, to: string, payloadText: string): string {
  return JSON.stringify(envelope(from, to, { payload: { placeholder: true } })).replace('{"placeholder":true}', payloadText);
}

describe("a hostile client", () => {
  it("cannot crash troupe serve by resetting refused WebSocket upgrades", async () => {
    const { child, url, output } = await serve();
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const socket = await tcp(url);
      const { port } = new URL(url);
      // An upgrade without the key, then a reset at once, while the server writes its 401.
      socket.write(
        `GET /agents/connect?agent_id=x://y HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      );
      socket.resetAndDestroy();
      await once(socket, "close");
    }
    const started = performance.now();
    const health = await fetch(`${url}/health`);
    expect(health.status).toBe(200);
    expect(child.exitCode).toBeNull();
    expect(output()).not.toMatch(/ECONNRESET|uncaught/i);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it("closes a connection that never sends a byte after connectionIdleMs, and keeps one that does", async () => {
    const bus = await startBus({ connectionIdleMs: 100 });
    const silent = await tcp(bus.url);
    const talking = await tcp(bus.url);
    talking.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    const [first] = (await once(talking, "data")) as [Buffer];
    expect(first.toString()).toMatch(/^HTTP\/1\.1 200/);
    await once(silent, "close");
    expect(talking.destroyed).toBe(false);
  });

  it(`refuses JSON nested deeper than ${MAX_JSON_DEPTH} levels in a body or a frame, and keeps serving its listings`, async () => {
    const bus = await startBus();
    await register(bus, "cc://a", "cc://b");
    const deep = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", nested(5_000)));
    expect(deep.status).toBe(400);
    expect(deep.body.error).toMatchObject({ type: "CONFIG", details: { limit: MAX_JSON_DEPTH } });
    // The envelope is one level, its payload the next: a payload of 63 levels is 64 in all.
    const atLimit = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", nested(MAX_JSON_DEPTH - 1)));
    expect(atLimit.status).toBe(202);
    const overLimit = await call(bus, "POST", "/messages/send", envelopeText("cc://a", "cc://b", nested(MAX_JSON_DEPTH)));
    expect(overLimit.status).toBe(400);
    expect((await call(bus, "GET", "/agents")).status).toBe(200);

    const agent = await rawConnect(bus, "cc://a", undefined, { control: true });
    agent.socket.send(nested(1_000));
    await until(() => agent.frames.some((frame) => frame.type === "rejected"));
    expect(agent.frames.find((frame) => frame.type === "rejected").error).toMatchObject({ type: "CONFIG", details: { limit: MAX_JSON_DEPTH } });
  });
});
