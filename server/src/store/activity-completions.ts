/**
 * THE activity outcome write: every completion and every failure of an
 * activity attempt, in a batch or alone, is this ONE statement (one implicit
 * transaction, one round trip, one commit); engine/activity-completions.ts
 * batches the calls (group commit). Each input either delivers an outcome to
 * the run (activity_completed, or the final activity_failed: task deleted,
 * event into the inbox, a workflow task for the run) or, for a failure the
 * retry policy retries, drops the lease and makes the next attempt visible
 * after the back-off (no history). The lease reaper writes its timed-out
 * attempts through it too (engine/activity-tasks.ts reapOnce), fenced by the
 * attempt it read; a task waiting unleased past its schedule-to-close
 * deadline has no lease id, hence `lease_id is not distinct from` (a worker's
 * token always names one, so for it this is `=`).
 *
 * Two forms, generated from this one text by the lock clause on the runs:
 * - `skip` (FOR NO KEY UPDATE SKIP LOCKED), for batches: never waits for a
 *   run row. A run another transaction holds (its workflow task completing,
 *   a signal arriving) is left out and its inputs answer `busy`.
 * - `wait` (FOR NO KEY UPDATE), for the inputs of ONE run: a busy input of a
 *   batch is written again this way, alone, and waits for the run's lock. It
 *   never answers `busy`.
 * Deadlocks (decision 0006): ancestor-first lockers (a child's completion
 * locks its parent, then itself) hold run rows while they wait for run rows.
 * The `skip` form waits for no run row; the `wait` form waits for one run row
 * only, holding nothing. Both then wait only for task rows (in key order, of
 * runs they hold), whose holders either wait for nothing (claims,
 * heartbeats) or hold that task's run, which this statement then does not
 * hold. So no cycle can form; the lock order is that of store/workflow-tasks.ts
 * (run row, then task row).
 *
 * `tasks` locks each input's task row FOR NO KEY UPDATE, fenced by lease id,
 * lock version and attempt, only for runs `runs` locked (the join pulls the
 * run row, hence its lock, before the task row is locked). A fence that does
 * not match under the run's lock is final: the lease it names is over (a
 * claim only takes unleased rows, and a lease id is never reused), so
 * `not_found`. Both CTEs are MATERIALIZED so they run once, before the writes
 * read them. `outcomes` keeps the first input per task (by input order): a
 * token sent twice in one batch is written once, the later copy answers
 * `not_found`, as it would one by one. A retry turns into the final outcome
 * if the workflow asked to cancel the activity meanwhile (cancel_requested,
 * read under the run lock that every writer of it holds): a cancelled
 * activity is never retried, its failure closes the call.
 *
 * The writes then delete the delivered tasks, put each outcome in its run's
 * inbox (the dedup key makes a second outcome for a call a no-op, as
 * insertInboxEvent), give each run a workflow task unless it has one (ON
 * CONFLICT DO NOTHING: a task in flight re-checks the inbox when it
 * completes, see finishWorkflowTask), and push retried tasks' visibility to
 * their next attempt. The caller NOTIFYs the workflow queues that got a task,
 * after the commit (engine/notifier.ts). (The write CTEs need no reference
 * from the final SELECT: Postgres runs every data-modifying CTE to completion.)
 *
 * All CTEs share one snapshot, taken before the locks were granted. That is
 * safe here: a locked row is re-read at its newest version (READ COMMITTED's
 * re-check), the writes follow the rows we locked, and the history dedup
 * check can only be stale for an outcome already moved into history, which
 * requires the task row to be gone already (then the fence matched nothing).
 * `busy` reads the run unlocked from that snapshot: open there but not locked
 * by us means another transaction held it (or ended it since; the `wait`
 * form then answers not_found).
 */
import { base64Array, type Queryable } from "./db.js";
import { openStatuses } from "./vocabulary.js";

export interface ActivityOutcomeInput {
  queue: string;
  runId: string;
  seq: number;
  /** Null only for the reaper's unleased tasks past schedule-to-close. */
  leaseId: string | null;
  lockVersion: number;
  /** The attempt the token was issued for: the event below names it. */
  attempt: number;
  /** The outcome for the inbox (delivered unless `retry` applies): kind, encoded event (without sequence and time), dedup key. */
  kind: string;
  event: Uint8Array;
  dedupKey: string;
  /** A failed attempt the retry policy retries: its failure, and the back-off before the next attempt. */
  retry?: { delayMs: number; lastFailure: Uint8Array } | undefined;
}

export type ActivityOutcomeAnswer =
  | { status: "written"; written: WrittenActivityOutcome }
  /** The token names no current attempt, or the run has ended: nothing written. */
  | { status: "not_found" }
  /** `skip` form only: another transaction held the run's row; nothing written, write it again alone (`wait`). */
  | { status: "busy" };

export interface WrittenActivityOutcome {
  runId: string;
  queue: string;
  workflowQueue: string;
  /** When the next attempt may start, for a retried failure; undefined when the outcome was delivered. */
  nextAttemptAt: Date | undefined;
  /** Whether this statement gave the run its workflow task (so a wake is due). */
  wokeWorkflow: boolean;
  leaseMs: number;
  startToCloseMs: number | null;
  attemptDeadline: Date | null;
  /** The database clock. */
  now: Date;
}

/** How the statement takes the run locks: see the header. `wait` takes the inputs of one run only. */
export type RunLocking = "skip" | "wait";

/** Writes the outcomes; one answer per input, in input order. */
export async function writeActivityOutcomes(
  sql: Queryable,
  items: readonly ActivityOutcomeInput[],
  locking: RunLocking,
): Promise<ActivityOutcomeAnswer[]> {
  if (items.length === 0) return [];
  const runIds = [...new Set(items.map((i) => i.runId))];
  // Waiting for two run rows could join a cycle with the ancestor-first lockers (header).
  if (locking === "wait" && runIds.length > 1) throw new Error("writeActivityOutcomes: the wait form takes one run");
  const rows = await sql<
    {
      ord: string;
      status: "written" | "not_found" | "busy";
      run_id: string | null;
      queue_name: string | null;
      workflow_queue: string | null;
      next_attempt_at: Date | null;
      woke: boolean | null;
      lease_ms: string | null;
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
                           ${items.map((i) => i.dedupKey)}::text[], ${items.map((i) => i.retry?.delayMs ?? null)}::bigint[],
                           ${base64Array(items.map((i) => i.retry?.lastFailure))}::text[])
        with ordinality as u(queue_name, run_id, seq, lease_id, lock_version, attempt, kind, event, dedup_key,
                             retry_ms, last_failure, ord)
    ), runs as materialized (
      select id, task_queue, priority from dex.runs
      where id = any(${runIds}::uuid[]) and status in ${openStatuses(sql)}
      order by id
      for no key update ${locking === "skip" ? sql`skip locked` : sql``}
    ), tasks as materialized (
      select t.queue_name, t.run_id, t.seq, t.lease_ms, t.start_to_close_ms, t.attempt_deadline,
             i.ord, i.kind, i.event, i.dedup_key, i.retry_ms, i.last_failure,
             i.retry_ms is not null and not t.cancel_requested as retried,
             r.task_queue as workflow_queue, r.priority
      from input i
      join runs r on r.id = i.run_id
      join dex.activity_tasks t on t.queue_name = i.queue_name and t.run_id = i.run_id and t.seq = i.seq
       and t.lease_id is not distinct from i.lease_id and t.lock_version = i.lock_version and t.attempt = i.attempt
      order by t.queue_name, t.run_id, t.seq
      for no key update of t
    ), outcomes as materialized (
      select distinct on (queue_name, run_id, seq) * from tasks order by queue_name, run_id, seq, ord
    ), deleted as (
      delete from dex.activity_tasks d using outcomes k
      where not k.retried and d.queue_name = k.queue_name and d.run_id = k.run_id and d.seq = k.seq
    ), retried as (
      update dex.activity_tasks d
      set visible_at = now() + k.retry_ms * interval '1 millisecond',
          leased_until = null, lease_id = null, worker_id = null, attempt_deadline = null,
          last_failure = decode(k.last_failure, 'base64')
      from outcomes k
      where k.retried and d.queue_name = k.queue_name and d.run_id = k.run_id and d.seq = k.seq
      returning k.ord, d.visible_at
    ), delivered as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select k.run_id, k.kind, decode(k.event, 'base64'), k.dedup_key from outcomes k
      where not k.retried
        and not exists (select 1 from dex.history_events h where h.run_id = k.run_id and h.dedup_key = k.dedup_key)
      order by k.ord
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
    ), woken as (
      insert into dex.workflow_tasks (queue_name, run_id, priority)
      select distinct workflow_queue, run_id, priority from outcomes where not retried
      on conflict do nothing
      returning queue_name, run_id
    )
    select i.ord::text,
           case when k.ord is not null then 'written'
                when ${locking === "skip"}::boolean and not exists (select 1 from runs r where r.id = i.run_id)
                     and exists (select 1 from dex.runs o where o.id = i.run_id and o.status in ${openStatuses(sql)}) then 'busy'
                else 'not_found' end as status,
           k.run_id, k.queue_name, k.workflow_queue, k.lease_ms::text, k.start_to_close_ms::text, k.attempt_deadline,
           (select r.visible_at from retried r where r.ord = k.ord) as next_attempt_at,
           not k.retried and exists (select 1 from woken w where w.run_id = k.run_id) as woke,
           now() as now
    from input i left join outcomes k on k.ord = i.ord
    order by i.ord`;
  return rows.map((r): ActivityOutcomeAnswer => {
    if (r.status !== "written") return { status: r.status };
    return {
      status: "written",
      written: {
        runId: r.run_id!,
        queue: r.queue_name!,
        workflowQueue: r.workflow_queue!,
        nextAttemptAt: r.next_attempt_at ?? undefined,
        wokeWorkflow: r.woke === true,
        leaseMs: Number(r.lease_ms),
        startToCloseMs: r.start_to_close_ms === null ? null : Number(r.start_to_close_ms),
        attemptDeadline: r.attempt_deadline,
        now: r.now,
      },
    };
  });
}
