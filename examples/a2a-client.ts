/**
 * Calls a troupe agent with the A2A SDK's own client: streams a message, then continues its context.
 *
 *   npm start                                   # troupe serve, on 127.0.0.1:8080
 *   npx tsx examples/a2a-client.ts http://127.0.0.1:8080/a2a/assistant/ "Hello over A2A"
 *
 * With a key on the server, set AGENT_BUS_API_KEY: the card and every call need it (the card says so).
 */
import { Role, taskStateToJSON, type SendMessageRequest } from "@a2a-js/sdk";
import { ClientFactory, DefaultAgentCardResolver, JsonRpcTransportFactory } from "@a2a-js/sdk/client";

const [url = "http://127.0.0.1:8080/a2a/assistant/", text = "Hello over A2A"] = process.argv.slice(2);
const key = process.env["AGENT_BUS_API_KEY"];

const withKey: typeof fetch = (input, init) => {
  const headers = new Headers(init?.headers);
  if (key !== undefined) headers.set("x-agent-api-key", key);
  return fetch(input, { ...init, headers });
};

function message(prompt: string, contextId = ""): SendMessageRequest {
  return {
    tenant: "",
    message: {
      messageId: crypto.randomUUID(),
      role: Role.ROLE_USER,
      parts: [{ content: { $case: "text", value: prompt }, metadata: undefined, filename: "", mediaType: "text/plain" }],
      contextId,
      taskId: "",
      metadata: undefined,
      extensions: [],
      referenceTaskIds: [],
    },
    configuration: undefined,
    metadata: undefined,
  };
}

// Reads the agent card at <url>/.well-known/agent-card.json and picks its JSON-RPC interface (A2A v1.0).
const factory = new ClientFactory({
  transports: [new JsonRpcTransportFactory({ fetchImpl: withKey })],
  cardResolver: new DefaultAgentCardResolver({ fetchImpl: withKey }),
});
const client = await factory.createFromUrl(url);

let contextId = "";
let state = "";
for await (const event of client.sendMessageStream(message(text))) {
  const { payload } = event;
  if (payload?.$case === "task") contextId = payload.value.contextId;
  // Each piece the agent streams is an artifact update; the last one carries the whole answer again.
  if (payload?.$case === "artifactUpdate" && !payload.value.lastChunk) {
    for (const part of payload.value.artifact?.parts ?? []) if (part.content?.$case === "text") process.stdout.write(part.content.value);
  }
  if (payload?.$case === "statusUpdate") state = taskStateToJSON(payload.value.status!.state);
}
console.log(`\n[${state}]`);

// The same context is the same bridge session: the agent sees the first turn in its history.
const second = await client.sendMessage(message("And once more", contextId));
if ("status" in second) {
  const answer = second.artifacts.flatMap((artifact) => artifact.parts).map((part) => (part.content?.$case === "text" ? part.content.value : ""));
  console.log(`${answer.join("")}\n[${taskStateToJSON(second.status!.state)}] context ${second.contextId === contextId ? "continued" : "new"}`);
}
