/**
 * The visualizer and playground in a real browser (Debian `chromium` through playwright-core): the key prompt,
 * a session created and prompted from the playground while its actor goes active → busy → idle in the tree
 * and the chart and the answer streams, a workflow started from the form whose steps advance, and the page
 * with 1,000 live sessions (its timings printed, not asserted). Screenshots go to test-artifacts/ui/.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createMockAgent, createRuntime, type Agent, type CommunicationBus, type PromptContext, type Runtime } from "../../src/index.js";
import { startSuiteBus, TEST_KEY } from "../bus/support.js";
import { projectRoot } from "../cli/support.js";
import { clusterAnnouncer } from "../../src/cluster/node-events.js";

const ARTIFACTS = join(projectRoot, "test-artifacts", "ui");

/** An agent that streams its first word, then waits for the test to let it finish. */
class GatedAgent implements Agent {
  readonly name = "Gated";
  readonly description = "Streams a word, then waits for the test";
  readonly capabilities = ["chat"];
  private gates: Array<() => void> = [];
  private waiting: Array<() => void> = [];

  constructor(readonly id: string) {}

  /** Resolves once a prompt is waiting at its gate. */
  whenWaiting(): Promise<void> {
    return this.gates.length > 0 ? Promise.resolve() : new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    this.gates.shift()?.();
  }

  async prompt(ctx: PromptContext) {
    ctx.emit("Hello ");
    await new Promise<void>((resolve, reject) => {
      this.gates.push(resolve);
      for (const notify of this.waiting.splice(0)) notify();
      ctx.signal.addEventListener("abort", () => reject(new Error("cancelled")), { once: true });
    });
    for (const word of ["from ", "the ", "playground"]) ctx.emit(word);
    return { text: "Hello from the playground", usage: { inputTokens: 4, outputTokens: 4 } };
  }
}

const gated = new GatedAgent("gated");
const echo = createMockAgent({ id: "echo", name: "Echo", description: "Echoes the prompt" });
/** First in the list, as in `troupe serve`: the form's default agent for every step, and the page's initiator. */
const orchestrator = createMockAgent({ id: "orchestrator", name: "Orchestrator", description: "Leads the team" });
let browser: Browser;
let page: Page;
let url: string;
/** What the page threw or logged as an error: nothing, at the end. */
const pageErrors: string[] = [];
let runtime: Runtime;
let bus: CommunicationBus;
let bridgeOf: () => import("../../src/index.js").Bridge;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  runtime = createRuntime({ agents: [orchestrator, gated, echo], defaultAgentId: "gated", maxSessions: 2_000 });
  await runtime.start();
  bus = await startSuiteBus({ runtime });
  url = bus.url;
  bridgeOf = () => runtime.bridge;
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.on("pageerror", (error) => pageErrors.push(error.message));
  page.on("console", (message) => {
    if (message.type() === "error") pageErrors.push(message.text());
  });
  page.setDefaultTimeout(30_000);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await bus?.stop();
  await runtime?.stop();
});

afterEach(async (context) => {
  if (context.task.result?.state === "fail")
    await page.screenshot({ path: join(ARTIFACTS, `failed-${context.task.name.slice(0, 40).replace(/\W+/g, "-")}.png`) });
  // The key test's refused requests are the only errors the page may show (Chromium logs each 401).
  expect(pageErrors.splice(0).filter((text) => !text.includes("status of 401"))).toEqual([]);
});

const row = (actorId: string) => page.locator(`.tree .row[data-actor-id="${actorId}"]`);

describe("/ui in Chromium", { timeout: 60_000 }, () => {
  it("asks for the key, then shows the live actor tree", async () => {
    const answer = await page.goto(`${url}/`);
    expect(page.url()).toBe(`${url}/ui/`);
    expect(answer?.headers()["content-security-policy"]).toContain("connect-src 'self'");
    await page.getByLabel("API key").fill("wrong key");
    await page.getByRole("button", { name: "Connect" }).click();
    await expect.poll(() => page.locator(".key-prompt .error").textContent()).toContain("refused");
    await page.getByLabel("API key").fill(TEST_KEY);
    await page.getByRole("button", { name: "Connect" }).click();
    await page.locator('[data-testid="connection"]', { hasText: "live" }).waitFor();
    await row("supervisor").waitFor();
    // The runtime's agents are actors too, each in its state.
    await expect.poll(() => row("agent:gated").getAttribute("data-state")).toBe("ready");
  });

  it("opens a session from the playground and follows it active → busy → idle while the answer streams", async () => {
    await page.getByTestId("agent-select").selectOption("gated");
    await page.getByTestId("open-session").click();
    const sessionId = (await page.getByTestId("session-id").textContent())!;
    expect(sessionId).toMatch(/^[0-9a-f-]{36}$/);
    await expect.poll(() => row(sessionId).getAttribute("data-state")).toBe("active");
    // The chart is the session machine's, its current state highlighted.
    await page.locator('.chart .drawing g.state.active[data-state="active"]').waitFor();
    expect(await page.locator(".chart .drawing g.state").count()).toBeGreaterThanOrEqual(4);

    await page.getByTestId("prompt").fill("Say hello");
    await page.getByTestId("send-prompt").click();
    await gated.whenWaiting();
    // Mid-answer: busy everywhere, the first word shown, the rest not yet.
    await expect.poll(() => row(sessionId).getAttribute("data-state")).toBe("busy");
    await page.locator('.chart .drawing g.state.active[data-state="busy"]').waitFor();
    await expect.poll(() => page.getByTestId("answer").textContent()).toMatch(/^Hello\s*▍?$/);
    expect(await page.getByTestId("session-state").textContent()).toBe("busy");
    await page.screenshot({ path: join(ARTIFACTS, "streaming.png") });

    gated.release();
    await expect.poll(() => page.getByTestId("answer").textContent()).toBe("Hello from the playground");
    await expect.poll(() => row(sessionId).getAttribute("data-state")).toBe("idle");
    await page.locator('.chart .drawing g.state.active[data-state="idle"]').waitFor();
    expect(await page.getByTestId("usage").textContent()).toContain("4 in / 4 out");
    // The event log has the prompt's events.
    await page.getByLabel("Event kind").selectOption("prompt");
    await expect.poll(() => page.locator('.log tr[data-type="prompt.completed"]').count()).toBeGreaterThanOrEqual(1);
    await page.getByLabel("Event kind").selectOption("all");
    await page.screenshot({ path: join(ARTIFACTS, "idle.png") });
  });

  it("lists a cluster node's events in the log under their own kind, with their node", async () => {
    clusterAnnouncer(runtime.hub, "node-1")("cluster.takeover", { fromNode: "node-2", workflows: 3, sessions: 1 });
    await page.getByLabel("Event kind").selectOption("cluster");
    const takeover = page.locator('.log tr[data-type="cluster.takeover"]');
    await expect.poll(() => takeover.count()).toBe(1);
    expect(await page.locator(".log tbody tr").count()).toBe(1);
    expect(await takeover.locator("td.actor").textContent()).toBe("node:node-1");
    expect(await takeover.locator("td.fields").textContent()).toBe('{"fromNode":"node-2","workflows":3,"sessions":1,"node":"node-1"}');
    await page.getByLabel("Event kind").selectOption("all");
  });

  it("shows in the actor tree the actors of the node serving the page; another node's actor events go to the log only", async () => {
    // The page's server says it is cluster node node-2 (the suite's bus is one process: its own events carry no node).
    await page.route("**/health", (route) => route.fulfill({ json: { status: "ok", cluster: { node: "node-2" } } }));
    // As a cluster node, the page asks for node-2's workflows, which this single bus would refuse (no cluster): none.
    const askedForNode: string[] = [];
    await page.route("**/sessions?*node=*", (route) => {
      askedForNode.push(new URL(route.request().url()).searchParams.get("node") ?? "");
      return route.fulfill({ json: { sessions: [] } });
    });
    try {
      await page.reload();
      await page.locator('[data-testid="connection"]', { hasText: "live" }).waitFor();
      await row("supervisor").waitFor();
      const spawned = { parentId: "shard-0", machine: "session", state: "active" };
      runtime.hub.emit("actor.spawned", "taken-over-on-node-1", { ...spawned, node: "node-1" } as never);
      runtime.hub.emit("actor.spawned", "own-on-node-2", { ...spawned, node: "node-2" } as never);
      await row("own-on-node-2").waitFor();
      await expect.poll(() => page.locator('.log tr[data-type="actor.spawned"]', { hasText: "taken-over-on-node-1" }).count()).toBe(1);
      expect(await row("taken-over-on-node-1").count()).toBe(0);
      runtime.hub.emit("actor.stopped", "own-on-node-2", { reason: "done", node: "node-2" } as never);
      await expect.poll(() => row("own-on-node-2").count()).toBe(0);
      // Its workflow panel lists node-2's workflows only.
      expect(askedForNode).toContain("node-2");
    } finally {
      await page.unroute("**/health");
      await page.unroute("**/sessions?*node=*");
      // The page knows its server again as it is: no cluster node (it would ask for node-2's workflows otherwise).
      await page.reload();
      await page.locator('[data-testid="connection"]', { hasText: "live" }).waitFor();
    }
  });

  it("starts a workflow from the form as it loads: every step by the first agent, which is also the initiator", async () => {
    await page.setViewportSize({ width: 1400, height: 900 });
    const form = page.getByTestId("workflow-form");
    // Every control of a step is inside the card, none clipped at 1,400 px.
    const card = (await form.boundingBox())!;
    for (const label of ["Step 1 name", "Step 1 agent", "Step 1 task", "Remove step"]) {
      const control = (await form.getByLabel(label).first().boundingBox())!;
      expect(control.x + control.width, label).toBeLessThanOrEqual(card.x + card.width);
    }
    expect(await form.getByLabel("Step 1 agent").inputValue()).toBe("orchestrator");
    await page.getByTestId("start-workflow").click();
    const steps = page.getByTestId("workflow-steps");
    await expect.poll(() => steps.getAttribute("data-status")).toBe("completed");
    expect(await form.locator(".error").count()).toBe(0);
    for (const name of ["design", "implementation", "review"])
      expect(await steps.locator(`[data-step="${name}"]`).getAttribute("data-step-status")).toBe("done");
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  it("starts a workflow from the form and shows its steps advance", async () => {
    const form = page.getByTestId("workflow-form");
    await form.getByLabel("Step 1 agent").selectOption("echo");
    await form.getByLabel("Step 2 agent").selectOption("gated");
    await form.getByLabel("Step 3 agent").selectOption("echo");
    await page.getByTestId("start-workflow").click();
    const steps = page.getByTestId("workflow-steps");
    const stepStatus = (name: string) => steps.locator(`[data-step="${name}"]`).getAttribute("data-step-status");
    await gated.whenWaiting();
    await expect.poll(() => stepStatus("design")).toBe("done");
    await expect.poll(() => stepStatus("implementation")).toBe("current");
    expect(await stepStatus("review")).toBe("pending");
    const workflowId = (await steps.getAttribute("data-workflow-id"))!;
    // The workflow's actor is in the tree and its chart is its own machine, built for these steps.
    await expect.poll(() => row(workflowId).getAttribute("data-state")).toBe("implementation");
    await page.locator('.chart .drawing g.state.active[data-state="implementation"]').waitFor();
    await page.screenshot({ path: join(ARTIFACTS, "workflow.png") });

    gated.release();
    await expect.poll(() => steps.getAttribute("data-status")).toBe("completed");
    for (const name of ["design", "implementation", "review"]) expect(await stepStatus(name)).toBe("done");
  });

  it("talks to the agents as a user does, through POST /converse", async () => {
    const conversation = page.getByTestId("conversation");
    await conversation.getByLabel("Message").fill("@echo hello there");
    await page.getByTestId("send-message").click();
    await expect.poll(() => conversation.getByTestId("turn-agent").last().textContent()).toBe("echo");
    expect(await conversation.getByTestId("turn-text").last().textContent()).toContain("hello there");
    // Its session is selected: the tree and the chart show it, idle.
    await page.locator('.chart .drawing g.state.active[data-state="idle"]').waitFor();
  });

  it("shows in the event log, once loaded, the events the server still holds from before the page loaded", async () => {
    const heldBefore = await page.locator(".log tr[data-seq]").count();
    expect(heldBefore).toBeGreaterThan(0);
    await page.reload();
    await page.locator('[data-testid="connection"]', { hasText: "live" }).waitFor();
    // The conversation's prompt of the test before is in the log without any new event, each event once.
    await expect.poll(() => page.locator('.log tr[data-type="prompt.completed"]').count()).toBeGreaterThanOrEqual(1);
    const seqs = await page.locator(".log tr[data-seq]").evaluateAll((rows) => rows.map((row) => Number(row.getAttribute("data-seq"))));
    expect(seqs.length).toBeGreaterThanOrEqual(Math.min(heldBefore, 300));
    expect(new Set(seqs).size).toBe(seqs.length);
    // Newest first.
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
  });

  it("stays usable with 1,000 live sessions (timings printed)", async () => {
    const bridge = bridgeOf();
    const started = performance.now();
    const created: Array<{ sessionId: string }> = [];
    // In batches the bridge's maxConcurrentRequests (50) takes.
    for (let batch = 0; batch < 20; batch += 1) {
      created.push(...(await Promise.all(Array.from({ length: 50 }, () => bridge.call("sessions_create", { agentId: "echo" })))));
    }
    await expect.poll(() => page.getByTestId("actor-count").textContent().then(Number), { timeout: 30_000 }).toBeGreaterThanOrEqual(1_000);
    const shown = performance.now() - started;

    // A reload lists them all at once (GET /actors, paged).
    const reloadStarted = performance.now();
    await page.reload();
    await page.locator('[data-testid="connection"]', { hasText: "live" }).waitFor();
    const reloaded = performance.now() - reloadStarted;
    expect(Number(await page.getByTestId("actor-count").textContent())).toBeGreaterThanOrEqual(1_000);
    // Only the rows in view are in the page.
    expect(await page.locator(".tree .row").count()).toBeLessThan(200);

    const filterStarted = performance.now();
    const last = created.at(-1)!.sessionId;
    await page.getByLabel("Filter actors").fill(last.slice(0, 13));
    await row(last).click();
    await page.locator('.chart .drawing g.state.active[data-state="active"]').waitFor();
    const filtered = performance.now() - filterStarted;

    const promptStarted = performance.now();
    await bridge.call("sessions_prompt", { sessionId: last, prompt: "still there?" });
    await expect.poll(() => row(last).getAttribute("data-state")).toBe("idle");
    const followed = performance.now() - promptStarted;
    await page.getByLabel("Filter actors").fill("");
    await page.screenshot({ path: join(ARTIFACTS, "thousand.png") });
    console.log(
      `/ui with ${await page.getByTestId("actor-count").textContent()} live actors: 1,000 sessions shown ${shown.toFixed(0)} ms after creation began, ` +
        `reload ${reloaded.toFixed(0)} ms, filter + select + chart ${filtered.toFixed(0)} ms, a prompt followed to idle ${followed.toFixed(0)} ms`,
    );
  }, 90_000);
});
