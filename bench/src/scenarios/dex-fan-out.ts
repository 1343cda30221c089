/** Scenario 6 on dex: one workflow starts N activities at once and awaits them all. */
import { fanOutFigures } from "../comparable-figures.js";
import { Meter } from "../meter.js";
import { usageFigures, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { startDex } from "../systems/dex.js";
import { ACTIVITY_QUEUES, WORKFLOW_QUEUE } from "../systems/dex-workload.js";

export async function dexFanOut(ctx: ScenarioContext): Promise<ScenarioResult> {
  const count = ctx.sizes.fanOut;
  const dex = await startDex(ctx.pg, ctx.group, "fan-out", { cpuProfDir: ctx.cpuProfDir });
  try {
    const [wf, act] = await Promise.all([
      dex.startWorkers("wf", [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 10 }]),
      dex.startWorkers("act", [{ kind: "activity", queue: ACTIVITY_QUEUES[0], concurrency: 100 }]),
    ]);
    const meter = new Meter([
      { name: "server", pids: [dex.server.pid] },
      { name: "workers", pids: [wf.pid, act.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    const t0 = performance.now();
    const handle = await dex.client.start("fanOut", { instanceId: "fan-1", input: { count }, taskQueue: WORKFLOW_QUEUE });
    const result = await handle.result();
    const runId = handle.runId!;
    const ms = performance.now() - t0;
    const { usage } = meter.stop();
    if (result !== count) throw new Error(`fan-out returned ${String(result)}, expected ${count}`);
    const [run] = await dex.sql<{ history_length: number }[]>`select history_length from dex.runs where id = ${runId}`;
    ctx.log(`dex fan-out: ${count} activities in ${(ms / 1000).toFixed(2)} s`);
    return {
      figures: [
        ...fanOutFigures(count, ms),
        ...usageFigures(usage),
      ],
      usage,
      notes: [`history ${run!.history_length} events; activity worker 100 slots`],
    };
  } finally {
    await dex.close();
  }
}
