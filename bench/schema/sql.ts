/**
 * The statements and measurements of the schema benchmark (claims.ts): the
 * claim and lease extension in both lease designs, enqueueing, and reading
 * table statistics, query plans and WAL volume.
 */
import { loadavg } from "node:os";
import type { Queryable, Sql } from "../../server/src/store/db.js";
import { DEFAULT_STICKY_FALLBACK_MS } from "../../server/src/engine/model.js";
import { claimWorkflowTasks } from "../../server/src/store/workflow-tasks.js";

/** Long enough that no lease runs out during a run. */
export const LEASE_MS = 600_000;
export const WORKER = "bench-worker";

export type LeaseStyle = "visible_at" | "leased_until";

export interface Lease {
  runId: string;
  leaseId: string;
  lockVersion: number;
}

/** Where claims go and whose statistics are read. */
export interface Target {
  /** The table the statements name (a partitioned parent or a plain table). */
  table: string;
  /** The relation holding the queue's rows: its partition, or the plain table. */
  relation: string;
  style: LeaseStyle;
  /** Use the server's own claimWorkflowTasks() (dex.workflow_tasks only). */
  real: boolean;
}

// ---------------------------------------------------------------- statements

/**
 * The claim statement of server/src/store/workflow-tasks.ts on another table,
 * with the lease written either into visible_at (as there) or only into
 * leased_until (the alternative). Keep it in step with the real one.
 */
export function claimText(table: string, style: LeaseStyle): string {
  const available =
    style === "visible_at"
      ? "visible_at <= now()"
      : "visible_at <= now() and (leased_until is null or leased_until < now())";
  const intoVisibleAt = style === "visible_at" ? "visible_at = now() + $3 * interval '1 millisecond'," : "";
  return `
    with picked as (
      select queue_name, run_id from ${table}
      where queue_name = $1 and ${available}
      order by priority desc, visible_at
      limit $2
      for no key update skip locked
    ), leased as (
      update ${table} t
      set ${intoVisibleAt}
          leased_until = now() + $3 * interval '1 millisecond',
          lease_id = gen_random_uuid(),
          lock_version = t.lock_version + 1,
          attempt = t.attempt + 1,
          worker_id = $4,
          task_time = now(),
          inbox_ids = coalesce((select array_agg(i.id order by i.id) from dex.inbox i
                                where i.run_id = t.run_id and i.visible_at <= now()), '{}')
      from picked p
      where t.queue_name = p.queue_name and t.run_id = p.run_id
      returning t.run_id, t.lease_id, t.lock_version, t.attempt, t.task_time, t.inbox_ids
    ), started as (
      update dex.runs r set status = 'RUNNING', started_at = now()
      from leased l where r.id = l.run_id and r.status = 'CREATED'
    )
    select l.*, r.instance_id, r.workflow_name, r.history_length, r.history_size::text, r.sticky_worker_id
    from leased l join dex.runs r on r.id = l.run_id`;
}

/** Lease extension, fenced like heartbeatActivity(): visible_at + leased_until, or leased_until only. */
export function heartbeatText(table: string, style: LeaseStyle): string {
  const intoVisibleAt = style === "visible_at" ? "visible_at = now() + $5 * interval '1 millisecond'," : "";
  return `
    update ${table}
    set ${intoVisibleAt} leased_until = now() + $5 * interval '1 millisecond'
    where queue_name = $1 and run_id = $2 and lease_id = $3 and lock_version = $4
    returning leased_until`;
}

export async function claim(sql: Queryable, target: Target, queue: string, batch: number): Promise<Lease[]> {
  if (target.real) {
    const tasks = await claimWorkflowTasks(sql, { queue, limit: batch, workerId: WORKER, leaseMs: LEASE_MS, stickyFallbackMs: DEFAULT_STICKY_FALLBACK_MS });
    return tasks.map((t) => ({ runId: t.runId, leaseId: t.leaseId, lockVersion: t.lockVersion }));
  }
  const rows = await sql.unsafe<{ run_id: string; lease_id: string; lock_version: number }[]>(
    claimText(target.table, target.style),
    [queue, batch, LEASE_MS, WORKER],
    { prepare: true },
  );
  return rows.map((r) => ({ runId: r.run_id, leaseId: r.lease_id, lockVersion: r.lock_version }));
}

export async function heartbeat(sql: Queryable, target: Target, queue: string, lease: Lease): Promise<void> {
  const rows = await sql.unsafe(
    heartbeatText(target.table, target.style),
    [queue, lease.runId, lease.leaseId, lease.lockVersion, LEASE_MS],
    { prepare: true },
  );
  if (rows.length !== 1) throw new Error(`heartbeat of ${lease.runId} matched ${rows.length} rows`);
}

/**
 * Enqueues `count` tasks (and their CREATED runs, unless `withRuns` is false)
 * visible from `from` onwards, one microsecond apart, oldest first.
 */
export async function enqueue(
  sql: Sql,
  table: string,
  queue: string,
  count: number,
  from: string,
  withRuns = true,
): Promise<void> {
  const runs = withRuns
    ? `, r as (insert into dex.runs (id, instance_id, workflow_name, task_queue, status)
               select id, 'bench-' || id, 'bench', $1, 'CREATED' from ids)`
    : "";
  await sql.unsafe(
    `with ids as (select gen_random_uuid() as id, g from generate_series(1, $2::int) g)${runs}
     insert into ${table} (queue_name, run_id, priority, visible_at)
     select $1, id, 50, ${from} + g * interval '1 microsecond' from ids`,
    [queue, count],
  );
}

/** Completes claimed tasks (deletes their rows) and enqueues as many new ones: depth stays constant. Untimed. */
export async function completeAndRefill(sql: Sql, table: string, queue: string, leases: Lease[]): Promise<void> {
  await sql.unsafe(
    `with done as (delete from ${table} where queue_name = $1 and run_id = any($2::uuid[])),
          ids as (select gen_random_uuid() as id from generate_series(1, $3::int)),
          r as (insert into dex.runs (id, instance_id, workflow_name, task_queue, status)
                select id, 'bench-' || id, 'bench', $1, 'CREATED' from ids)
     insert into ${table} (queue_name, run_id, priority) select $1, id, 50 from ids`,
    [queue, leases.map((l) => l.runId), leases.length],
    { prepare: true },
  );
}

// ---------------------------------------------------------------- measurement helpers

export interface TableStats {
  upd: number;
  hot: number;
  indexBytes: number;
}

export async function tableStats(sql: Sql, relation: string): Promise<TableStats> {
  // Statistics reach shared memory when the backend goes idle; force the next flush.
  await sql`select pg_stat_force_next_flush()`;
  const [row] = await sql<{ upd: string; hot: string; index_bytes: string }[]>`
    select n_tup_upd::text as upd, n_tup_hot_upd::text as hot,
           pg_indexes_size(relid)::text as index_bytes
    from pg_stat_user_tables where relid = ${relation}::regclass`;
  return { upd: Number(row!.upd), hot: Number(row!.hot), indexBytes: Number(row!.index_bytes) };
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

export const ms = (x: number) => (Number.isNaN(x) ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(1));
export const pct = (hot: number, upd: number) => (upd === 0 ? "–" : `${((100 * hot) / upd).toFixed(0)} %`);
export const load = () => loadavg()[0]!.toFixed(1);
export const kib = (bytes: number) => `${Math.round(bytes / 1024).toLocaleString("en")}`;

/** What the claim's row-picking part reads, from EXPLAIN ANALYZE (inside a rolled-back transaction). */
export async function explainPick(sql: Sql, target: Target, queue: string, batch: number): Promise<string> {
  const available =
    target.style === "visible_at"
      ? "visible_at <= now()"
      : "visible_at <= now() and (leased_until is null or leased_until < now())";
  let summary = "";
  await sql
    .begin(async (tx) => {
      const [row] = await tx.unsafe<{ "QUERY PLAN": unknown }[]>(
        `explain (analyze, buffers, format json)
         select queue_name, run_id from ${target.table}
         where queue_name = $1 and ${available}
         order by priority desc, visible_at limit ${batch}
         for no key update skip locked`,
        [queue],
      );
      const plan = (row!["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan;
      let removed = 0;
      const scans: string[] = [];
      const walk = (node: PlanNode) => {
        removed += node["Rows Removed by Filter"] ?? 0;
        if (node["Index Name"]) scans.push(node["Index Name"]);
        else if (node["Node Type"] === "Seq Scan") scans.push("seq scan");
        for (const child of node.Plans ?? []) walk(child);
      };
      walk(plan);
      summary = `${scans.join("+") || plan["Node Type"]}; ${plan["Shared Hit Blocks"] + (plan["Shared Read Blocks"] ?? 0)} buffers; ${removed} rows filtered out`;
      throw new Rollback();
    })
    .catch((err: unknown) => {
      if (!(err instanceof Rollback)) throw err;
    });
  return summary;
}
export class Rollback extends Error {}
export interface PlanNode {
  "Node Type": string;
  "Index Name"?: string;
  "Rows Removed by Filter"?: number;
  "Shared Hit Blocks": number;
  "Shared Read Blocks"?: number;
  Plans?: PlanNode[];
}


/** Median WAL bytes written by `op`, each run in its own transaction that is then rolled back. */
export async function walPerOp(sql: Sql, count: number, op: (tx: Queryable) => Promise<void>): Promise<number> {
  const bytes: number[] = [];
  for (let i = 0; i < count; i++) {
    await sql
      .begin(async (tx) => {
        const [before] = await tx<{ lsn: string }[]>`select pg_current_wal_insert_lsn()::text as lsn`;
        await op(tx);
        const [diff] = await tx<{ bytes: string }[]>`
          select (pg_current_wal_insert_lsn() - ${before!.lsn}::pg_lsn)::text as bytes`;
        bytes.push(Number(diff!.bytes));
        throw new Rollback();
      })
      .catch((err: unknown) => {
        if (!(err instanceof Rollback)) throw err;
      });
  }
  bytes.sort((a, b) => a - b);
  return percentile(bytes, 0.5);
}

