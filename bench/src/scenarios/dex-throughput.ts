/**
 * Scenario 1 on dex: N workflows of three sequential no-op activities on
 * three activity queues, `inFlight` at a time (each lane starts a run and
 * awaits its result). One workflow worker process; one activity worker
 * process serving the three queues.
 */
import { throughputFigures } from "../comparable-figures.js";
import { Meter, round } from "../meter.js";
import { PoolSampler } from "../pool-sampler.js";
import { perSecond } from "../postgres.js";
import { figure, usageFigures, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { pool } from "../stats.js";
import { startDex } from "../systems/dex.js";
import { ACTIVITY_QUEUES, WORKFLOW_QUEUE } from "../systems/dex-workload.js";

export async function dexThroughput(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { workflows, inFlight } = ctx.sizes;
  const dex = await startDex(ctx.pg, ctx.group, "throughput", { cpuProfDir: ctx.cpuProfDir });
  try {
    const [wf, act] = await Promise.all([
      dex.startWorkers("wf", [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 100 }]),
      dex.startWorkers("act", ACTIVITY_QUEUES.map((queue) => ({ kind: "activity" as const, queue, concurrency: 100 }))),
    ]);
    const run = async (id: string, i: number) => {
      const handle = await dex.client.start("threeSteps", { instanceId: id, input: i, taskQueue: WORKFLOW_QUEUE });
      await handle.result();
    };
    // Warm-up (JIT, connection pools), not measured.
    await pool(Math.min(50, workflows), inFlight, (i) => run(`warm-${i}`, i));
    const latencies: number[] = [];
    const before = await ctx.pg.counters(dex.database);
    const meter = new Meter([
      { name: "server", pids: [dex.server.pid] },
      { name: "workers", pids: [wf.pid, act.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    const poolSampler = new PoolSampler(ctx.pg.admin, dex.database, "dex-server");
    await pool(workflows, inFlight, async (i) => {
      const t0 = performance.now();
      await run(`tp-${i}`, i);
      latencies.push(performance.now() - t0);
    });
    const { seconds, usage } = meter.stop();
    const serverPool = await poolSampler.stop();
    const q = perSecond(before, await ctx.pg.counters(dex.database));
    ctx.log(`dex throughput: ${workflows} workflows in ${seconds.toFixed(1)} s`);
    return {
      figures: [
        ...throughputFigures(workflows, seconds, latencies),
        ...usageFigures(usage),
        figure("pgStatementsPerSec", "Postgres statements/s", round(q.statementsPerSec, 0), "/s"),
        // Per workflow: robust to a shared machine, unlike rates.
        figure("cpuMsPerWorkflow", "CPU per workflow (all metered)", round((Object.values(usage).reduce((s, u) => s + u.cpuSeconds, 0) * 1000) / workflows, 1), "ms"),
        // The server's connections (its pool of 10 plus the LISTEN one): busy = in a statement or a transaction.
        figure("serverPoolBusy", `server DB connections busy, mean (of ${serverPool.maxTotal} open)`, round(serverPool.meanBusy, 1), ""),
        figure("serverPoolMaxBusy", "server DB connections busy, max", serverPool.maxBusy, ""),
        figure("statementsPerWorkflow", "Postgres statements per workflow", round(q.statements / workflows, 1), ""),
      ],
      usage,
      topStatements: await ctx.pg.topStatements(dex.database, 12),
      notes: [`${workflows} workflows, ${inFlight} in flight, ${seconds.toFixed(1)} s; workers: 1 workflow process (100 slots), 1 activity process (3 queues x 100 slots)`],
    };
  } finally {
    await dex.close();
  }
}
