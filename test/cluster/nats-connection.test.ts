/**
 * A node's connection to NATS, on a real nats-server started for this file: it connects, checks JetStream,
 * says when it is cut off and when it is back, and explains what it cannot do.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { BridgeError } from "../../src/errors.js";
import { connectNats, openedPatiently, type ClusterConnection, type NatsConnectionState } from "../../src/cluster/nats-connection.js";
import { freePort } from "../support/engine-process.js";
import { startNats, type NatsServer } from "../support/nats-server.js";
import { runModuleScript } from "../support/module-script.js";

let server: NatsServer;
const connections: ClusterConnection[] = [];

beforeAll(async () => {
  server = await startNats();
});

afterAll(async () => {
  await server?.stop();
});

afterEach(async () => {
  await Promise.allSettled(connections.splice(0).map((connection) => connection.close()));
});

async function connect(url = server.url): Promise<ClusterConnection> {
  const connection = await connectNats({ url, name: "test-node", connectTimeoutMs: 2_000, requestTimeoutMs: 2_000 });
  connections.push(connection);
  return connection;
}

async function openError(url: string): Promise<BridgeError> {
  const error = await connect(url).then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(BridgeError);
  return error as BridgeError;
}

/** Resolves with the next state the connection reports. */
function nextState(connection: ClusterConnection): Promise<NatsConnectionState> {
  return new Promise((resolve) => {
    const stop = connection.onStateChange((state) => {
      stop();
      resolve(state);
    });
  });
}

describe("the NATS connection", () => {
  it("connects to a JetStream server and uses it", async () => {
    const connection = await connect();
    expect(connection.state()).toBe("connected");
    expect(connection.where).toBe(`NATS at ${server.url}`);
    const info = await connection.manager.getAccountInfo();
    expect(info.streams).toBeGreaterThanOrEqual(0);
  });

  it("opens a bucket that several nodes create at the same moment, on every one of them", async () => {
    const nodes = await Promise.all([connect(), connect(), connect()]);
    for (let round = 0; round < 5; round += 1) {
      const buckets = await Promise.all(nodes.map((node) => node.openBucket(`together_${round}`, { history: 1 })));
      await buckets[0]!.put("key", "value");
      expect((await buckets[2]!.get("key"))?.string()).toBe("value");
    }
  });

  it("is CONFIG for a bad url, and for a server without JetStream", async () => {
    expect((await openError("")).type).toBe("CONFIG");
    expect((await openError("http://127.0.0.1:4222")).message).toMatch(/nats:\/\/ or tls:\/\//);
    const plain = await startNats({ jetstream: false });
    try {
      const error = await openError(plain.url);
      expect([error.type, error.message]).toEqual(["CONFIG", expect.stringMatching(/has no JetStream: start nats-server with -js/)]);
    } finally {
      await plain.stop();
    }
  });

  it("is TRANSPORT when nothing listens, and never says the credentials of the url", async () => {
    const port = await freePort();
    const error = await openError(`nats://user:s3cret@127.0.0.1:${port}`);
    expect([error.type, error.details.retryable]).toEqual(["TRANSPORT", true]);
    expect(error.message).toContain(`nats://127.0.0.1:${port}`);
    expect(error.message).not.toContain("s3cret");
  });

  it("says when the server is gone and when it is back, and works again after", async () => {
    const own = await startNats();
    try {
      const connection = await connect(own.url);
      const bucket = await connection.openBucket("before_restart");
      await bucket.put("k", "v1");
      const down = nextState(connection);
      await own.halt("SIGKILL");
      expect(await down).toBe("disconnected");
      expect(connection.state()).toBe("disconnected");
      const up = nextState(connection);
      await own.start();
      expect(await up).toBe("connected");
      // JetStream kept the bucket on disk across the crash.
      expect((await bucket.get("k"))?.string()).toBe("v1");
    } finally {
      await own.stop();
    }
  });

  it("is loaded only when a connection opens: importing troupe does not load the NATS client", async () => {
    const script = [
      'import { createRequire } from "node:module";',
      'const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((file) => file.includes("@nats-io"));',
      'await import("./src/index.ts");',
      "const before = loaded();",
      'const { connectNats } = await import("./src/cluster/nats-connection.ts");',
      `await (await connectNats({ url: ${JSON.stringify(server.url)} })).close();`,
      "console.log(JSON.stringify({ before, after: loaded() }));",
    ].join("\n");
    const output = await runModuleScript(script);
    expect(JSON.parse(output)).toEqual({ before: false, after: true });
  });
});

describe("opening a stream or bucket at a node's start", () => {
  const timedOut = (): BridgeError => new BridgeError("TRANSPORT", "nats://127.0.0.1:4222: opening the bucket b failed: timeout", { cause: "TimeoutError" });

  it("asks again, saying so, when JetStream did not answer in time, up to three tries", async () => {
    const warnings: string[] = [];
    let tries = 0;
    const opened = await openedPatiently(
      "the bucket b",
      () => {
        tries += 1;
        return tries < 3 ? Promise.reject(timedOut()) : Promise.resolve("open");
      },
      (text) => warnings.push(text),
    );
    expect(opened).toBe("open");
    expect(tries).toBe(3);
    expect(warnings).toEqual([expect.stringContaining("the bucket b did not answer in time (try 1 of 3)"), expect.stringContaining("(try 2 of 3)")]);

    tries = 0;
    await expect(
      openedPatiently(
        "the bucket b",
        () => ((tries += 1), Promise.reject(timedOut())),
        () => undefined,
      ),
    ).rejects.toMatchObject({ type: "TRANSPORT" });
    expect(tries).toBe(3);
  });

  it("throws any other error at once: a refusal, or NATS away", async () => {
    for (const error of [
      new BridgeError("CONFIG", "cluster.replicas: no suitable peers"),
      new BridgeError("TRANSPORT", "nats: no responders", { cause: "NoRespondersError" }),
    ]) {
      let tries = 0;
      await expect(
        openedPatiently(
          "the stream s",
          () => ((tries += 1), Promise.reject(error)),
          () => undefined,
        ),
      ).rejects.toBe(error);
      expect(tries).toBe(1);
    }
  });
});
