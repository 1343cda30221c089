/**
 * The runs ListRuns is measured on, written straight into dex.runs in SQL:
 * 100,000 starts through the API take minutes on this machine and would
 * measure the start path, not the listing. The rows are what the server
 * writes (the same columns, UUIDv7 ids whose time is created_at, so `id desc`
 * is newest first as for real runs), without history: ListRuns reads none.
 *
 * The mix is skewed on purpose, because a filter's cost depends on how many
 * runs match it: common and rare workflows, queues, statuses and labels.
 */
import type postgres from "postgres";

/** [value, weight]: a categorical distribution, drawn per run with one random() each. */
type Mix = Array<[string, number]>;

export const WORKFLOWS: Mix = [
  ["orderFulfilment", 40], ["payment", 20], ["shipment", 15], ["refund", 10], ["invoice", 8], ["reminder", 5], ["fraudCheck", 1.5], ["auditReport", 0.5],
];
/** Workflow task queues; the bench creates them through the API first. */
export const QUEUES: Mix = [["default", 60], ["orders", 25], ["billing", 14], ["audit", 1]];
export const STATUSES: Mix = [
  ["COMPLETED", 80], ["FAILED", 5], ["RUNNING", 8], ["CREATED", 2], ["CANCELLED", 2], ["TERMINATED", 1], ["TIMED_OUT", 1], ["CONTINUED_AS_NEW", 1],
];
export const REGIONS: Mix = [["eu", 50], ["us", 40], ["ap", 10]];
/** 50 tenants, evenly: a tenant label matches ~2% of runs. */
export const TENANTS = 50;
/** Share of runs carrying the label vip=yes (a rare label). */
export const VIP_SHARE = 0.002;
/** created_at spreads evenly over this many days before the seeding. */
export const DAYS = 30;

/** A SQL case expression that picks from `mix` by the uniform [0,1) value `r`. */
function pick(sql: postgres.Sql | postgres.TransactionSql, mix: Mix, r: postgres.PendingQuery<postgres.Row[]>) {
  const total = mix.reduce((sum, [, w]) => sum + w, 0);
  let upTo = 0;
  const arms = mix.map(([value, weight], i) => {
    upTo += weight / total;
    return i === mix.length - 1 ? sql`else ${value}` : sql`when ${r} < ${upTo} then ${value}`;
  });
  return sql`(case ${arms.reduce((all, arm) => sql`${all} ${arm}`)} end)`;
}

/**
 * Inserts `runs` runs, 25,000 per transaction, then VACUUM ANALYZE (as
 * autovacuum would soon after such a load; without statistics the planner
 * guesses). Returns the seeding time.
 */
export async function seedRuns(sql: postgres.Sql, runs: number): Promise<number> {
  const began = performance.now();
  const chunk = 25_000;
  for (let done = 0; done < runs; done += chunk) {
    const n = Math.min(chunk, runs - done);
    await sql.begin(async (tx) => {
      // One row of random draws per run, so each column's pick is independent of the others.
      await tx`
        create temporary table draws on commit drop as
        select ${done} + g as n, random() as rw, random() as rq, random() as rs, random() as rr, random() as rv,
               now() - random() * ${DAYS} * interval '1 day' as created_at
        from generate_series(1, ${n}) as g`;
      await tx`
        insert into dex.runs (id, instance_id, workflow_name, task_queue, status, labels, history_length, created_at, started_at, ended_at)
        select
          -- UUIDv7: 48 bits of Unix milliseconds, version 7, variant 10, random rest.
          (lpad(to_hex((extract(epoch from d.created_at) * 1000)::bigint), 12, '0') || '7' || substr(h, 1, 3)
            || substr('89ab', 1 + (d.n % 4)::int, 1) || substr(h, 4, 15))::uuid,
          'run-' || d.n,
          ${pick(tx, WORKFLOWS, tx`d.rw`)},
          ${pick(tx, QUEUES, tx`d.rq`)},
          ${pick(tx, STATUSES, tx`d.rs`)} as status,
          jsonb_build_object('tenant', 't' || (d.n % ${TENANTS}), 'region', ${pick(tx, REGIONS, tx`d.rr`)})
            || (case when d.rv < ${VIP_SHARE} then '{"vip": "yes"}'::jsonb else '{}'::jsonb end),
          8, d.created_at, d.created_at + interval '20 milliseconds',
          (case when ${pick(tx, STATUSES, tx`d.rs`)} not in ('CREATED', 'RUNNING') then d.created_at + interval '3 seconds' end)
        from draws d, md5(d.n::text || random()::text) as h`;
    });
  }
  await sql`vacuum analyze dex.runs`;
  return performance.now() - began;
}

/** How long building migration 0015's indexes takes on these runs (the write stall of a plain build); the copies are dropped. */
export async function timeMigrationIndexBuilds(sql: postgres.Sql): Promise<Record<string, number>> {
  const builds = {
    runs_by_task_queue: () => sql`create index timed_copy on dex.runs (task_queue, id desc)`,
  };
  const ms: Record<string, number> = {};
  for (const [name, build] of Object.entries(builds)) {
    const began = performance.now();
    await build();
    ms[name] = Math.round(performance.now() - began);
    await sql`drop index dex.timed_copy`;
  }
  return ms;
}
