/**
 * A batch of activity completions in ONE statement (one implicit transaction,
 * one round trip, one commit), for the group commit in
 * engine/activity-completions.ts. The one-by-one path (engine/activity-tasks.ts)
 * needs five statements in an explicit transaction per completion.
 *
 * Locking, in the order of store/workflow-tasks.ts (run row, then task row):
 * - `runs` locks the open runs of the batch FOR NO KEY UPDATE SKIP LOCKED, in
 *   id order. It never waits: a run whose row another transaction holds (its
 *   workflow task is completing, a signal is arriving) is simply left out, and
 *   its completions go the one-by-one path, which waits for the lock. So this
 *   statement holds run locks only while it waits for task rows, and every
 *   holder of a task row either waits for nothing (claims, heartbeats) or
 *   holds that task's run, which this statement then skipped: no deadlock.
 * - `tasks` locks each completion's task row FOR NO KEY UPDATE, fenced by lease
 *   id, lock version and attempt; only rows of runs `runs` locked (the join
 *   pulls the run row, hence its lock, before the task row is locked). Rows
 *   are locked in key order, so two batches never wait for each other in a
 *   cycle (their runs are disjoint anyway: each skips the other's).
 * Both CTEs are MATERIALIZED so they run once, before the writes read them.
 * (The write CTEs need no reference from the final SELECT: Postgres runs
 * every data-modifying CTE to completion.)
 * The writes then delete the tasks, put each outcome in its run's inbox (the
 * dedup key makes a second outcome for a call a no-op, as insertInboxEvent),
 * and give each run a workflow task unless it has one (ON CONFLICT DO
 * NOTHING: a task in flight re-checks the inbox when it completes, see
 * finishWorkflowTask). The caller NOTIFYs the workflow queues that got one,
 * after the commit (engine/notifier.ts).
 *
 * All CTEs share one snapshot, taken before the locks were granted. That is
 * safe here: a locked row is re-read at its newest version (READ COMMITTED's
 * re-check), the delete follows the row we locked, and the history dedup
 * check can only be stale for an outcome already moved into history, which
 * requires the task row to be gone already (then the fence matched nothing).
 */
import { base64Array, type Queryable } from "./db.js";
import { openStatuses } from "./vocabulary.js";

export interface ActivityCompletionInput {
  queue: string;
  runId: string;
  seq: number;
  leaseId: string;
  lockVersion: number;
  /** The attempt the token was issued for: the event below names it. */
  attempt: number;
  /** The inbox row: kind, encoded event (without sequence and time), dedup key. */
  kind: string;
  event: Uint8Array;
  dedupKey: string;
}

export interface CompletedActivity {
  /** Index into the input. */
  index: number;
  runId: string;
  queue: string;
  workflowQueue: string;
  /** Whether this statement gave the run its workflow task (so a wake is due). */
  wokeWorkflow: boolean;
  leaseMs: number;
  startToCloseMs: number | null;
  attemptDeadline: Date | null;
  /** The database clock. */
  now: Date;
}

export async function completeActivitiesBatch(
  sql: Queryable,
  items: readonly ActivityCompletionInput[],
): Promise<CompletedActivity[]> {
  if (items.length === 0) return [];
  const rows = await sql<
    {
      ord: string;
      run_id: string;
      queue_name: string;
      workflow_queue: string;
      woke: boolean;
      lease_ms: string;
      start_to_close_ms: string | null;
      attempt_deadline: Date | null;
      now: Date;
    }[]
  >`
    with input as materialized (
      select * from unnest(${items.map((i) => i.queue)}::text[], ${items.map((i) => i.runId)}::uuid[],
                           ${items.map((i) => i.seq)}::int[], ${items.map((i) => i.leaseId)}::uuid[],
                           ${items.map((i) => i.lockVersion)}::int[], ${items.map((i) => i.attempt)}::int[],
                           ${items.map((i) => i.kind)}::text[], ${base64Array(items.map((i) => i.event))}::text[],
                           ${items.map((i) => i.dedupKey)}::text[])
        with ordinality as u(queue_name, run_id, seq, lease_id, lock_version, attempt, kind, event, dedup_key, ord)
    ), runs as materialized (
      select id, task_queue, priority from dex.runs
      where id = any(${[...new Set(items.map((i) => i.runId))]}::uuid[]) and status in ${openStatuses(sql)}
      order by id
      for no key update skip locked
    ), tasks as materialized (
      select t.queue_name, t.run_id, t.seq, t.lease_ms, t.start_to_close_ms, t.attempt_deadline,
             i.ord, i.kind, i.event, i.dedup_key, r.task_queue as workflow_queue, r.priority
      from input i
      join runs r on r.id = i.run_id
      join dex.activity_tasks t on t.queue_name = i.queue_name and t.run_id = i.run_id and t.seq = i.seq
       and t.lease_id = i.lease_id and t.lock_version = i.lock_version and t.attempt = i.attempt
      order by t.queue_name, t.run_id, t.seq
      for no key update of t
    ), deleted as (
      delete from dex.activity_tasks d using tasks k
      where d.queue_name = k.queue_name and d.run_id = k.run_id and d.seq = k.seq
    ), delivered as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select k.run_id, k.kind, decode(k.event, 'base64'), k.dedup_key from tasks k
      where not exists (select 1 from dex.history_events h where h.run_id = k.run_id and h.dedup_key = k.dedup_key)
      order by k.ord
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
    ), woken as (
      insert into dex.workflow_tasks (queue_name, run_id, priority)
      select distinct workflow_queue, run_id, priority from tasks
      on conflict do nothing
      returning queue_name, run_id
    )
    select k.ord::text, k.run_id, k.queue_name, k.workflow_queue, k.lease_ms::text, k.start_to_close_ms::text,
           k.attempt_deadline, now() as now,
           exists (select 1 from woken w where w.run_id = k.run_id) as woke
    from tasks k`;
  return rows.map((r) => ({
    index: Number(r.ord) - 1,
    runId: r.run_id,
    queue: r.queue_name,
    workflowQueue: r.workflow_queue,
    wokeWorkflow: r.woke,
    leaseMs: Number(r.lease_ms),
    startToCloseMs: r.start_to_close_ms === null ? null : Number(r.start_to_close_ms),
    attemptDeadline: r.attempt_deadline,
    now: r.now,
  }));
}
