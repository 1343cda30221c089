/**
 * Scenario 4 on dex: N runs started on one workflow queue with no worker
 * polling it, then a worker process started and the queue drained.
 *
 * Dispatch latency here is how long a poll takes to hand out a task while the
 * queue is deep: the claim, not the wait in the queue (every task of a backlog
 * waits long by construction; the server's dex_task_dispatch_latency_seconds
 * histogram measures that wait, and is reported alongside as "queue wait").
 * It is measured by a probe in this process: a minimal worker (four lanes) that polls one
 * task at a time (every 50 ms per lane, beside the real worker), times the
 * PollWorkflowTasks call, and completes the run as the workflow would.
 */
import { TaskQueueType } from "@dex/proto";
import { backlogDrainFigures, backlogStartFigures } from "../comparable-figures.js";
import { startDispatchProbe } from "../dispatch-probe.js";
import { Meter, round } from "../meter.js";
import { perSecond } from "../postgres.js";
import { figure, usageFigures, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { percentile, pool, waitFor } from "../stats.js";
import { startDex, type DexEnv } from "../systems/dex.js";
import { BACKLOG_QUEUE } from "../systems/dex-workload.js";
import { histogramQuantile, scrapeHistogram } from "../metrics.js";

export async function dexBacklog(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { backlog: runs, backlogDepth: threshold } = ctx.sizes;
  const dex = await startDex(ctx.pg, ctx.group, "backlog", { cpuProfDir: ctx.cpuProfDir });
  try {
    const t0 = performance.now();
    await pool(runs, 200, async (i) => {
      await dex.client.start("backlogWorkflow", { instanceId: `bl-${i}`, input: i, taskQueue: BACKLOG_QUEUE });
    });
    const startSeconds = (performance.now() - t0) / 1000;
    ctx.log(`dex backlog: ${runs} starts in ${startSeconds.toFixed(1)} s`);

    let depth = await queueDepth(dex);
    const meter = new Meter([
      { name: "server", pids: [dex.server.pid] },
      { name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true },
    ]);
    const before = await ctx.pg.counters(dex.database);
    const drainStart = performance.now();
    const worker = await dex.startWorkers("wf", [{ kind: "workflow", queue: BACKLOG_QUEUE, concurrency: 100 }]);
    // The worker runs the workflows: metered from its start, as DBOS's consumer process is (dbos-backlog.ts).
    meter.addStartedInside("workers", [worker.pid]);
    const workerReadySeconds = (performance.now() - drainStart) / 1000;
    const probe = startDispatchProbe(dex, () => depth);
    await waitFor(`the backlog of ${runs} runs to drain`, 30 * 60_000, async () => {
      depth = await queueDepth(dex);
      return depth === 0 ? true : undefined;
    }, 250);
    const probes = await probe.stop();
    const drainSeconds = (performance.now() - drainStart) / 1000;
    const { usage } = meter.stop();
    const q = perSecond(before, await ctx.pg.counters(dex.database));
    const rows = await dex.sql<{ status: string; wait_ms: number }[]>`
      select status, (extract(epoch from started_at - created_at) * 1000)::float8 as wait_ms from dex.runs where task_queue = ${BACKLOG_QUEUE}`;
    const done = rows.filter((r) => r.status === "COMPLETED").length;
    if (done !== runs) throw new Error(`backlog drained but ${done} of ${runs} runs completed`);
    const deep = probes.filter((p) => p.depth > threshold).map((p) => p.ms);
    const wait = await scrapeHistogram(dex.metricsUrl, "dex_task_dispatch_latency_seconds", { type: "workflow", queue: BACKLOG_QUEUE });
    ctx.log(`dex backlog: drained in ${drainSeconds.toFixed(1)} s; ${deep.length} probe claims while depth > ${threshold}`);
    return {
      figures: [
        ...backlogStartFigures(runs, startSeconds),
        ...backlogDrainFigures(runs, { drain: drainSeconds, consumerReady: workerReadySeconds }, rows.map((r) => r.wait_ms), q.statements),
        figure("queueWaitP99Histogram", "queue wait p99 (server histogram)", round(histogramQuantile(wait, 0.99) * 1000, 0), "ms"),
        figure("dispatchP50Deep", `dispatch p50, depth > ${threshold}`, round(percentile(deep, 50), 1), "ms"),
        figure("dispatchP99Deep", `dispatch p99, depth > ${threshold}`, round(percentile(deep, 99), 1), "ms"),
        figure("dispatchP99All", "dispatch p99, whole drain", round(percentile(probes.map((p) => p.ms), 99), 1), "ms"),
        ...usageFigures(usage),
      ],
      usage,
      topStatements: await ctx.pg.topStatements(dex.database, 10),
      notes: [
        `dispatch = PollWorkflowTasks round trip of a 1-task probe poller (${probes.length} claims, ${deep.length} while depth > ${threshold}); the real worker process (100 slots) drains beside it`,
        "queue wait = dex.runs started_at (first claim) - created_at, exact per run; the server's available-to-claimed histogram gives its own estimate (coarse buckets above 10 s)",
      ],
    };
  } finally {
    await dex.close();
  }
}

/** Tasks waiting plus leased on the backlog queue, as ListTaskQueues reports them. */
async function queueDepth(dex: DexEnv): Promise<number> {
  const { queues } = await dex.client.raw.queues.listTaskQueues({ type: TaskQueueType.WORKFLOW });
  const q = queues.find((x) => x.name === BACKLOG_QUEUE);
  return q ? Number(q.depth) + Number(q.inFlight) : 0;
}
