/**
 * Retention under load: two servers with a 2 s default retention, both
 * sweeping every second, while workflows start, run activities and timers,
 * and end; a worker is killed along the way. A trigger (installed here, in
 * the chaos schema) records every run row deleted, with its status and end
 * time as they were, so the checker can hold retention to its promise: it
 * deleted only ended runs past their retention, and left nothing behind for
 * them (invariants.ts: retentionDeletedOnlyExpired, nothing orphaned). Every
 * run still present keeps its whole history (historyContiguous): a quarter
 * of the runs go to a queue with retention 0, so some always remain.
 */
import { TaskQueueType } from "@dex/proto";
import { check, type Scenario } from "../environment.js";
import type { StartStats } from "../workload.js";
import { pause, settle, startCluster, startOrders } from "./common.js";

/** A workflow queue that keeps its runs forever (retention 0), served by one colocated worker. */
const KEEP_QUEUE = "keep";

export const RETENTION_SECONDS = 2;

/** A record of every dex.runs row deleted, written by the deleting transaction itself. */
const DELETED_RUNS_SQL = `
  create table if not exists chaos.deleted_runs (
    run_id uuid primary key,
    status text not null,
    ended_at timestamptz,
    deleted_at timestamptz not null,
    open_children integer not null
  );
  create or replace function chaos.record_deleted_run() returns trigger language plpgsql as $$
  begin
    insert into chaos.deleted_runs (run_id, status, ended_at, deleted_at, open_children)
    values (old.id, old.status, old.ended_at, now(),
            (select count(*) from dex.runs c where c.parent_run_id = old.id and c.status in ('CREATED', 'RUNNING')));
    return old;
  end $$;
  drop trigger if exists record_deleted_run on dex.runs;
  create trigger record_deleted_run before delete on dex.runs for each row execute function chaos.record_deleted_run();
`;

export const retention: Scenario = {
  name: "retention",
  summary: "a 2 s retention swept by two servers under load and a worker kill: only ended runs past retention go, whole",
  async run(ctx) {
    const p = ctx.profile.retention;
    const n = ctx.workflows(p.workflows);
    await ctx.sql.unsafe(DELETED_RUNS_SQL);
    const env = { DEX_DEFAULT_RETENTION: `${RETENTION_SECONDS}s`, DEX_RETENTION_SWEEP_INTERVAL: "1s" };
    const cluster = await startCluster(ctx, { workflow: 2, activity: 1 }, { env });
    const second = await ctx.startServer({ env });
    ctx.log(`second sweeping server ${second.address}; retention ${RETENTION_SECONDS} s, swept every 1 s`);
    await cluster.client.raw.queues.createTaskQueue({ name: KEEP_QUEUE, type: TaskQueueType.WORKFLOW, retention: { seconds: 0n } });
    await ctx.createQueues(cluster.client, [{ name: KEEP_QUEUE, type: "activity" }]);
    await ctx.worker("keep-worker", { kind: "colocated", address: cluster.server.address, taskQueue: KEEP_QUEUE, concurrency: 10 }).start();
    const keepCount = Math.max(1, Math.floor(n / 4));
    const starting = startOrders(ctx, cluster.client, "ret", n - keepCount, p.spreadMs);
    const keeping = startOrders(ctx, cluster.client, "keep", keepCount, p.spreadMs, 4_000, KEEP_QUEUE);

    await pause(ctx.rng.int(p.spreadMs / 3, p.spreadMs / 2));
    const victim = cluster.workflowWorkers[0]!;
    await victim.stop("SIGKILL");
    ctx.log("SIGKILL workflow worker 1");
    await pause(500);
    await victim.start();

    const swept = await starting;
    const kept = await keeping;
    const stats = merge(swept, kept);
    const settled = await settle(ctx, stats);
    const ids = [...swept.runs.values()];
    const keptIds = [...kept.runs.values()];
    // Every run has ended: within a few sweeps all of them must be gone.
    const deadline = Date.now() + p.drainTimeoutMs;
    let left = ids.length;
    while (Date.now() < deadline) {
      const [row] = await ctx.sql<{ n: number }[]>`select count(*)::int as n from dex.runs where id = any(${ids}::uuid[])`;
      left = row!.n;
      if (left === 0) break;
      await pause(250);
    }
    const [deleted] = await ctx.sql<{ n: number; during: number }[]>`
      select count(*)::int as n, count(*) filter (where deleted_at < (select max(ended_at) from chaos.deleted_runs))::int as during
      from chaos.deleted_runs`;
    const [wrong] = await ctx.sql<{ n: number }[]>`select count(*)::int as n from chaos.deleted_runs where run_id = any(${keptIds}::uuid[])`;
    ctx.log(`${deleted!.n} runs deleted by retention (${deleted!.during} before the last run ended), ${left} left; ${keptIds.length} on the keep-forever queue`);
    return {
      did: [`${stats.runs.size} workflows started over ${p.spreadMs / 1000} s on 2 sweeping servers (${keptIds.length} on a keep-forever queue)`, "1 workflow worker SIGKILL", settled.line, `${deleted!.n} runs deleted by retention`],
      expect: { runs: settled.runs, retentionSeconds: RETENTION_SECONDS },
      checks: [
        ...settled.checks,
        check("retention deleted every ended run once past its retention", left === 0, `${ids.length - left} of ${ids.length} deleted within ${p.drainTimeoutMs / 1000} s of the load ending`, left ? [`${left} runs still there`] : []),
        check("no run of the keep-forever queue was deleted", wrong!.n === 0, `${keptIds.length} runs on "${KEEP_QUEUE}" (retention 0)`, wrong!.n ? [`${wrong!.n} deleted`] : []),
        check("retention ran while the load ran (not only after)", deleted!.during > 0, `${deleted!.during} deleted before the last run ended`, deleted!.during ? [] : ["no run was deleted under load"]),
      ],
    };
  },
};

function merge(a: StartStats, b: StartStats): StartStats {
  return { runs: new Map([...a.runs, ...b.runs]), retries: a.retries + b.retries, failures: [...a.failures, ...b.failures] };
}
