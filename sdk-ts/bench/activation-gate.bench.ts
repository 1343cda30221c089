/**
 * Cost per workflow task of the activation gate (one activation at a time) and of the deadlock
 * watchdog thread (two messages to it and one FailWorkflowTask request encoded per activation).
 * Run: node --import tsx sdk-ts/bench/activation-gate.bench.ts
 * Numbers go to docs/decisions/0014-workflow-task-failures.md.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { HistoryEventSchema, WorkflowTaskSchema, type HistoryEvent, type WorkflowTask } from "@dex/proto";
import type { ResolvedConnection } from "../src/client/environment.js";
import { createConsoleLogger } from "../src/common/logger.js";
import { encodePayload } from "../src/common/payload.js";
import { createActivationGate, type ActivationGate } from "../src/worker/deadlock-watchdog.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import { WorkflowExecution } from "../src/workflow/execution.js";
import type { Workflow } from "../src/workflow/types.js";

const TASKS = 20_000;
const ROUNDS = 5;
const CONCURRENCY = 10;

installDeterminismGuard();
// A small but real activation: start, run to the first await, one command.
const workflow: Workflow = async (ctx) => ctx.executeActivity("step", 1);
const started: HistoryEvent = create(HistoryEventSchema, {
  sequence: 1n,
  time: timestampFromMs(1_700_000_000_000),
  attributes: { case: "runStarted", value: { input: encodePayload({}) } },
});
const task: WorkflowTask = create(WorkflowTaskSchema, {
  taskToken: new Uint8Array(48).fill(7),
  runId: "0193a000-0000-7000-8000-000000000000",
  workflowName: "bench",
  attempt: 1,
});
const logger = createConsoleLogger();
const connection: ResolvedConnection = { target: { target: "127.0.0.1:1", display: "127.0.0.1:1" } as never, tls: undefined, apiKey: undefined };

async function activation(): Promise<void> {
  const execution = new WorkflowExecution({ info: { runId: task.runId, instanceId: "i", workflowName: "bench", taskQueue: "q", attempt: 1 }, workflow, runner: guardedRunner });
  await execution.activate([started], started.time);
}

/** Milliseconds for TASKS activations, CONCURRENCY in flight at once (as a worker runs them). */
async function once(gate: ActivationGate | undefined): Promise<number> {
  const start = performance.now();
  let next = 0;
  const lane = async () => {
    while (next++ < TASKS) await (gate ? gate.run(task, activation) : activation());
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, lane));
  return performance.now() - start;
}

// The machine is shared and noisy: the three variants take turns in every round, best of ROUNDS each.
const serialOnly = createActivationGate({ timeoutMs: 0, connection, logger });
const watchdog = createActivationGate({ timeoutMs: 5_000, connection, logger });
let direct = Infinity;
let gated = Infinity;
let watched = Infinity;
for (let round = 0; round < ROUNDS; round++) {
  direct = Math.min(direct, await once(undefined));
  gated = Math.min(gated, await once(serialOnly));
  watched = Math.min(watched, await once(watchdog));
}
await watchdog.close();

const perTask = (ms: number) => ((ms * 1000) / TASKS).toFixed(1);
console.log(`${TASKS} activations, ${CONCURRENCY} in flight, best of ${ROUNDS}:`);
console.log("| how | total | per task | added per task |");
console.log("|---|---|---|---|");
console.log(`| direct (before) | ${direct.toFixed(0)} ms | ${perTask(direct)} µs | |`);
console.log(`| gate, watchdog off | ${gated.toFixed(0)} ms | ${perTask(gated)} µs | ${perTask(gated - direct)} µs |`);
console.log(`| gate + watchdog thread | ${watched.toFixed(0)} ms | ${perTask(watched)} µs | ${perTask(watched - direct)} µs |`);
