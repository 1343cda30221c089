/**
 * Retention: deleting ended runs with every row that hangs off them, by the
 * sweep (engine/retention.ts) and by DeleteRun. Design and measurements:
 * docs/decisions/0021-retention.md.
 *
 * What a run owns: its dex.runs row, history_events, inbox, timers,
 * workflow_tasks and activity_tasks rows (keyed by run id; no foreign keys).
 * A run that ended normally has no tasks, inbox rows or timers left (the end
 * deletes them, store/lifecycle.ts), but a delete never trusts that: it
 * deletes them too, so nothing can outlive its run.
 *
 * Locking, and why nothing waits on it: a delete first locks the run rows
 * (FOR UPDATE; the sweep with SKIP LOCKED), then deletes the owned rows, then
 * the run rows, in ONE transaction: a reader sees the whole run or none of it,
 * never a run without history or history without a run. Everything that
 * writes a run's rows locks the run row first (the lock order of
 * store/completion-locks.ts), so it either finished before the delete locked
 * the run, or waits for the delete and then finds no run (NOT_FOUND,
 * FAILED_PRECONDITION); a delete never waits for it in turn: the sweep skips
 * locked runs, and an ended run's rows are locked by nobody else. Dispatch
 * never touches ended runs.
 */
import type { Queryable, Sql, TransactionSql } from "./db.js";
import { openStatuses } from "./vocabulary.js";

/** pg_try_advisory_xact_lock key of the sweep: "dexr". One sweeping transaction at a time, cluster-wide. */
const SWEEP_LOCK_KEY = 0x6465_7872;

export interface RunToDelete {
  id: string;
  taskQueue: string;
}

/** Rows deleted, per table: the sweep's log line and the tests read them. */
export interface DeletedRows {
  runs: number;
  historyEvents: number;
  inbox: number;
  timers: number;
  workflowTasks: number;
  activityTasks: number;
}

export function noRowsDeleted(): DeletedRows {
  return { runs: 0, historyEvents: 0, inbox: 0, timers: 0, workflowTasks: 0, activityTasks: 0 };
}

/**
 * Deletes the given runs (already locked by the caller, in this transaction)
 * and what they own. One statement: the data-modifying CTEs all see the same
 * snapshot and commit together. Each lookup uses the table's run index
 * (history_events and timers: primary key; inbox: inbox_by_run;
 * activity_tasks: activity_tasks_by_run; workflow_tasks: its primary key, so
 * the queue name comes with the id; event_ids: event_ids_by_run; update_ids:
 * update_ids_by_run; run_chains:
 * its primary key).
 */
async function deleteLockedRuns(tx: TransactionSql, runs: RunToDelete[]): Promise<DeletedRows> {
  if (runs.length === 0) return noRowsDeleted();
  const ids = runs.map((r) => r.id);
  const queues = runs.map((r) => r.taskQueue);
  const [row] = await tx<
    { runs: number; history: number; inbox: number; timers: number; workflow_tasks: number; activity_tasks: number }[]
  >`
    with doomed as (
      select * from unnest(${ids}::uuid[], ${queues}::text[]) as d(id, queue)
    ), history as (
      delete from dex.history_events where run_id in (select id from doomed) returning 1
    ), inbox as (
      delete from dex.inbox where run_id in (select id from doomed) returning 1
    ), timers as (
      delete from dex.timers where run_id in (select id from doomed) returning 1
    ), workflow_tasks as (
      delete from dex.workflow_tasks w using doomed d where w.queue_name = d.queue and w.run_id = d.id returning 1
    ), activity_tasks as (
      delete from dex.activity_tasks where run_id in (select id from doomed) returning 1
    ), event_ids as (
      -- An event id is remembered for dedup as long as the run that accepted it is kept (decision 0022).
      delete from dex.event_ids where run_id in (select id from doomed)
    ), update_ids as (
      -- So is an update id, by the run that holds the update (migration 0016).
      delete from dex.update_ids where run_id in (select id from doomed)
    ), chains as (
      delete from dex.run_chains where run_id in (select id from doomed)
    ), runs as (
      delete from dex.runs where id in (select id from doomed) returning 1
    )
    select (select count(*) from runs)::int as runs, (select count(*) from history)::int as history,
           (select count(*) from inbox)::int as inbox, (select count(*) from timers)::int as timers,
           (select count(*) from workflow_tasks)::int as workflow_tasks,
           (select count(*) from activity_tasks)::int as activity_tasks`;
  return {
    runs: row!.runs,
    historyEvents: row!.history,
    inbox: row!.inbox,
    timers: row!.timers,
    workflowTasks: row!.workflow_tasks,
    activityTasks: row!.activity_tasks,
  };
}

/**
 * The workflow queues that have ended runs, with their own retention (NULL:
 * the server default, also for a queue deleted since its runs ended). A loose
 * index scan over runs_ended_by_queue: one index probe per queue, whatever
 * the number of ended runs.
 */
export async function queuesWithEndedRuns(sql: Queryable): Promise<Array<{ queue: string; retentionSeconds: number | null }>> {
  const rows = await sql<{ queue: string; retention_seconds: number | null }[]>`
    with recursive queues(name) as (
      (select task_queue from dex.runs where ended_at is not null order by task_queue limit 1)
      union all
      select (select r.task_queue from dex.runs r where r.ended_at is not null and r.task_queue > q.name
              order by r.task_queue limit 1)
      from queues q where q.name is not null
    )
    select q.name as queue, t.retention_seconds
    from queues q left join dex.task_queues t on t.type = 'workflow' and t.name = q.name
    where q.name is not null`;
  return rows.map((r) => ({ queue: r.queue, retentionSeconds: r.retention_seconds }));
}

/**
 * The sweep's candidate filter for one queue: ended longer than
 * `retentionSeconds` ago, and not the parent of an open run (an open child
 * reports its end to its parent, locking the parent's row: the row must be
 * there). Oldest first along runs_ended_by_queue.
 */
function expired(sql: Queryable, queue: string, retentionSeconds: number) {
  return sql`
    r.task_queue = ${queue} and r.ended_at is not null
    and r.ended_at < now() - make_interval(secs => ${retentionSeconds})
    and r.status not in ${openStatuses(sql)}
    and not exists (select 1 from dex.runs c where c.parent_run_id = r.id and c.status in ${openStatuses(sql)})`;
}

export type SweepBatch = { locked: false } | { locked: true; deleted: DeletedRows; ms: number };

/**
 * One batch of the sweep, in one short transaction: take the cluster-wide
 * sweep lock without waiting (another server sweeping answers `locked:
 * false`, and this server leaves the work to it), lock up to `limit` expired
 * runs of the queue (SKIP LOCKED: a run someone else holds, e.g. a DeleteRun,
 * is left for the next batch), delete them. `ms`: how long the transaction
 * held its locks, as the database measured it.
 */
export async function sweepBatch(sql: Sql, queue: string, retentionSeconds: number, limit: number): Promise<SweepBatch> {
  return sql.begin(async (tx): Promise<SweepBatch> => {
    const [lock] = await tx<{ locked: boolean }[]>`select pg_try_advisory_xact_lock(${SWEEP_LOCK_KEY}) as locked`;
    if (!lock?.locked) return { locked: false };
    const runs = await tx<{ id: string; task_queue: string }[]>`
      select r.id, r.task_queue from dex.runs r
      where ${expired(tx, queue, retentionSeconds)}
      order by r.ended_at
      limit ${limit}
      for update skip locked`;
    const deleted = await deleteLockedRuns(tx, runs.map((r) => ({ id: r.id, taskQueue: r.task_queue })));
    const [clock] = await tx<{ ms: number }[]>`
      select (extract(epoch from clock_timestamp() - now()) * 1000)::float8 as ms`;
    return { locked: true, deleted, ms: clock?.ms ?? 0 };
  });
}

/**
 * The oldest expired run the sweep could delete now, per queue: seconds past
 * its retention (0 when none). What an operator pages on: it grows only when
 * no server sweeps, or the sweep falls behind (a parent kept for its open
 * child does not count: it is not deletable).
 */
export async function oldestOverdueSeconds(
  sql: Queryable,
  defaultRetentionSeconds: number,
): Promise<number> {
  let worst = 0;
  for (const { queue, retentionSeconds } of await queuesWithEndedRuns(sql)) {
    const retention = retentionSeconds ?? defaultRetentionSeconds;
    if (retention === 0) continue;
    const [row] = await sql<{ overdue: number }[]>`
      select extract(epoch from now() - r.ended_at)::float8 - ${retention} as overdue
      from dex.runs r where ${expired(sql, queue, retention)}
      order by r.ended_at limit 1`;
    if (row) worst = Math.max(worst, row.overdue);
  }
  return worst;
}

export type DeleteRunOutcome =
  | { outcome: "deleted"; deleted: DeletedRows; taskQueue: string }
  | { outcome: "missing" }
  | { outcome: "open"; status: string }
  | { outcome: "open_children"; children: number };

/**
 * DeleteRun: lock the run (waiting, as any write of a run does), refuse an
 * open run and the parent of an open run (the same rule as the sweep), then
 * delete it and what it owns.
 */
export async function deleteEndedRun(sql: Sql, runId: string): Promise<DeleteRunOutcome> {
  return sql.begin(async (tx): Promise<DeleteRunOutcome> => {
    const [run] = await tx<{ status: string; task_queue: string; ended: boolean }[]>`
      select status, task_queue, status not in ${openStatuses(tx)} as ended from dex.runs where id = ${runId} for update`;
    if (!run) return { outcome: "missing" };
    if (!run.ended) return { outcome: "open", status: run.status };
    const [children] = await tx<{ n: number }[]>`
      select count(*)::int as n from dex.runs where parent_run_id = ${runId} and status in ${openStatuses(tx)}`;
    if (children!.n > 0) return { outcome: "open_children", children: children!.n };
    const deleted = await deleteLockedRuns(tx, [{ id: runId, taskQueue: run.task_queue }]);
    return { outcome: "deleted", deleted, taskQueue: run.task_queue };
  });
}
