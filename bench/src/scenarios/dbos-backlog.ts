/**
 * Scenario 4 on DBOS: the same backlog as dex-backlog.ts. A DBOSClient process
 * (dbos-enqueuer.ts, which never launches DBOS and so never dequeues) enqueues
 * N runs of a workflow that only returns its input on a queue nobody consumes;
 * then a DBOS process (dbos-runner.ts) is started, and its queue dispatcher
 * drains the queue. As for dex, the time to drain runs from starting that
 * process (dex: its worker process) until every run has completed, polled
 * every 250 ms, and CPU is metered over it: the consumer process from its
 * start, and Postgres.
 *
 * Not measured here: dex's "dispatch" figure, the round trip of a claim a
 * worker makes. A DBOS process makes no such call: its dispatcher dequeues up
 * to workerConcurrency runs in one transaction on a timer and starts them in
 * process, and DBOS exposes neither that transaction's duration nor a way for
 * a bench to claim one run. What DBOS does record is reported instead: when
 * each run was enqueued and dequeued (the queue wait, compared with dex's
 * created_at → started_at), how many dequeue transactions the drain took and
 * the interval between them while the queue was deep.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import postgres from "postgres";
import { backlogDrainFigures } from "../comparable-figures.js";
import { Meter, round } from "../meter.js";
import { perSecond } from "../postgres.js";
import { repoRoot, type Proc } from "../processes.js";
import { figure, usageFigures, type ScenarioContext, type ScenarioResult } from "../scenario.js";
import { percentile, waitFor } from "../stats.js";
import { DBOS_BACKLOG_QUEUE, DBOS_BACKLOG_QUEUE_OPTIONS, DBOS_BACKLOG_WORKFLOW, DBOS_SCHEMA } from "../systems/dbos-app.js";
import { freshDatabase, spawnRunner, type RunnerReply } from "../systems/runner.js";

export async function dbosBacklog(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { backlog: runs, backlogDepth: threshold } = ctx.sizes;
  const { database, url } = await freshDatabase(ctx, "dbos", "backlog");
  createDbosSchema(url);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  let consumer: Proc | undefined;
  try {
    const enqueuer = await spawnRunner(ctx, "dbos-backlog-enqueuer", "bench/src/systems/dbos-enqueuer.ts", { url, scenario: "backlog" });
    let started: RunnerReply;
    try {
      started = await enqueuer.request<RunnerReply>({ type: "go" }, 30 * 60_000);
    } finally {
      await ctx.group.stop(enqueuer);
    }
    if (started.type !== "result") throw new Error(`DBOS enqueue failed: ${started.message}`);
    const [queued] = await sql<{ n: number }[]>`
      select count(*)::int as n from ${sql(DBOS_SCHEMA)}.workflow_status where queue_name = ${DBOS_BACKLOG_QUEUE} and status = 'ENQUEUED'`;
    if (queued!.n !== runs) throw new Error(`${queued!.n} of ${runs} runs are enqueued before the consumer starts`);
    ctx.log(`dbos backlog: ${started.figures!.map((f) => `${f.label} ${f.value}${f.unit}`).join(", ")}`);

    const meter = new Meter([{ name: "postgres", pids: [ctx.pg.postmasterPid()], tree: true }]);
    const before = await ctx.pg.counters(database);
    const drainStart = performance.now();
    consumer = await spawnRunner(ctx, "dbos-backlog", "bench/src/systems/dbos-runner.ts", { url, scenario: "backlog" });
    meter.addStartedInside("dbos", [consumer.pid]);
    const consumerReadySeconds = (performance.now() - drainStart) / 1000;
    // Depth as dex counts it (waiting + running), on DBOS's (queue_name, status) index: cheap at any depth.
    await waitFor(`the DBOS backlog of ${runs} runs to drain`, 30 * 60_000, async () => {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from ${sql(DBOS_SCHEMA)}.workflow_status where queue_name = ${DBOS_BACKLOG_QUEUE} and status in ('ENQUEUED', 'PENDING')`;
      return row!.n === 0 ? true : undefined;
    }, 250);
    const drainSeconds = (performance.now() - drainStart) / 1000;
    const { usage } = meter.stop();
    const q = perSecond(before, await ctx.pg.counters(database));
    const rows = await sql<Array<{ status: string; enqueued: number; dequeued: number; completed: number }>>`
      select status, created_at::float8 as enqueued, started_at_epoch_ms::float8 as dequeued, completed_at::float8 as completed
      from ${sql(DBOS_SCHEMA)}.workflow_status where name = ${DBOS_BACKLOG_WORKFLOW}`;
    const ok = rows.filter((r) => r.status === "SUCCESS").length;
    if (ok !== runs) throw new Error(`DBOS backlog drained but ${ok} of ${runs} runs succeeded`);
    const waits = rows.map((r) => r.dequeued - r.enqueued);
    const dequeues = dequeueTimeline(rows, threshold);
    ctx.log(`dbos backlog: drained in ${drainSeconds.toFixed(1)} s in ${dequeues.count} dequeues`);
    return {
      figures: [
        ...started.figures!,
        ...backlogDrainFigures(runs, { drain: drainSeconds, consumerReady: consumerReadySeconds }, waits, q.statements),
        figure("runsPerDequeue", "runs per dequeue transaction", round(runs / dequeues.count, 1), ""),
        figure("dequeueIntervalP99Deep", `interval between dequeues p99, depth > ${threshold}`, round(percentile(dequeues.intervalsDeep, 99), 0), "ms"),
        ...usageFigures(usage),
      ],
      usage,
      topStatements: await ctx.pg.topStatements(database, 10),
      notes: [
        ...(started.notes ?? []),
        `consumer: one DBOS process, queue ${JSON.stringify(DBOS_BACKLOG_QUEUE_OPTIONS)}; time to drain from its start until every run is SUCCESS (polled every 250 ms)`,
        "queue wait = workflow_status started_at_epoch_ms (dequeue) - created_at (enqueue), exact per run",
        "dispatch (a claim's round trip) is not measured on DBOS: its dispatcher dequeues in batches on a timer inside the process and exposes no per-claim time",
        `interval between dequeues (from started_at_epoch_ms): a slot freed on DBOS waits at most one interval to be refilled; ${dequeues.intervalsDeep.length} intervals began while depth > ${threshold}`,
      ],
    };
  } finally {
    if (consumer) await ctx.group.stop(consumer);
    await sql.end({ timeout: 2 });
    await ctx.pg.dropDatabase(database);
  }
}

/** DBOS's system tables, created with its CLI (`dbos schema URL`), as an operator would before starting the application. */
export function createDbosSchema(url: string): void {
  const cli = join(repoRoot, "bench/node_modules/@dbos-inc/dbos-sdk/dist/src/cli/cli.js");
  const result = spawnSync(process.execPath, [cli, "schema", url], { cwd: repoRoot, encoding: "utf8" });
  if (result.status !== 0) throw new Error(`dbos schema failed (exit ${result.status}):\n${result.stdout}${result.stderr}`);
}

/**
 * The dequeues of a drain, from DBOS's own timestamps (epoch ms): a dequeue
 * stamps the started_at_epoch_ms of every run it claims with its transaction's
 * now(), so each dequeue is one distinct value (the queue's dequeues run one
 * after another, several round trips each, so two hardly ever share a
 * millisecond; if they did they would count as one). Depth at a time is the
 * runs not completed by then (all were enqueued before the drain).
 */
function dequeueTimeline(rows: Array<{ dequeued: number; completed: number }>, threshold: number): { count: number; intervalsDeep: number[] } {
  const times = [...new Set(rows.map((r) => r.dequeued))].sort((a, b) => a - b);
  const completed = rows.map((r) => r.completed).sort((a, b) => a - b);
  let done = 0;
  const intervalsDeep: number[] = [];
  for (let i = 1; i < times.length; i++) {
    while (done < completed.length && completed[done]! <= times[i - 1]!) done++;
    if (rows.length - done > threshold) intervalsDeep.push(times[i]! - times[i - 1]!);
  }
  return { count: times.length, intervalsDeep };
}
