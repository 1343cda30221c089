/**
 * Workflow task SQL: claim, fenced completion and failure.
 *
 * Lock order, held by every write path so they cannot deadlock: the run row
 * first (FOR NO KEY UPDATE), then task rows, then inbox rows. The claim is the
 * one exception: it locks only task rows it can take without waiting (SKIP
 * LOCKED), then updates the run row while it is CREATED. Other writers may
 * hold a CREATED run's lock (an event, a cancel request, terminate), so they
 * must never wait for its task row; store/lifecycle.ts says how they avoid it.
 */
import type { Queryable } from "./db.js";

export interface ClaimedWorkflowTask {
  runId: string;
  queue: string;
  leaseId: string;
  lockVersion: number;
  attempt: number;
  taskTime: Date;
  /** Since when the task could be handed out (created, back-off or lease ended); database clock, like taskTime. */
  availableAt: Date;
  inboxIds: number[];
  /** The inbox rows of inboxIds, in the same order (read by the claim itself). */
  inbox: Array<{ event: Uint8Array; createdAt: Date }>;
  instanceId: string;
  workflowName: string;
  historyLength: number;
  historySize: number;
  stickyWorkerId: string | null;
  /** The lease the claim gave: the run's workflow task timeout, else the caller's leaseMs. */
  leaseMs: number;
  /** The run's W3C trace context (migration 0014), null when its start carried none. */
  traceContext: Record<string, string> | null;
}

/*
 * STICKY ROUTING (docs/decisions/0009-sticky-routing.md): a task whose run is
 * sticky to another worker (runs.sticky_worker_id, set by the completion) is
 * left to that worker, which holds the run in its cache, unless
 * - the task has been available for stickyFallbackMs already (the owner is
 *   gone or too busy; Temporal's sticky schedule-to-start timeout), or
 * - attempt > 0: it was handed out before and failed or its lease ran out
 *   (the owner died holding it, or its cache was wrong). Such a task gets the
 *   full history anyway (engine/workflow-tasks.ts), so stickiness buys nothing.
 * The test is a filter on the same index-ordered SKIP LOCKED scan, not a
 * second access path: the sticky owner is read per candidate row by primary
 * key from dex.runs, unlocked (a stale value only misroutes one task, which
 * then replays; the completion fence is unchanged). No column is added to
 * the task rows and no index changes, so leases stay HOT. Priority and FIFO
 * order are kept: a worker takes its own and unowned tasks in index order.
 * Cost: the scan walks past other workers' fresh sticky tasks, at most the
 * tasks that became available in the last stickyFallbackMs.
 */

/**
 * Claims up to `limit` visible tasks of one queue in ONE statement (one
 * implicit transaction, one round trip).
 *
 * Locking: FOR NO KEY UPDATE SKIP LOCKED. SKIP LOCKED lets concurrent pollers
 * take different rows instead of queueing behind each other; NO KEY UPDATE
 * (not FOR UPDATE) is enough because the key never changes, and it does not
 * block foreign-key-style share locks. The lease is written into visible_at
 * itself, so leased rows drop out of the claim index range and an expired
 * lease makes the task claimable again with no reaper. lock_version + 1 and a
 * fresh random lease_id fence the previous holder out.
 *
 * The inbox rows visible now are recorded with the lease (inbox_ids): exactly
 * those are handed out, and exactly those move into history on completion.
 * The same statement returns them (base64 text[]: postgres.js reads no bytea
 * arrays), which saves the poll a second query: a sticky worker's task needs
 * nothing else. The final SELECT reads the statement's snapshot, in which
 * every row `leased` put into inbox_ids is visible.
 *
 * CLAIM_BUDGET: capacity and pause are enforced by this statement itself. It
 * takes at most dex.claim_limit(type, queue, limit) rows
 * (migrations/0003_queue_capacity.sql): 0 while the queue is paused, `limit`
 * when it is unlimited, else capacity minus the tasks leased now. The outer
 * LIMIT is computed before it pulls a row, and it pulls (so locks) only that
 * many rows from the inner, index-ordered pick.
 * - Unlimited queue: one unlocked primary-key read of dex.task_queues, no
 *   serialisation. Measured (PG 18, one connection, claims of 10, 500 in
 *   flight): p50 0.99 -> 1.01 ms at 10,000 pending, 0.95 -> 0.97 ms at 100,000.
 * - Capped queue: its claims serialise on its dex.task_queues row (FOR NO KEY
 *   UPDATE, held until the claim commits) and count the leases after taking
 *   the lock, in a fresh snapshot; one statement cannot do that (its snapshot
 *   predates the wait: with the lock taken in a CTE and the count in the same
 *   statement, 8 connections claiming at once on a queue of capacity 2 leased
 *   up to 16). Measured: a claim of 10 at 500 in flight, 1.26-1.30 ms p50 (the
 *   count walks the leased-rows index); 8 connections claiming one task at a
 *   time, 360-560 claims/s on a capped queue against 1,400-2,100 unlimited.
 *   A transaction-scoped advisory lock in place of the row lock measured the
 *   same (410-580/s) and saves about 230 B of WAL per claim (the row lock's
 *   record); the row lock was kept because it also orders the claims with
 *   UpdateTaskQueue, pause and resume, which write that row: a claim that
 *   starts after one of them commits reads the new value.
 * - The inner `limit ${limit}`: with only the function as LIMIT the planner
 *   cannot tell how many rows are wanted and sorted the whole partition
 *   (8.4 ms p50 at 10,000 pending instead of 1.0 ms).
 * Rows another claim leased while this one waited for the lock are still
 * visible to this statement's snapshot, but locking re-checks them against
 * their current version (visible_at is in the future now) and skips them.
 */
/**
 * `runId`: EAGER WORKFLOW START (engine/eager-start.ts) leases one run's task
 * with this same statement, for the worker named in the start, so an eager
 * task gets exactly a polled task's lease, fence, capacity and pause rules and
 * CREATED -> RUNNING. The pick then reads that one row by primary key (the
 * rest of the filter still applies: visible, SKIP LOCKED, claim_limit); a
 * poll that took the task first leaves nothing to lease.
 */
export async function claimWorkflowTasks(
  sql: Queryable,
  input: { queue: string; limit: number; workerId: string; leaseMs: number; stickyFallbackMs: number; runId?: string },
): Promise<ClaimedWorkflowTask[]> {
  const rows = await sql<
    {
      run_id: string;
      lease_id: string;
      lock_version: number;
      attempt: number;
      task_time: Date;
      inbox_ids: string[];
      inbox_events: string[] | null;
      inbox_times: Date[] | null;
      available_at: Date;
      instance_id: string;
      workflow_name: string;
      history_length: number;
      history_size: string;
      sticky_worker_id: string | null;
      lease_ms: number;
      trace_context: Record<string, string> | null;
    }[]
  >`
    with picked as (
      select queue_name, run_id, available_at from (
        select queue_name, run_id, visible_at as available_at from dex.workflow_tasks t
        where queue_name = ${input.queue} and visible_at <= now()
          and (attempt > 0
               or visible_at <= now() - ${input.stickyFallbackMs} * interval '1 millisecond'
               or coalesce((select r.sticky_worker_id from dex.runs r where r.id = t.run_id),
                           ${input.workerId}) = ${input.workerId})
          ${input.runId === undefined ? sql`` : sql`and run_id = ${input.runId}`}
        order by priority desc, visible_at
        limit ${input.limit}
        for no key update skip locked
      ) c
      limit dex.claim_limit('workflow', ${input.queue}, ${input.limit}::int)
    ), leased as (
      -- The lease is the run's workflow task timeout when its start set one (migration 0013).
      update dex.workflow_tasks t
      set visible_at = now() + coalesce(r.workflow_task_timeout_ms, ${input.leaseMs}) * interval '1 millisecond',
          leased_until = now() + coalesce(r.workflow_task_timeout_ms, ${input.leaseMs}) * interval '1 millisecond',
          lease_id = gen_random_uuid(),
          lock_version = t.lock_version + 1,
          attempt = t.attempt + 1,
          worker_id = ${input.workerId},
          task_time = now(),
          inbox_ids = coalesce((select array_agg(i.id order by i.id) from dex.inbox i
                                where i.run_id = t.run_id and i.visible_at <= now()), '{}')
      from picked p, dex.runs r
      where t.queue_name = p.queue_name and t.run_id = p.run_id and r.id = p.run_id
      returning t.run_id, t.lease_id, t.lock_version, t.attempt, t.task_time, t.inbox_ids, p.available_at,
                coalesce(r.workflow_task_timeout_ms, ${input.leaseMs}) as lease_ms
    ), started as (
      update dex.runs r set status = 'RUNNING', started_at = now()
      from leased l where r.id = l.run_id and r.status = 'CREATED'
    )
    select l.*, r.instance_id, r.workflow_name, r.history_length, r.history_size::text, r.sticky_worker_id,
           r.trace_context, ib.inbox_events, ib.inbox_times
    from leased l join dex.runs r on r.id = l.run_id
    left join lateral (
      select array_agg(encode(i.event, 'base64') order by i.id) as inbox_events,
             array_agg(i.created_at order by i.id) as inbox_times
      from dex.inbox i where i.run_id = l.run_id and i.id = any(l.inbox_ids)
    ) ib on true`;
  return rows.map((r) => ({
    runId: r.run_id,
    queue: input.queue,
    leaseId: r.lease_id,
    lockVersion: r.lock_version,
    attempt: r.attempt,
    taskTime: r.task_time,
    availableAt: r.available_at,
    inboxIds: r.inbox_ids.map(Number),
    inbox: (r.inbox_events ?? []).map((event, i) => ({ event: Buffer.from(event, "base64"), createdAt: r.inbox_times![i]! })),
    instanceId: r.instance_id,
    workflowName: r.workflow_name,
    historyLength: r.history_length,
    historySize: Number(r.history_size),
    stickyWorkerId: r.sticky_worker_id,
    leaseMs: Number(r.lease_ms),
    traceContext: r.trace_context,
  }));
}

/**
 * The workers whose sticky tasks a claim left alone (see STICKY ROUTING), and
 * in how many ms the oldest of them falls back to any worker (measured on the
 * database's clock, so the caller's timer needs no agreement between clocks):
 * read only after a claim came back empty, so the poll can wake those
 * workers' parked polls and wake its own queue when the fallback passes.
 * Looks at the first 32 available tasks, in claim order, locking nothing.
 */
export async function stickyTasksWaiting(
  sql: Queryable,
  input: { queue: string; workerId: string; stickyFallbackMs: number },
): Promise<{ workerIds: string[]; fallbackInMs: number | undefined }> {
  const rows = await sql<{ worker_id: string; fallback_in_ms: number }[]>`
    select r.sticky_worker_id as worker_id,
           (extract(epoch from min(t.visible_at) - now()) * 1000)::float8 + ${input.stickyFallbackMs} as fallback_in_ms
    from (select run_id, visible_at from dex.workflow_tasks
          where queue_name = ${input.queue} and visible_at <= now() and attempt = 0
            and visible_at > now() - ${input.stickyFallbackMs} * interval '1 millisecond'
          order by priority desc, visible_at limit 32) t
    join dex.runs r on r.id = t.run_id
    where r.sticky_worker_id <> ${input.workerId}
    group by r.sticky_worker_id`;
  const soonest = rows.length === 0 ? undefined : Math.min(...rows.map((r) => Number(r.fallback_in_ms)));
  return { workerIds: rows.map((r) => r.worker_id), fallbackInMs: soonest };
}

/**
 * Ends a failed attempt: the lease is dropped (lease_id null fences the old
 * token out), the failure is kept for describe, and the task becomes visible
 * after the back-off. Only the task row is written, so no run lock is needed.
 */
export async function failWorkflowTask(
  sql: Queryable,
  ref: { queue: string; runId: string; leaseId: string; lockVersion: number },
  input: { failure: Uint8Array; backoffMs: (attempt: number) => number },
): Promise<{ nextAttemptAt: Date } | undefined> {
  // The back-off depends on the attempt, which only the row knows: read it,
  // then update under the same fence (if the lease changed in between, the
  // update matches nothing and the caller answers NOT_FOUND).
  const [current] = await sql<{ attempt: number }[]>`
    select attempt from dex.workflow_tasks
    where queue_name = ${ref.queue} and run_id = ${ref.runId}
      and lease_id = ${ref.leaseId} and lock_version = ${ref.lockVersion}`;
  if (!current) return undefined;
  const [row] = await sql<{ visible_at: Date }[]>`
    update dex.workflow_tasks
    set visible_at = now() + ${input.backoffMs(current.attempt)} * interval '1 millisecond',
        leased_until = null, lease_id = null, worker_id = null, inbox_ids = null,
        last_failure = ${Buffer.from(input.failure)}
    where queue_name = ${ref.queue} and run_id = ${ref.runId}
      and lease_id = ${ref.leaseId} and lock_version = ${ref.lockVersion}
    returning visible_at`;
  return row ? { nextAttemptAt: row.visible_at } : undefined;
}

/**
 * Gives the run a workflow task unless it has one. ON CONFLICT DO NOTHING:
 * a task already queued will hand out the new inbox rows; a task in flight
 * re-checks the inbox when it completes (see finishWorkflowTask). Returns
 * whether a task was created: the caller wakes polls for it after its commit
 * (store/notify.ts).
 */
export async function ensureWorkflowTask(
  tx: Queryable,
  input: { queue: string; runId: string; priority: number },
): Promise<boolean> {
  const created = await tx`
    insert into dex.workflow_tasks (queue_name, run_id, priority)
    values (${input.queue}, ${input.runId}, ${input.priority})
    on conflict do nothing
    returning run_id`;
  return created.length > 0;
}

/**
 * Hands claimed tasks back when the poll that claimed them was cancelled
 * before it could answer: visible again at once, the attempt not counted.
 * Returns how many were still this poll's to hand back (the caller announces
 * those after the statement: store/notify.ts).
 */
export async function releaseWorkflowTasks(
  sql: Queryable,
  refs: Array<{ queue: string; runId: string; leaseId: string; lockVersion: number }>,
): Promise<number> {
  if (refs.length === 0) return 0;
  const released = await sql`
    update dex.workflow_tasks t
    set visible_at = now(), leased_until = null, lease_id = null, worker_id = null,
        inbox_ids = null, attempt = t.attempt - 1
    from unnest(${refs.map((r) => r.runId)}::uuid[], ${refs.map((r) => r.leaseId)}::uuid[],
                ${refs.map((r) => r.lockVersion)}::int[]) as u(run_id, lease_id, lock_version)
    where t.queue_name = ${refs[0]!.queue} and t.run_id = u.run_id
      and t.lease_id = u.lease_id and t.lock_version = u.lock_version`;
  return released.count;
}

/**
 * Hands one leased task back unused, fenced by its lease id and version: a
 * completion that was refused because new inputs arrived while it ran
 * (completion.ts). Visible again at once with those inputs, the attempt not
 * counted, no failure recorded. Only the task row is written, so no run lock
 * is needed (as in failWorkflowTask). Returns false if the lease was no
 * longer this token's; the caller announces a released task after the
 * statement (engine/workflow-tasks.ts handBackWorkflowTask).
 */
export async function releaseWorkflowTask(
  sql: Queryable,
  ref: { queue: string; runId: string; leaseId: string; lockVersion: number },
): Promise<boolean> {
  const released = await sql`
    update dex.workflow_tasks t
    set visible_at = now(), leased_until = null, lease_id = null, worker_id = null,
        inbox_ids = null, attempt = t.attempt - 1
    where t.queue_name = ${ref.queue} and t.run_id = ${ref.runId}
      and t.lease_id = ${ref.leaseId} and t.lock_version = ${ref.lockVersion}`;
  return released.count > 0;
}
