/**
 * Activity task SQL: claims, releases, heartbeats and the reads that feed a
 * failure's retry decision and the reaper. Every outcome of an attempt is
 * written by store/activity-completions.ts, which keeps the lock order of
 * workflow-tasks.ts (run row first, then the activity row). Claims and
 * heartbeats touch only the activity row.
 */
import { bytes, type Queryable } from "./db.js";
import { attemptDeadlineSql, leaseEndSql } from "./activity-lease.js";

export interface ActivityTaskRow {
  queue: string;
  runId: string;
  seq: number;
  activityName: string;
  instanceId: string;
  workflowName: string;
  workflowQueue: string;
  priority: number;
  input: Uint8Array | null;
  options: Uint8Array;
  /** The lease one claim or heartbeat grants: the heartbeat timeout if set, else start-to-close. */
  leaseMs: number;
  /** The hard cap on one attempt; null only for rows written before migration 0002 (lease_ms applies). */
  startToCloseMs: number | null;
  /** When the current attempt must end (claim + start-to-close); null while no attempt ran. */
  attemptDeadline: Date | null;
  /** request_cancel_activity reached the task while it was leased: its attempt is not retried. */
  cancelRequested: boolean;
  scheduledAt: Date;
  scheduleToCloseDeadline: Date | null;
  leasedUntil: Date | null;
  leaseId: string | null;
  lockVersion: number;
  attempt: number;
  heartbeatDetails: Uint8Array | null;
  lastFailure: Uint8Array | null;
  /** The run's W3C trace context (migration 0014), copied into the task row when it was scheduled; null: none. */
  traceContext: Record<string, string> | null;
  /** The database clock when the row was read. */
  now: Date;
}

type RawRow = {
  queue_name: string;
  run_id: string;
  seq: number;
  activity_name: string;
  instance_id: string;
  workflow_name: string;
  workflow_queue: string;
  priority: number;
  input: Buffer | null;
  options: Buffer;
  lease_ms: string;
  start_to_close_ms: string | null;
  attempt_deadline: Date | null;
  cancel_requested: boolean;
  scheduled_at: Date;
  schedule_to_close_deadline: Date | null;
  leased_until: Date | null;
  lease_id: string | null;
  lock_version: number;
  attempt: number;
  heartbeat_details: Buffer | null;
  last_failure: Buffer | null;
  trace_context: Record<string, string> | null;
  now: Date;
};

function fromRaw(r: RawRow): ActivityTaskRow {
  return {
    queue: r.queue_name,
    runId: r.run_id,
    seq: r.seq,
    activityName: r.activity_name,
    instanceId: r.instance_id,
    workflowName: r.workflow_name,
    workflowQueue: r.workflow_queue,
    priority: r.priority,
    input: r.input,
    options: r.options,
    leaseMs: Number(r.lease_ms),
    startToCloseMs: r.start_to_close_ms === null ? null : Number(r.start_to_close_ms),
    attemptDeadline: r.attempt_deadline,
    cancelRequested: r.cancel_requested,
    scheduledAt: r.scheduled_at,
    scheduleToCloseDeadline: r.schedule_to_close_deadline,
    leasedUntil: r.leased_until,
    leaseId: r.lease_id,
    lockVersion: r.lock_version,
    attempt: r.attempt,
    heartbeatDetails: r.heartbeat_details,
    lastFailure: r.last_failure,
    traceContext: r.trace_context,
    now: r.now,
  };
}

/**
 * Claims up to `limit` available tasks in ONE statement. Locking as for
 * workflow tasks (FOR NO KEY UPDATE SKIP LOCKED: concurrent pollers skip each
 * other's rows instead of queueing, and foreign-key checks are not blocked;
 * the lease is written into visible_at), with one difference: an expired
 * activity lease is not simply claimable again, it is a timed-out attempt
 * that the lease reaper sends through the retry policy; hence
 * `leased_until is null`. A task past its schedule-to-close deadline is left
 * to the reaper too (it fails for good), never started.
 *
 * The attempt's hard cap, attempt_deadline, is now + start-to-close; the
 * lease (now + lease_ms: the heartbeat timeout, or start-to-close) never runs
 * past it, nor past the schedule-to-close deadline. The values are computed
 * in `picked`, where the row is locked (the columns they read never change).
 * attempt_deadline is in no index, so the cap adds no index maintenance to
 * the claim (the lease's visible_at already costs what it costs).
 *
 * Capacity and pause: the outer LIMIT is dex.claim_limit(), as for workflow
 * tasks (see CLAIM_BUDGET in workflow-tasks.ts).
 */
export async function claimActivityTasks(
  sql: Queryable,
  input: { queue: string; limit: number; workerId: string },
): Promise<ClaimedActivityTask[]> {
  const rows = await sql<Array<RawRow & { available_at: Date }>>`
    with picked as (
      select * from (
        select queue_name, run_id, seq, visible_at as available_at, d.attempt_deadline,
               ${leaseEndSql(sql, sql`d.attempt_deadline`)} as lease_end
        from dex.activity_tasks,
             lateral (select ${attemptDeadlineSql(sql)} as attempt_deadline) d
        where queue_name = ${input.queue} and visible_at <= now() and leased_until is null
          and (schedule_to_close_deadline is null or schedule_to_close_deadline > now())
        order by priority desc, visible_at
        limit ${input.limit}
        for no key update of activity_tasks skip locked
      ) c
      limit dex.claim_limit('activity', ${input.queue}, ${input.limit}::int)
    )
    update dex.activity_tasks t
    set attempt_deadline = p.attempt_deadline,
        leased_until = p.lease_end,
        visible_at = p.lease_end,
        lease_id = gen_random_uuid(),
        lock_version = t.lock_version + 1,
        attempt = t.attempt + 1,
        worker_id = ${input.workerId}
    from picked p
    where t.queue_name = p.queue_name and t.run_id = p.run_id and t.seq = p.seq
    returning t.*, p.available_at, now() as now`;
  return rows
    .map((r) => ({ ...fromRaw(r), availableAt: r.available_at }))
    .sort((a, b) => b.priority - a.priority);
}

/** A claimed activity task, and since when it was available (scheduled, or its back-off or lease ended). */
export type ClaimedActivityTask = ActivityTaskRow & { availableAt: Date };

/** Hands claimed tasks back when the poll was cancelled before answering (attempt not counted). */
export async function releaseActivityTasks(sql: Queryable, refs: ActivityRef[]): Promise<void> {
  if (refs.length === 0) return;
  await sql`
    update dex.activity_tasks t
    set visible_at = now(), leased_until = null, lease_id = null, worker_id = null, attempt = t.attempt - 1,
        attempt_deadline = null
    from unnest(${refs.map((r) => r.runId)}::uuid[], ${refs.map((r) => r.seq)}::int[],
                ${refs.map((r) => r.leaseId)}::uuid[], ${refs.map((r) => r.lockVersion)}::int[])
         as u(run_id, seq, lease_id, lock_version)
    where t.queue_name = ${refs[0]!.queue} and t.run_id = u.run_id and t.seq = u.seq
      and t.lease_id = u.lease_id and t.lock_version = u.lock_version`;
}

export interface ActivityRef {
  queue: string;
  runId: string;
  seq: number;
  leaseId: string;
  lockVersion: number;
}

/**
 * The task row if it still carries this lease, read without locks: the retry decision of a
 * failed attempt reads it, and the outcome write (store/activity-completions.ts) re-checks the
 * fence under its locks. A lease id is never reused, so once it no longer matches it never will.
 */
export async function readLeasedActivity(sql: Queryable, ref: ActivityRef & { attempt: number }): Promise<ActivityTaskRow | undefined> {
  const [row] = await sql<RawRow[]>`
    select *, now() as now from dex.activity_tasks
    where queue_name = ${ref.queue} and run_id = ${ref.runId} and seq = ${ref.seq}
      and lease_id = ${ref.leaseId} and lock_version = ${ref.lockVersion} and attempt = ${ref.attempt}`;
  return row ? fromRaw(row) : undefined;
}

/**
 * Puts an activity outcome into the run's inbox, at most once per call: the
 * dedup index (run_id, dedup_key) makes a second outcome for the same seq a
 * no-op. Returns whether the row was inserted.
 */
export async function insertInboxEvent(
  tx: Queryable,
  input: { runId: string; kind: string; event: Uint8Array; dedupKey: string },
): Promise<boolean> {
  // The history check covers an outcome that already moved out of the inbox.
  const rows = await tx`
    insert into dex.inbox (run_id, kind, event, dedup_key)
    select ${input.runId}, ${input.kind}, ${bytes(input.event)}, ${input.dedupKey}
    where not exists (select 1 from dex.history_events where run_id = ${input.runId} and dedup_key = ${input.dedupKey})
    on conflict (run_id, dedup_key) where dedup_key is not null do nothing
    returning id`;
  return rows.length > 0;
}

/**
 * Extends a lease (fenced) by lease_ms (the heartbeat timeout, or
 * start-to-close), never past the attempt's hard cap (attempt_deadline) or
 * the schedule-to-close deadline; stores the heartbeat details (absent
 * details keep the last ones). A lease that already ran out cannot be
 * revived: that attempt has timed out and belongs to the reaper, so the
 * heartbeat answers "not found". One UPDATE of the row by its primary key
 * (a row lock for the statement only); attempt_deadline is read, never
 * written here.
 */
export async function heartbeatActivity(
  sql: Queryable,
  ref: ActivityRef & { attempt?: number },
  input: { details: Uint8Array | null },
): Promise<{ leaseDeadline: Date; cancelRequested: boolean } | undefined> {
  const [row] = await sql<{ leased_until: Date; cancel_requested: boolean }[]>`
    update dex.activity_tasks
    set leased_until = least(now() + lease_ms * interval '1 millisecond', coalesce(attempt_deadline, 'infinity'),
                             coalesce(schedule_to_close_deadline, 'infinity')),
        visible_at = least(now() + lease_ms * interval '1 millisecond', coalesce(attempt_deadline, 'infinity'),
                           coalesce(schedule_to_close_deadline, 'infinity')),
        last_heartbeat_at = now(),
        heartbeat_details = coalesce(${bytes(input.details)}, heartbeat_details)
    where queue_name = ${ref.queue} and run_id = ${ref.runId} and seq = ${ref.seq}
      and lease_id = ${ref.leaseId} and lock_version = ${ref.lockVersion}
      and attempt = coalesce(${ref.attempt ?? null}::int, attempt)
      and leased_until > now()
    returning leased_until, cancel_requested`;
  return row ? { leaseDeadline: row.leased_until, cancelRequested: row.cancel_requested } : undefined;
}

/** A task the reaper must fail, as read (unlocked), and why. */
export type ReapCandidate = ActivityTaskRow & { reason: "lease_expired" | "schedule_to_close" };

/**
 * Tasks the reaper must fail: leases that ran out (index activity_tasks_leased)
 * and waiting tasks past their schedule-to-close deadline (index
 * activity_tasks_deadline). Read without locks, whole (the reaper decides
 * from the row); the outcome write then locks the run and re-checks the
 * fence, so several servers reaping at once fail each attempt exactly once.
 */
export async function findReapable(sql: Queryable, limit: number): Promise<ReapCandidate[]> {
  const rows = await sql<Array<RawRow & { reason: ReapCandidate["reason"] }>>`
    (select *, now() as now, 'lease_expired' as reason
     from dex.activity_tasks where leased_until is not null and visible_at <= now()
     order by visible_at limit ${limit})
    union all
    (select *, now() as now, 'schedule_to_close' as reason
     from dex.activity_tasks where schedule_to_close_deadline <= now() and leased_until is null
     order by schedule_to_close_deadline limit ${limit})`;
  return rows.map((r) => ({ ...fromRaw(r), reason: r.reason }));
}
