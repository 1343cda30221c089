/**
 * Scenario 5 on dex: N runs parked (half on a 30-minute timer, half waiting
 * for an event), then a quiet window in which nothing is started: server CPU,
 * Postgres statements/s on the dex database, and the workflow worker's memory.
 * The window starts once every run has recorded its wait and no workflow task
 * is left (a condition, polled); its length is the measurement itself.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { idleFleetFigures } from "../comparable-figures.js";
import { Meter, round } from "../meter.js";
import { perSecond } from "../postgres.js";
import { memoryBytes } from "../proc.js";
import { figure, usageFigures, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { pool, waitFor } from "../stats.js";
import { startDex } from "../systems/dex.js";
import { WORKFLOW_QUEUE } from "../systems/dex-workload.js";

export async function dexIdleFleet(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { idleRuns: runs, idleSeconds } = ctx.sizes;
  const dex = await startDex(ctx.pg, ctx.group, "idle-fleet", { cpuProfDir: ctx.cpuProfDir });
  try {
    const wf = await dex.startWorkers("wf", [{ kind: "workflow", queue: WORKFLOW_QUEUE, concurrency: 100 }]);
    const t0 = performance.now();
    await pool(runs, 200, async (i) => {
      await dex.client.start("idleWorkflow", { instanceId: `idle-${i}`, input: i, taskQueue: WORKFLOW_QUEUE });
    });
    // Parked = the wait (timer or event) is in history (run started, task completed, wait started) and no workflow task remains.
    await waitFor(`${runs} runs to park`, 10 * 60_000, async () => {
      const [row] = await dex.sql<{ parked: number; tasks: number }[]>`
        select (select count(*)::int from dex.runs where status = 'RUNNING' and history_length >= 3) as parked,
               (select count(*)::int from dex.workflow_tasks) as tasks`;
      return row!.parked === runs && row!.tasks === 0 ? true : undefined;
    }, 500);
    ctx.log(`dex idle fleet: ${runs} runs parked in ${((performance.now() - t0) / 1000).toFixed(1)} s; measuring ${idleSeconds} s of idle`);
    const before = await ctx.pg.counters(dex.database);
    const topBefore = await ctx.pg.topStatements(dex.database, 200);
    const meter = new Meter([
      { name: "server", pids: [dex.server.pid] },
      { name: "workers", pids: [wf.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    await sleep(idleSeconds * 1000); // the idle window being measured
    const { seconds, usage } = meter.stop();
    const q = perSecond(before, await ctx.pg.counters(dex.database));
    const idleStatements = statementsRunBetween(topBefore, await ctx.pg.topStatements(dex.database, 200));
    const workerRss = memoryBytes(wf.pid, false) / 2 ** 20;
    return {
      figures: [
        figure("serverCpuPct", "server CPU while idle", round((usage.server!.cpuSeconds / seconds) * 100, 2), "% core"),
        ...idleFleetFigures(seconds, { engine: usage.server!.cpuSeconds + usage.workers!.cpuSeconds, postgres: usage.postgres!.cpuSeconds }, q.statementsPerSec, workerRss),
        ...usageFigures(usage),
      ],
      usage,
      // What the idle server still runs: the target is under 5 statements/s, so each source matters.
      topStatements: idleStatements,
      notes: [`${runs} parked runs (half on a 30 min timer, half on an event), ${seconds.toFixed(1)} s window; statements counted by ${ctx.pg.queryCounter} on the dex database only`],
    };
  } finally {
    await dex.close();
  }
}

/** Statements whose call count grew between two pg_stat_statements snapshots, most calls first. */
function statementsRunBetween(
  before: Array<{ calls: number; meanMs: number; query: string }>,
  after: Array<{ calls: number; meanMs: number; query: string }>,
): Array<{ calls: number; meanMs: number; query: string }> {
  const earlier = new Map(before.map((s) => [s.query, s.calls]));
  return after
    .map((s) => ({ ...s, calls: s.calls - (earlier.get(s.query) ?? 0) }))
    .filter((s) => s.calls > 0)
    .sort((a, b) => b.calls - a.calls)
    .slice(0, 12);
}
