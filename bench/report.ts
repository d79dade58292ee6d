/**
 * The bench results as Markdown tables: printed by `npm run bench` and pasted into docs/benchmarks.md.
 */
import { CONSTANT_COST_MAX_RATIO, formatCount, type ComparedCost, type Cost } from "./measure.js";
import { BUS_TARGETS, durabilityRatios, type BusThroughput, type EventStreamCost } from "./bus.bench.js";
import type { ColdStartResult } from "./cold-start.bench.js";
import type { PoolsBenchResult } from "./pools.bench.js";
import type { RootActorCost } from "./root-actors.bench.js";
import type { SessionsBenchResult } from "./sessions.bench.js";
import type { ShardingBenchResult } from "./sharding.bench.js";
import type { WorkerBenchResult } from "./worker.bench.js";
import { DELEGATION_MAX_RATIO, type DelegationBenchResult } from "./delegation.bench.js";

/** Where and when the benches ran: numbers only compare within one environment. */
export interface BenchEnvironment {
  generatedAt: string;
  /** The commit measured; `+changes` when machines/ or src/ had uncommitted changes. */
  commit: string;
  node: string;
  xstate: string;
  cpus: number;
  /** 1-minute load average when the benches started and ended; other processes skew absolute numbers. */
  loadAverage: { start: number; end: number };
  durationSeconds: number;
  /** A `--quick` run: every bench at a fraction of its sizes, to check that they run; its numbers mean nothing. */
  quick: boolean;
}

/** Everything `npm run bench` measures, as written to bench/results/latest.json. */
export interface BenchResults {
  environment: BenchEnvironment;
  /** `import "troupe"`, `troupe --version` and `troupe mcp` from a fresh process, beside Node and XState alone (issue 13). */
  coldStart: ColdStartResult;
  sessions: SessionsBenchResult;
  sharding: ShardingBenchResult;
  pools: PoolsBenchResult;
  rootActors: RootActorCost[];
  worker: WorkerBenchResult;
  /** `tasks_delegate` against the same model call made directly (issue 13: ≤ 1.05). */
  delegation: DelegationBenchResult;
  /** The targets of issue 13 parts 1 and 2, with what this run measured (`issueTargets`). */
  targets: TargetCheck[];
  bus: BusThroughput[];
  /** What `/events` costs the `ws → bus → ws` path (issue 13: 10 subscribers ≤ 20 % of throughput). */
  events: EventStreamCost[];
}

/** One target of issue 13 beside what this run measured. */
export interface TargetCheck {
  what: string;
  measured: string;
  target: string;
  met: boolean;
}

/** Heap per idle session at 100,000 live (issue 13), in bytes: an Erlang process is about 2.6 KB. */
const MAX_SESSION_HEAP_BYTES = 3 * 1024;
/** Shutdown per session at 100k over 1k (issue 13). */
const MAX_SHUTDOWN_RATIO = 1.2;
/** Sessions created per second at 100k over 1k live (issue 13). */
const MIN_CREATION_RATE_RATIO = 0.8;

function medianAt(costs: Cost[], live: number): number | undefined {
  return costs.find((cost) => cost.live === live)?.medianMicros;
}

/** Every target of issue 13 parts 1 and 2 that this run measures, each a ratio within the run (or a heap size). */
export function issueTargets(results: Pick<BenchResults, "sessions" | "delegation">): TargetCheck[] {
  const { sessions, delegation } = results;
  const checks: TargetCheck[] = delegation.map((path) => ({
    what: `\`tasks_delegate\` ÷ the direct call, ${path.path} (median)`,
    measured: `${ratio(path.ratio)} (${micros(path.troupe.medianMicros)} against ${micros(path.direct.medianMicros)} µs, +${micros(path.overheadMicros)})`,
    target: `≤ ${DELEGATION_MAX_RATIO.toFixed(2)}`,
    met: path.ratio <= DELEGATION_MAX_RATIO,
  }));
  const largestHeap = sessions.heap.at(-1);
  if (largestHeap !== undefined) {
    checks.push({
      what: `heap per idle session at ${formatCount(largestHeap.sessions)} live`,
      measured: `${kib(largestHeap.bytesPerSession)} KiB`,
      target: `≤ ${kib(MAX_SESSION_HEAP_BYTES)} KiB`,
      met: largestHeap.bytesPerSession <= MAX_SESSION_HEAP_BYTES,
    });
  }
  for (const close of sessions.close) {
    const create = medianAt(sessions.creation, close.live);
    if (create === undefined) continue;
    checks.push({
      what: `close ÷ create at ${formatCount(close.live)} live (medians)`,
      measured: `${ratio(close.medianMicros / create)} (${micros(close.medianMicros)} against ${micros(create)} µs)`,
      target: "≤ 1.00",
      met: close.medianMicros <= create,
    });
  }
  const shutdown = sessions.shutdown.at(-1);
  if (shutdown !== undefined) {
    checks.push({
      what: `shutdown per session, ${formatCount(shutdown.live)} ÷ ${formatCount(sessions.shutdown[0]?.live ?? 0)} (medians)`,
      measured: ratio(shutdown.ratio),
      target: `≤ ${MAX_SHUTDOWN_RATIO.toFixed(1)}`,
      met: shutdown.ratio <= MAX_SHUTDOWN_RATIO,
    });
  }
  const [small, large] = [medianAt(sessions.creation, 1_000), medianAt(sessions.creation, 100_000)];
  if (small !== undefined && large !== undefined) {
    checks.push({
      what: "sessions created per second at 100,000 ÷ at 1,000 live (medians)",
      measured: ratio(small / large),
      target: `≥ ${MIN_CREATION_RATE_RATIO.toFixed(1)}`,
      met: small / large >= MIN_CREATION_RATE_RATIO,
    });
  }
  return checks;
}

function targetsTable(checks: TargetCheck[]): string {
  return table(
    ["issue 13", "measured", "target", "met?"],
    checks.map((check) => [check.what, check.measured, check.target, check.met ? "yes" : "**no**"]),
  );
}

function delegationTable(delegation: DelegationBenchResult): string {
  return table(
    ["path", "direct median µs", "`tasks_delegate` median µs", "troupe adds µs", "ratio", "direct mean µs", "`tasks_delegate` mean µs"],
    delegation.map((path) => [
      path.path,
      micros(path.direct.medianMicros),
      micros(path.troupe.medianMicros),
      micros(path.overheadMicros),
      ratio(path.ratio),
      micros(path.direct.meanMicros),
      micros(path.troupe.meanMicros),
    ]),
  );
}

function table(header: string[], rows: string[][]): string {
  const lines = [header, header.map(() => "---"), ...rows].map((cells) => `| ${cells.join(" | ")} |`);
  return lines.join("\n");
}

function micros(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function ratio(value: number): string {
  return value.toFixed(2);
}

function kib(bytes: number): string {
  return (bytes / 1024).toFixed(2);
}

function verdict(cost: ComparedCost, index: number): string {
  if (index === 0) return "baseline";
  return cost.ratio <= CONSTANT_COST_MAX_RATIO ? "yes" : `**no** (> ${CONSTANT_COST_MAX_RATIO})`;
}

function comparedTable(unit: string, costs: ComparedCost[], live = "live sessions"): string {
  return table(
    [live, `median µs/${unit}`, `mean µs/${unit}`, "of which GC", `${unit}s/s`, "ratio", "mean ratio", "constant?"],
    costs.map((cost, index) => [
      formatCount(cost.live),
      micros(cost.medianMicros),
      micros(cost.meanMicros),
      micros(cost.gcMicros),
      formatCount(Math.round(cost.operationsPerSecond)),
      ratio(cost.ratio),
      ratio(cost.meanRatio),
      verdict(cost, index),
    ]),
  );
}

function costAt(costs: Cost[], live: number): string {
  const cost = costs.find((candidate) => candidate.live === live);
  return cost === undefined ? "—" : micros(cost.medianMicros);
}

function shardingTable(sharding: ShardingBenchResult, sessions: SessionsBenchResult): string {
  const sizes = [...new Set([...sharding.direct, ...sharding.sharded, ...sessions.creation].map((cost) => cost.live))]
    .filter((live) => live > 0)
    .sort((left, right) => left - right);
  const extrapolated = sharding.directExtrapolated;
  return table(
    ["children / live sessions", "one parent, every session a direct child", `supervisor, shards of ${sharding.shardSize}`, "runtime, through the bridge"],
    sizes.map((live) => [
      formatCount(live),
      live === extrapolated.live ? `${micros(extrapolated.medianMicros)} (extrapolated)` : costAt(sharding.direct, live),
      costAt(sharding.sharded, live),
      costAt(sessions.creation, live),
    ]),
  );
}

function heapTable(sessions: SessionsBenchResult, rootActors: RootActorCost[]): string {
  return table(
    ["idle actors", "KiB per session (runtime)", "KiB per bare root actor (4 states)", "session ÷ root actor"],
    sessions.heap.map((heap) => {
      const root = rootActors.find((cost) => cost.actors === heap.sessions);
      return [
        formatCount(heap.sessions),
        kib(heap.bytesPerSession),
        root === undefined ? "—" : kib(root.bytesPerActor),
        root === undefined ? "—" : ratio(heap.bytesPerSession / root.bytesPerActor),
      ];
    }),
  );
}

function fillTable(sessions: SessionsBenchResult): string {
  const first = sessions.fill[0];
  const baselineWithoutGc = first === undefined ? Number.NaN : first.meanMicros - first.gcMicros;
  return table(
    ["sessions at block start", "µs/session", "of which GC", "ratio to first block", "ratio without GC"],
    sessions.fill.map((block) => [
      formatCount(block.live),
      micros(block.meanMicros),
      micros(block.gcMicros),
      ratio(block.meanRatio),
      ratio((block.meanMicros - block.gcMicros) / baselineWithoutGc),
    ]),
  );
}

function workflowBaselineTable(pools: PoolsBenchResult): string {
  const { prebuiltMachine, machinePerWorkflow } = pools.workflowRootActor;
  const pooled = pools.workflowCreation[0];
  const rows: Array<[string, Cost | undefined]> = [
    ["root actor of the workflow machine, built once", prebuiltMachine],
    ["root actor, `createWorkflowMachine(steps)` per workflow", machinePerWorkflow],
    [`\`createSession\` in the pool, ${formatCount(pooled?.live ?? 0)} live`, pooled],
  ];
  return table(
    ["creation", "median µs/workflow", "mean µs/workflow", "÷ root actor (median)"],
    rows.map(([label, cost]) => [
      label,
      cost === undefined ? "—" : micros(cost.medianMicros),
      cost === undefined ? "—" : micros(cost.meanMicros),
      cost === undefined ? "—" : ratio(cost.medianMicros / prebuiltMachine.medianMicros),
    ]),
  );
}

function workflowHeapTable(pools: PoolsBenchResult): string {
  return table(
    ["round", "workflows", "KiB per live workflow", "bytes per ended-then-evicted workflow"],
    pools.workflowHeap.map((round, index) => [
      String(index + 1),
      formatCount(round.workflows),
      kib(round.bytesPerLiveWorkflow),
      round.bytesPerEvictedWorkflow.toFixed(0),
    ]),
  );
}

function workerTable(worker: WorkerBenchResult): string {
  return table(
    ["executor", "median µs/prompt", "p99 µs/prompt", "prompts/s"],
    [worker.inProcess, worker.worker].map((trip) => [
      trip.executor,
      micros(trip.medianMicros),
      micros(trip.p99Micros),
      formatCount(Math.round(trip.promptsPerSecond)),
    ]),
  );
}

function met(value: number, target: number): string {
  return value >= target ? "met" : "**not met**";
}

function rateWithRange(rate: number, [low, high]: [number, number]): string {
  return `${formatCount(Math.round(rate))} (${formatCount(Math.round(low))}–${formatCount(Math.round(high))})`;
}

function busTable(bus: BusThroughput[]): string {
  const ratios = new Map(durabilityRatios(bus).map(({ path, ratio }) => [path, ratio]));
  return table(
    [
      "path",
      "server",
      "messages/s (range)",
      `× raw (target ≥ ${BUS_TARGETS.busOverRaw})`,
      `SQLite ÷ memory (target ≥ ${BUS_TARGETS.sqliteOverMemory})`,
      "server CPU µs/message",
      "sent → received p50 ms",
      "p99 ms",
    ],
    bus.map((run) => {
      const durability = ratios.get(run.path);
      return [
        run.path,
        run.server,
        rateWithRange(run.messagesPerSecond, run.messagesPerSecondRange),
        run.setup === "raw" ? "1.00" : `${ratio(run.ratioToRaw)} ${met(run.ratioToRaw, BUS_TARGETS.busOverRaw)}`,
        run.setup === "sqlite" && durability !== undefined ? `${ratio(durability)} ${met(durability, BUS_TARGETS.sqliteOverMemory)}` : "",
        micros(run.cpuMicrosPerMessage),
        run.latencyMs.p50.toFixed(1),
        run.latencyMs.p99.toFixed(1),
      ];
    }),
  );
}

function eventsTable(events: EventStreamCost[]): string {
  return table(
    ["setup", "messages/s (range)", `× nothing built (10 subscribers: target ≥ ${BUS_TARGETS.eventSubscribers})`, "bus CPU µs/message"],
    events.map((cost) => [
      cost.setup,
      rateWithRange(cost.messagesPerSecond, cost.messagesPerSecondRange),
      cost.subscribers > 0 ? `${ratio(cost.throughputRatio)} ${met(cost.throughputRatio, BUS_TARGETS.eventSubscribers)}` : ratio(cost.throughputRatio),
      micros(cost.cpuMicrosPerMessage),
    ]),
  );
}

function seconds(value: number): string {
  return value.toFixed(3);
}

function coldStartTable(coldStart: ColdStartResult): string {
  return table(
    ["start", "median s", "min s", "target s", "met?", 'over `node -e ""` s', "CPU s", "peak RSS MiB"],
    coldStart.figures.map((figure) => [
      `\`${figure.command}\`${figure.until === "initialize" ? " until it answers `initialize`" : ""}`,
      seconds(figure.medianSeconds),
      seconds(figure.minSeconds),
      figure.targetSeconds === undefined ? "baseline" : `≤ ${figure.targetSeconds}`,
      figure.targetSeconds === undefined ? "" : figure.medianSeconds <= figure.targetSeconds ? "yes" : "**no**",
      seconds(figure.overNodeSeconds),
      seconds(figure.cpuSeconds),
      figure.peakRssMiB.toFixed(0),
    ]),
  );
}

/** The whole report, in Markdown. */
export function renderReport(results: BenchResults): string {
  const { environment, coldStart, sessions, sharding, pools, rootActors, worker, delegation, bus, events } = results;
  const rootCreation = rootActors.at(-1);
  return [
    `troupe benchmarks${environment.quick ? " (QUICK RUN: the numbers mean nothing)" : ""}, ${environment.generatedAt}, commit ${environment.commit}: ` +
      `node ${environment.node}, xstate ${environment.xstate}, ` +
      `${environment.cpus} CPUs, load average ${environment.loadAverage.start.toFixed(2)} → ${environment.loadAverage.end.toFixed(2)}, ` +
      `${environment.durationSeconds.toFixed(0)} s`,
    "",
    "Issue 13 (parts 1 and 2): each figure of this run beside its target",
    "",
    targetsTable(results.targets),
    "",
    `Cold start: a fresh process of ${coldStart.measured === "dist" ? "the compiled package (dist/)" : "the sources through tsx (a quick run's stand-in)"}, spawn to exit (\`troupe mcp\`: to its answer to \`initialize\`), ` +
      `${coldStart.rounds} rounds taken in turn; "met?" compares the median with the target; CPU s (user + system until ready) and ` +
      `peak RSS from ${coldStart.resourceRounds} more round${coldStart.resourceRounds === 1 ? "" : "s"}: on a busy machine the wall time is mostly waiting for a core, the CPU time is not`,
    "",
    coldStartTable(coldStart),
    "",
    "Delegation (bench/delegation.bench.ts): `tasks_delegate` (create a session, one prompt, close it) against the same call made directly, " +
      "batches of 20 interleaved, medians over 40 batches; OpenAI through `openAI()` and the `openai` SDK on a fake Chat Completions server in " +
      "a process of its own, the ACP worker against the ACP SDK's client calling `session/new` and `session/prompt` on the same agent program",
    "",
    delegationTable(delegation),
    "",
    "Session creation (`sessions_create`, awaited one at a time): windows of 1,000 creations from each size, timed in interleaved batches of 50; " +
      "ratio = median ÷ median at 0 live",
    "",
    comparedTable("session", sessions.creation),
    "",
    "Prompt round trip (`sessions_prompt`, mock echo agent); ratio = median ÷ median at 1,000 live",
    "",
    comparedTable("prompt", sessions.prompt),
    "",
    "Close (`sessions_close` of each creation window's sessions, in creation order, interleaved batches of 50); ratio = median ÷ median at 1,000 live",
    "",
    comparedTable("close", sessions.close),
    "",
    "Shutdown (`runtime.stop()`, every session closed with reason `shutdown`), per session; median over " +
      `${sessions.shutdown.map((cost) => Math.round(cost.operations / cost.live)).join(", ")} stops`,
    "",
    comparedTable("session", sessions.shutdown),
    "",
    "Heap per idle session",
    "",
    heapTable(sessions, rootActors),
    "",
    rootCreation === undefined
      ? ""
      : `A bare root actor takes ${micros(rootCreation.microsPerCreation)} µs to create and start (mean over ${formatCount(rootCreation.actors)}).`,
    "",
    "Why shards: median µs to spawn one session machine",
    "",
    shardingTable(sharding, sessions),
    "",
    `Sustained creation while filling one runtime to ${formatCount((sessions.fill.at(-1)?.live ?? 0) + (sessions.fill.at(-1)?.operations ?? 0))}, ` +
      "per block of 10,000 (not interleaved: a trend, exposed to load and to the growing heap)",
    "",
    fillTable(sessions),
    "",
    "Workflow creation (`sessionManager.createSession`, the seed's 3-step workflow) on a bus over its own runtime (bench/pools.bench.ts): " +
      "20 windows of 100 creations at each size, batches of 10 interleaved in random order, each window deleted after; ratio = median ÷ median at 100 live",
    "",
    comparedTable("workflow", pools.workflowCreation, "live workflows"),
    "",
    "The same workflow without the pool: root actors created in the same rounds",
    "",
    workflowBaselineTable(pools),
    "",
    "Workflow deletion (`sessionManager.deleteSession` of an active workflow: terminated, then evicted at once), each window's workflows oldest first, batches of 10 interleaved in random order",
    "",
    comparedTable("deletion", pools.workflowDeletion, "live workflows"),
    "",
    "Delivery creation (`bus.send` of an async `task_request` to a registered, offline agent: the message stays queued; after the first window, an idle delivery actor takes it), " +
      "20 windows of 100 at each size, batches of 10 interleaved in random order, each window timed out after; ratio = median ÷ median at 100 live",
    "",
    comparedTable("message", pools.deliveryCreation, "live deliveries"),
    "",
    "Heap per workflow: created, then completed and evicted after `workflowRetentionMs`, on one bus, after a full collection each time",
    "",
    workflowHeapTable(pools),
    "",
    `Prompt round trip through an ACP worker process against the same agent in process (bench/worker.bench.ts); ratio of medians ${worker.ratio.toFixed(1)}`,
    "",
    workerTable(worker),
    "",
    "Messages through the communication bus beside the raw transports in the same conditions, load from a second process " +
      "(bench/bus.bench.ts): ~1 KB envelopes, a window of 100 over WebSocket or 50 keep-alive HTTP clients, every message acknowledged by its recipient; " +
      "rounds of 10,000 messages, setups in turn, medians over 3 rounds",
    "",
    busTable(bus),
    "",
    "What the event stream costs that path (`ws → bus → ws`, rounds of 10,000 messages, setups in turn, medians over 3 rounds; subscribers of every event over WebSocket in the load's process)",
    "",
    eventsTable(events),
    "",
  ].join("\n");
}
