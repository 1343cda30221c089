/**
 * Retention under load: two servers with a 2 s default retention, both
 * sweeping every second, while workflows start, run activities and timers,
 * and end; a worker is killed along the way. A trigger (installed here, in
 * the chaos schema) records every run row deleted, with its status and end
 * time as they were, so the checker can hold retention to its promise: it
 * deleted only ended runs past their retention, and left nothing behind for
 * them (invariants.ts: retentionDeletedOnlyExpired, nothing orphaned). Every
 * run still present keeps its whole history (historyContiguous).
 */
import { check, type Scenario } from "../environment.js";
import { pause, settle, startCluster, startOrders } from "./common.js";

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
    const starting = startOrders(ctx, cluster.client, "ret", n, p.spreadMs);

    await pause(ctx.rng.int(p.spreadMs / 3, p.spreadMs / 2));
    const victim = cluster.workflowWorkers[0]!;
    await victim.stop("SIGKILL");
    ctx.log("SIGKILL workflow worker 1");
    await pause(500);
    await victim.start();

    const stats = await starting;
    const settled = await settle(ctx, stats);
    const ids = [...stats.runs.values()];
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
    ctx.log(`${deleted!.n} runs deleted by retention (${deleted!.during} before the last run ended), ${left} left`);
    return {
      did: [`${stats.runs.size} workflows started over ${p.spreadMs / 1000} s on 2 sweeping servers`, "1 workflow worker SIGKILL", settled.line, `${deleted!.n} runs deleted by retention`],
      expect: { runs: settled.runs, retentionSeconds: RETENTION_SECONDS },
      checks: [
        ...settled.checks,
        check("retention deleted every ended run once past its retention", left === 0, `${ids.length - left} of ${ids.length} deleted within ${p.drainTimeoutMs / 1000} s of the load ending`, left ? [`${left} runs still there`] : []),
        check("retention ran while the load ran (not only after)", deleted!.during > 0, `${deleted!.during} deleted before the last run ended`, deleted!.during ? [] : ["no run was deleted under load"]),
      ],
    };
  },
};
