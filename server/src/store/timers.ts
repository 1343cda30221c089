/**
 * Timer SQL: creating and cancelling timers inside a workflow task completion,
 * and the timer loop's one statement that fires what is due.
 *
 * Lock order as everywhere (see workflow-tasks.ts): the run row first. Every
 * writer of a run's timers holds that run's row lock (completion, terminate),
 * so the timer rows themselves are never contended; the loop takes the run
 * locks with SKIP LOCKED and so never waits for (or deadlocks with) a
 * completion: a busy run's timers fire on the next pass, a few ms later.
 */
import { base64Array, type Queryable } from "./db.js";
import { dedupPrefixSql, openStatuses } from "./vocabulary.js";
import { DedupKind } from "../engine/model.js";

/** A timer not yet fired, as describe shows it. */
export interface TimerRecord {
  seq: number;
  kind: "timer" | "event_wait" | "run_timeout";
  fireAt: Date;
}

export interface NewTimer {
  seq: number;
  kind: "timer" | "event_wait";
  fireAt: Date;
  eventId: string | null;
  /** The inbox event the timer becomes when it fires (timer_fired / event_wait_timed_out). */
  event: Uint8Array;
}

/** All timers of one completion in one multi-row insert. The caller holds the run lock. */
export async function insertTimers(
  tx: Queryable,
  run: { id: string; taskQueue: string; priority: number },
  list: NewTimer[],
): Promise<void> {
  if (list.length === 0) return;
  await tx`
    insert into dex.timers (run_id, seq, kind, fire_at, event_id, workflow_queue, priority, event)
    select ${run.id}, seq, kind, fire_at, event_id, ${run.taskQueue}, ${run.priority}, decode(event, 'base64')
    from unnest(${list.map((t) => t.seq)}::int[], ${list.map((t) => t.kind)}::text[],
                ${list.map((t) => t.fireAt.toISOString())}::timestamptz[], ${list.map((t) => t.eventId)}::text[],
                ${base64Array(list.map((t) => t.event))}::text[]) as u(seq, kind, fire_at, event_id, event)`;
}

/** cancel_timer: the timer is gone; one that already fired sits in the inbox and is ignored by the SDK. */
export async function deleteTimers(tx: Queryable, runId: string, seqs: number[]): Promise<void> {
  if (seqs.length === 0) return;
  await tx`delete from dex.timers where run_id = ${runId} and seq = any(${seqs}::int[])`;
}

export interface FirePass {
  /** Due timer rows the pass looked at (the head of timers_due, at most `limit`). */
  due: number;
  /** Timers moved into inboxes. */
  fired: number;
  /** Runs with due timers that were locked by someone else (retry soon). */
  skippedRuns: number;
  /** Workflow queues that got new tasks, with how many each (to wake that many parked polls). */
  queues: Array<{ queue: string; tasks: number }>;
  /** Milliseconds (database clock) until the next timer that is not due yet; null when none. */
  nextInMs: number | null;
  /** The database clock at the pass (its transaction start), to translate hints into local time. */
  dbNow: Date;
  /**
   * Runs whose run timeout is due (kind 'run_timeout', at most `limit`): the statement leaves
   * these timers alone; engine/run-timeouts.ts ends each run in a transaction that deletes its timer.
   */
  runTimeouts: string[];
}

/**
 * Fires due timers in ONE statement (one implicit transaction, one round trip):
 *
 * 1. `due`: the head of timers_due, fire_at <= now() (the database clock, so
 *    never early whatever the servers' clocks say), at most `limit` rows;
 * 2. `locked`: their runs, FOR NO KEY UPDATE SKIP LOCKED (the lock order's run
 *    row first; a run that is being completed is skipped, not waited for, so
 *    the loop never queues behind a completion and cannot deadlock with one);
 * 3. `fired`: the `due` rows of the locked runs are deleted by primary key
 *    (fire_at never changes, so they are still due), so a second server
 *    running the same statement finds them gone (its DELETE re-checks the
 *    rows and skips deleted ones): each timer fires once;
 * 4. the timers' prepared events go to the inbox (dedup `timer:<seq>` as a
 *    backstop) and each open run gets its workflow task (ON CONFLICT DO
 *    NOTHING: a queued task hands the new rows out with it; a task in flight
 *    finds them when it completes, since finishWorkflowTask, under the run
 *    lock this statement had to get first, creates the next task for inbox
 *    rows that arrived meanwhile);
 * 5. the time to the next not-yet-due timer (an index probe), so the loop can
 *    sleep exactly that long.
 * The queues that got tasks come back with the pass: the loop wakes this
 * server's polls and announces them to the other servers after the statement
 * (no NOTIFY in it: store/notify.ts).
 * Run timeouts (kind 'run_timeout') are not fired here: ending a run takes the
 * engine (its parent, children, concurrency key), so the pass only reports the
 * due ones (`runTimeouts`, one more probe of timers_due) and the loop hands them
 * to engine/run-timeouts.ts, whose transaction deletes the timer it acts on.
 * Timers of runs that already ended (defensive: ending deletes them), and of
 * runs that no longer exist, are deleted without firing, so they cannot clog
 * the head of the index. `skipped` counts only runs that exist and were
 * locked, so an orphan can never make the loop spin.
 * Cost: an index range scan of at most `limit` due rows plus one index probe,
 * however many timers sleep further out. The due runs are looked up as an
 * array (`= any(array(...))`), so runs and timers are reached through their
 * primary keys whatever the planner guesses about the CTEs' sizes: a pass
 * never scans dex.runs, however many runs there are. (Measured: 500 due
 * timers among 100,000 runs fire in one statement of about 15 ms; an idle
 * pass is three index probes.)
 */
export async function fireDueTimers(sql: Queryable, input: { limit: number }): Promise<FirePass> {
  const [row] = await sql<
    {
      due: number;
      fired: number;
      skipped: number;
      queues: Array<[string, number]>;
      next_in_ms: number | null;
      now_ms: number;
      run_timeouts: string[];
    }[]
  >`
    with due as (
      select run_id, seq from dex.timers where fire_at <= now() and kind <> 'run_timeout' order by fire_at limit ${input.limit}
    ), locked as (
      select r.id, r.task_queue, r.priority, r.status in ${openStatuses(sql)} as open
      from dex.runs r where r.id = any(array(select run_id from due))
      for no key update skip locked
    ), fired as (
      delete from dex.timers t using locked l
      where t.run_id = l.id and (t.run_id, t.seq) in (select run_id, seq from due)
      returning t.run_id, t.seq, t.kind, t.event, l.task_queue, l.priority, l.open
    ), orphans as (
      delete from dex.timers t
      where t.run_id = any(array(select run_id from due))
        and not exists (select 1 from dex.runs r where r.id = t.run_id)
    ), inboxed as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select run_id, case kind when 'timer' then 'timer_fired' else 'event_wait_timed_out' end, event, ${dedupPrefixSql(sql, DedupKind.TIMER)} || seq
      from fired where open
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
      returning run_id
    ), tasks as (
      insert into dex.workflow_tasks (queue_name, run_id, priority)
      select distinct on (run_id) task_queue, run_id, priority from fired where open
      on conflict do nothing
      returning queue_name
    )
    select (select count(*)::int from due) as due,
           (select count(*)::int from inboxed) as fired,
           (select count(*)::int from dex.runs r
            where r.id = any(array(select run_id from due)) and r.id <> all(array(select id from locked))) as skipped,
           (select coalesce(json_agg(json_build_array(q, n)), '[]'::json)
            from (select queue_name as q, count(*)::int as n from tasks group by queue_name) x) as queues,
           (select (extract(epoch from min(fire_at) - now()) * 1000)::float8 from dex.timers where fire_at > now()) as next_in_ms,
           (extract(epoch from now()) * 1000)::float8 as now_ms,
           array(select run_id from dex.timers where fire_at <= now() and kind = 'run_timeout'
                 order by fire_at limit ${input.limit})::text[] as run_timeouts`;
  return {
    due: row?.due ?? 0,
    fired: row?.fired ?? 0,
    skippedRuns: row?.skipped ?? 0,
    queues: (row?.queues ?? []).map(([queue, tasks]) => ({ queue, tasks })),
    nextInMs: row?.next_in_ms ?? null,
    dbNow: new Date(row?.now_ms ?? Date.now()),
    runTimeouts: row?.run_timeouts ?? [],
  };
}

/**
 * Fires one run's run timeout, once: deletes its 'run_timeout' timer and answers the run's
 * run timeout (0 for a timer whose run is gone), or undefined when the timer was not there.
 * The caller holds the run's lock (every writer of a run's timers does), so of two servers
 * handed the same due run, the one that gets the lock second (or retries after skipping the
 * locked run) finds the row gone.
 */
export async function takeRunTimeout(tx: Queryable, runId: string): Promise<{ runTimeoutMs: number } | undefined> {
  const [row] = await tx<{ ms: number | null }[]>`
    delete from dex.timers t where t.run_id = ${runId} and t.seq = 0 and t.kind = 'run_timeout'
    returning (select r.run_timeout_ms::float8 from dex.runs r where r.id = t.run_id) as ms`;
  return row ? { runTimeoutMs: row.ms ?? 0 } : undefined;
}

/**
 * Whether the run row exists (read without a lock). engine/run-timeouts.ts asks after a lock
 * taken SKIP LOCKED found no row: it tells a run someone else holds (leave its run timeout due,
 * retry) from one that is gone (delete its orphaned timer).
 */
export async function runExists(sql: Queryable, runId: string): Promise<boolean> {
  const rows = await sql`select 1 from dex.runs where id = ${runId}`;
  return rows.length > 0;
}

/** Describe: the run's timers not yet fired (cold path). */
export async function runTimers(sql: Queryable, runId: string): Promise<TimerRecord[]> {
  return sql<TimerRecord[]>`
    select seq, kind, fire_at as "fireAt" from dex.timers where run_id = ${runId}::uuid order by seq`;
}
