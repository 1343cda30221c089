/**
 * Scenario 2 on dex: runs one after another (start, then await the result), one activity each.
 *
 * BENCH_DEX_EAGER_START (eager workflow start, docs/decisions/0013-eager-workflow-start.md): unset,
 * the client runs in the bench process (as always). Otherwise the loop runs in the workflow worker's
 * process (its client can hand the first workflow task to that worker): "1" with `eager: true`,
 * "0" without, "ab" alternating run by run (both sides under the same load; the figures are eager
 * on's, the notes give both).
 */
import { latencyFigures } from "../comparable-figures.js";
import type { ScenarioContext, ScenarioResult } from "../scenario.js";
import { percentile } from "../stats.js";
import { startDex } from "../systems/dex.js";
import { ACTIVITY_QUEUES, WORKFLOW_QUEUE } from "../systems/dex-workload.js";

const WARM_UP = 10;

export async function dexLatency(ctx: ScenarioContext): Promise<ScenarioResult> {
  const runs = ctx.sizes.latencyRuns;
  const eagerStart = process.env.BENCH_DEX_EAGER_START;
  const dex = await startDex(ctx.pg, ctx.group, "latency", { cpuProfDir: ctx.cpuProfDir });
  try {
    const [wf] = await Promise.all([
      dex.startWorkers("wf", [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 10 }]),
      dex.startWorkers("act", [{ kind: "activity", queue: ACTIVITY_QUEUES[0], concurrency: 10 }]),
    ]);
    let latencies: number[] = [];
    let note = "";
    if (eagerStart === "1" || eagerStart === "0" || eagerStart === "ab") {
      const eager = eagerStart === "ab" ? "ab" : eagerStart === "1" ? "on" : "off";
      const reply = await wf.request<{ on?: number[]; off?: number[]; error?: string }>(
        { type: "latency", queue: WORKFLOW_QUEUE, runs, warmUp: WARM_UP, eager },
        60_000 + runs * 5_000,
      );
      if (!reply.on || !reply.off) throw new Error(`the latency loop in the worker process failed: ${reply.error}`);
      latencies = eager === "off" ? reply.off : reply.on;
      if (eager === "ab") {
        const p = (xs: number[], q: number) => percentile(xs, q).toFixed(1);
        note = `; alternating: eager on p50 ${p(reply.on, 50)} / p99 ${p(reply.on, 99)} ms, off p50 ${p(reply.off, 50)} / p99 ${p(reply.off, 99)} ms (${reply.on.length} + ${reply.off.length} runs)`;
      }
    } else {
      const once = async (id: string, i: number) => (await dex.client.start("oneStep", { instanceId: id, input: i, taskQueue: WORKFLOW_QUEUE })).result();
      for (let i = 0; i < WARM_UP; i++) await once(`warm-${i}`, i); // warm-up, not measured
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        await once(`lat-${i}`, i);
        latencies.push(performance.now() - t0);
      }
    }
    const eagerTasks = await eagerWorkflowTasks(dex.metricsUrl);
    const where = eagerStart === undefined ? "" : `, client in the workflow worker's process, eager start ${{ "1": "on", "0": "off" }[eagerStart] ?? eagerStart}`;
    ctx.log(`dex latency: ${runs} runs${where}, p50 ${percentile(latencies, 50).toFixed(1)} ms, eager workflow tasks ${eagerTasks}${note}`);
    return {
      figures: [
        ...latencyFigures(latencies),
      ],
      usage: {},
      notes: [`${runs} sequential runs of one activity${where}; ${eagerTasks} first workflow tasks handed out in the start's answer${note}`],
    };
  } finally {
    await dex.close();
  }
}

/** dex_tasks_dispatched_eagerly_total{type="workflow"}, summed over queues. */
async function eagerWorkflowTasks(metricsUrl: string): Promise<number> {
  const text = await (await fetch(metricsUrl)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith('dex_tasks_dispatched_eagerly_total{type="workflow"'))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}
