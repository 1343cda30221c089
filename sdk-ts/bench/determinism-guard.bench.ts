/**
 * Cost of the determinism guard, and of replay versus cache continuation.
 * Run: node --import tsx sdk-ts/bench/determinism-guard.bench.ts
 * Numbers go to docs/decisions/0002-determinism-without-a-bundler.md.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { HistoryEventSchema, type Command, type HistoryEvent } from "@dex/proto";
import { encodePayload } from "../src/common/payload.js";
import { guardedRunner, installDeterminismGuard } from "../src/worker/determinism-guard.js";
import { WorkflowExecution } from "../src/workflow/execution.js";
import type { WorkflowScope } from "../src/workflow/scope.js";
import type { Workflow } from "../src/workflow/types.js";

const N = 1_000_000;
const ROUNDS = 5;

function best(fn: () => void): number {
  let min = Infinity;
  for (let i = 0; i < ROUNDS; i++) {
    const start = performance.now();
    fn();
    min = Math.min(min, performance.now() - start);
  }
  return min;
}

let sink = 0;
const loops = {
  "Date.now()": () => {
    for (let i = 0; i < N; i++) sink += Date.now();
  },
  "new Date()": () => {
    for (let i = 0; i < N; i++) sink += new Date().getTime();
  },
  "Math.random()": () => {
    for (let i = 0; i < N; i++) sink += Math.random();
  },
};

const rows: string[] = [];
const plain = Object.fromEntries(Object.entries(loops).map(([k, fn]) => [k, best(fn)]));
installDeterminismGuard();
const scope: WorkflowScope = { now: () => 1_700_000_000_000, random: () => 0.5, violation() {} };
for (const [name, fn] of Object.entries(loops)) {
  const outside = best(fn);
  const inside = guardedRunner(scope, () => best(fn));
  rows.push(`| ${name} | ${plain[name]!.toFixed(1)} ms | ${outside.toFixed(1)} ms | ${inside.toFixed(1)} ms |`);
}
console.log(`1M calls, best of ${ROUNDS}:`);
console.log("| call | no guard | guard, outside a workflow | guard, inside a workflow |");
console.log("|---|---|---|---|");
console.log(rows.join("\n"));

// Replay vs cache: a workflow of `steps` sequential activities, driven task by task.
const sequential: Workflow = async (ctx) => {
  let total = 0;
  for (let i = 0; i < steps; i++) total += await ctx.executeActivity<number>("step", i);
  return total;
};
let steps = 0;
const info = { runId: "bench", instanceId: "bench", workflowName: "sequential", taskQueue: "default", attempt: 1 };

function ev(seq: number, attributes: HistoryEvent["attributes"]): HistoryEvent {
  return create(HistoryEventSchema, { sequence: BigInt(seq), time: timestampFromMs(seq), attributes });
}

async function drive(count: number, replayEveryTask: boolean): Promise<number> {
  steps = count;
  const history: HistoryEvent[] = [ev(1, { case: "runStarted", value: { input: encodePayload(null) } as never })];
  let cached: WorkflowExecution | undefined;
  const start = performance.now();
  for (let task = 0; task <= count; task++) {
    const newEvents = task === 0 ? [] : [ev(history.length + 1, { case: "activityCompleted", value: { seq: task, result: encodePayload(1) } as never })];
    let execution = cached;
    if (!execution || replayEveryTask) {
      execution = new WorkflowExecution({ info, workflow: sequential, runner: guardedRunner });
      await execution.replay(history);
    }
    const { commands } = await execution.activate(newEvents, timestampFromMs(history.length));
    history.push(...newEvents, ev(history.length + newEvents.length + 1, { case: "workflowTaskCompleted", value: {} as never }));
    for (const c of commands) history.push(ev(history.length + 1, toEvent(c)));
    execution.historyLength = history.length;
    cached = execution;
  }
  return performance.now() - start;
}

function toEvent(command: Command): HistoryEvent["attributes"] {
  const c = command.command;
  if (c.case === "scheduleActivity") return { case: "activityScheduled", value: { seq: c.value.seq, activityName: c.value.activityName } as never };
  return { case: "runCompleted", value: {} as never };
}

console.log("\nA run of N sequential activities, all N+1 workflow tasks:");
console.log("| N | cached (new events only) | full replay every task |");
console.log("|---|---|---|");
for (const count of [100, 500, 1_000]) {
  const cachedMs = await drive(count, false);
  const replayMs = await drive(count, true);
  console.log(`| ${count} | ${cachedMs.toFixed(0)} ms | ${replayMs.toFixed(0)} ms |`);
}
if (sink === 42) console.log("");
