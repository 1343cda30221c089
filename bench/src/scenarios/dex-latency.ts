/** Scenario 2 on dex: runs one after another (start, then await the result), one activity each. */
import { latencyFigures } from "../comparable-figures.js";
import type { ScenarioContext, ScenarioResult } from "../scenario.js";
import { percentile } from "../stats.js";
import { startDex } from "../systems/dex.js";
import { ACTIVITY_QUEUES, WORKFLOW_QUEUE } from "../systems/dex-workload.js";

export async function dexLatency(ctx: ScenarioContext): Promise<ScenarioResult> {
  const runs = ctx.sizes.latencyRuns;
  const dex = await startDex(ctx.pg, ctx.group, "latency", { cpuProfDir: ctx.cpuProfDir });
  try {
    await Promise.all([
      dex.startWorkers("wf", [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 10 }]),
      dex.startWorkers("act", [{ kind: "activity", queue: ACTIVITY_QUEUES[0], concurrency: 10 }]),
    ]);
    const once = async (id: string, i: number) => (await dex.client.start("oneStep", { instanceId: id, input: i, taskQueue: WORKFLOW_QUEUE })).result();
    for (let i = 0; i < 10; i++) await once(`warm-${i}`, i); // warm-up, not measured
    const latencies: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await once(`lat-${i}`, i);
      latencies.push(performance.now() - t0);
    }
    ctx.log(`dex latency: ${runs} runs, p50 ${percentile(latencies, 50).toFixed(1)} ms`);
    return {
      figures: [
        ...latencyFigures(latencies),
      ],
      usage: {},
      notes: [`${runs} sequential runs of one activity`],
    };
  } finally {
    await dex.close();
  }
}
