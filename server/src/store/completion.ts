/**
 * The writes of a workflow task completion that are not history: activity
 * tasks (some leased eagerly), its own inbox rows, and the closing update of
 * the run. All run inside the completion's transaction, after the locks of
 * completion-locks.ts.
 */
import { base64Array, bytes, type Queryable } from "./db.js";
import { appendBlockCtes, newEventBytes, type BlockToAppend } from "./history.js";
import { attemptDeadlineSql, leaseEndSql } from "./activity-lease.js";
import type { ActivityTaskRow } from "./activity-tasks.js";

/** An activity task to create (engine/command-activity.ts plans them from schedule_activity). */
export interface NewActivityTask {
  queue: string;
  seq: number;
  activityName: string;
  priority: number;
  input: Uint8Array | null;
  /** The encoded ActivityScheduledAttributes, handed to the worker with each attempt. */
  options: Uint8Array;
  scheduleToCloseMs: number | null;
  /** The hard cap on one attempt, also while it heartbeats. */
  startToCloseMs: number;
  /** The lease one claim or heartbeat grants: the heartbeat timeout if set, else start-to-close. */
  leaseMs: number;
}

/**
 * Eager dispatch (docs/worker-protocol.md "Eager activities"): up to `slots`
 * of the completion's new tasks on `queue` are inserted already leased to
 * `workerId`. The caller passes only queues that this completion schedules on
 * and that exist, and none when the completion ends the run.
 */
export interface EagerOffer {
  queue: string;
  slots: number;
  workerId: string;
}

/**
 * All activity tasks of one completion in one multi-row insert (unnest).
 * Returns the tasks inserted leased (eager dispatch), in command order.
 *
 * Eager tasks: per offered queue, the first `dex.claim_limit('activity',
 * queue, slots)` tasks of the queue in command order start attempt 1 at once,
 * with the lease a claim grants (store/activity-lease.ts: the same SQL), a
 * fresh lease id and lock version 1 (a claim of a new row: 0 + 1), and
 * `worker_id`: from then on they are exactly a claimed task, to every fenced
 * statement, the capacity count and the reaper. claim_limit is what a claim
 * obeys: 0 while the queue is paused; on a capped queue, capacity minus the
 * leases in flight, counted after it locked the queue's row (FOR NO KEY
 * UPDATE), which it holds until this transaction commits, so concurrent claims
 * and eager dispatches of the queue cannot lease past the capacity together.
 * Lock order: the run row (taken first by the completion), then the queue row;
 * a claim takes the queue row and then only SKIP LOCKED task rows, and no path
 * holds a queue row while waiting for a run row, so no cycle. An unlimited
 * queue costs one unlocked primary-key read of dex.task_queues per offered
 * queue. The `offer` CTE is materialized (it calls a volatile function, which
 * Postgres never inlines anyway): claim_limit runs once per offered queue.
 * Without offers the CTE is empty and every row is inserted as before: waiting
 * (attempt 0, no lease), visible now.
 */
export async function insertActivityTasks(
  tx: Queryable,
  run: { id: string; instanceId: string; workflowName: string; taskQueue: string; traceContext?: Record<string, string> | null },
  tasks: NewActivityTask[],
  offers: readonly EagerOffer[] = [],
): Promise<EagerActivityRow[]> {
  if (tasks.length === 0) return [];
  const attemptDeadline = attemptDeadlineSql(tx);
  const rows = await tx<
    { seq: number; lease_id: string; leased_until: Date; attempt_deadline: Date; scheduled_at: Date; schedule_to_close_deadline: Date | null; now: Date }[]
  >`
    with offer as materialized (
      select o.queue, o.worker_id, dex.claim_limit('activity', o.queue, o.slots) as slots
      from unnest(${offers.map((o) => o.queue)}::text[], ${offers.map((o) => o.workerId)}::text[],
                  ${offers.map((o) => o.slots)}::int[]) as o(queue, worker_id, slots)
    ), task as (
      select u.*, now() + u.deadline_ms * interval '1 millisecond' as schedule_to_close_deadline,
             row_number() over (partition by u.queue order by u.ord) as rank
      from unnest(${tasks.map((t) => t.queue)}::text[], ${tasks.map((t) => t.seq)}::int[],
                  ${tasks.map((t) => t.activityName)}::text[], ${tasks.map((t) => t.priority)}::int[],
                  ${base64Array(tasks.map((t) => t.input))}::text[], ${base64Array(tasks.map((t) => t.options))}::text[],
                  ${tasks.map((t) => t.leaseMs)}::bigint[], ${tasks.map((t) => t.startToCloseMs)}::bigint[],
                  ${tasks.map((t) => t.scheduleToCloseMs)}::float8[])
           with ordinality as u(queue, seq, name, priority, input, options, lease_ms, start_to_close_ms, deadline_ms, ord)
    ), leased as (
      select t.*, o.worker_id, d.attempt_deadline, ${leaseEndSql(tx, tx`d.attempt_deadline`)} as lease_end
      from task t
      left join offer o on o.queue = t.queue and t.rank <= o.slots,
      lateral (select ${attemptDeadline} as attempt_deadline) d
    ), inserted as (
      insert into dex.activity_tasks (queue_name, run_id, seq, activity_name, instance_id, workflow_name,
                                      workflow_queue, priority, input, options, lease_ms, start_to_close_ms,
                                      schedule_to_close_deadline, attempt, lock_version, lease_id, worker_id,
                                      attempt_deadline, leased_until, visible_at, trace_context)
      select queue, ${run.id}, seq, name, ${run.instanceId}, ${run.workflowName}, ${run.taskQueue}, priority,
             decode(input, 'base64'), decode(options, 'base64'), lease_ms, start_to_close_ms,
             schedule_to_close_deadline,
             case when worker_id is null then 0 else 1 end, case when worker_id is null then 0 else 1 end,
             case when worker_id is null then null else gen_random_uuid() end, worker_id,
             case when worker_id is null then null else attempt_deadline end,
             case when worker_id is null then null else lease_end end,
             case when worker_id is null then now() else lease_end end,
             ${run.traceContext ? JSON.stringify(run.traceContext) : null}::text::jsonb
      from leased
      returning seq, lease_id, leased_until, attempt_deadline, scheduled_at, schedule_to_close_deadline
    )
    select i.*, now() as now from inserted i where i.lease_id is not null`;
  if (rows.length === 0) return [];
  const order = new Map(tasks.map((t, i) => [t.seq, i]));
  return rows
    .sort((a, b) => order.get(a.seq)! - order.get(b.seq)!)
    .map((r) => {
      const task = tasks[order.get(r.seq)!]!;
      return {
        queue: task.queue,
        runId: run.id,
        seq: task.seq,
        activityName: task.activityName,
        instanceId: run.instanceId,
        workflowName: run.workflowName,
        workflowQueue: run.taskQueue,
        priority: task.priority,
        input: task.input,
        options: task.options,
        leaseMs: task.leaseMs,
        startToCloseMs: task.startToCloseMs,
        attemptDeadline: r.attempt_deadline,
        cancelRequested: false,
        scheduledAt: r.scheduled_at,
        scheduleToCloseDeadline: r.schedule_to_close_deadline,
        leasedUntil: r.leased_until,
        leaseId: r.lease_id,
        lockVersion: 1,
        attempt: 1,
        heartbeatDetails: null,
        lastFailure: null,
        now: r.now,
        traceContext: run.traceContext ?? null,
      };
    });
}

/** An activity task a completion inserted leased (eager dispatch): attempt 1, as a claim returns it. */
export type EagerActivityRow = ActivityTaskRow;

export interface NewInboxEvent {
  kind: string;
  /** dex.v1.HistoryEvent without sequence and time. */
  event: Uint8Array;
  dedupKey: string;
}

/**
 * Inbox rows the completion writes for its own run in one multi-row insert
 * (an activity call on a queue that does not exist fails at once: see
 * engine/missing-queues.ts). visible_at defaults to now(), so
 * finishWorkflowTask, later in the same transaction, sees them and gives the
 * run its next workflow task. A row whose dedup key exists already is skipped,
 * as insertInboxEvent does.
 */
export async function insertInboxEvents(tx: Queryable, runId: string, events: readonly NewInboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx`
    insert into dex.inbox (run_id, kind, event, dedup_key)
    select ${runId}, kind, decode(event, 'base64'), dedup_key
    from unnest(${events.map((e) => e.kind)}::text[], ${base64Array(events.map((e) => e.event))}::text[],
                ${events.map((e) => e.dedupKey)}::text[]) with ordinality as u(kind, event, dedup_key, ord)
    where not exists (select 1 from dex.history_events h where h.run_id = ${runId} and h.dedup_key = u.dedup_key)
    order by ord
    on conflict (run_id, dedup_key) where dedup_key is not null do nothing`;
}

export interface RunEnd {
  status: string;
  result: Uint8Array | null;
  failure: Uint8Array | null;
  /** Set for CONTINUED_AS_NEW: the new run. */
  continuedAsRunId?: string | undefined;
}

/**
 * Closes a completion: updates the run (history length and size, the sticky
 * worker, custom status and labels, and its end if a terminal command ended
 * it). An ended run loses its remaining activity tasks, inbox rows and timers.
 * An open run gets its next workflow task if inbox rows that wake it
 * arrived while the task was in flight (`child_run_started` does not wake: it
 * rides along with the next task). The caller NOTIFYs after the commit.
 *
 * With `append`, the block is appended in this same statement (the usual
 * completion, store/history.ts appendBlockCtes): one statement and one update
 * of the run row instead of two. Its CTEs share one snapshot, which cannot see
 * what the append CTEs do: so the handed-out inbox rows (still visible here)
 * are left out of the inbox checks by id. Without `append` the block
 * was appended by an earlier statement (those rows are gone already; the
 * exclusions change nothing). Returns whether a next workflow task was
 * created, and how many inbox rows the append moved.
 */
export async function finishWorkflowTask(
  tx: Queryable,
  input: {
    runId: string;
    queue: string;
    priority: number;
    historyLength: number;
    stickyWorkerId: string | null;
    customStatus: string | null | undefined;
    labels: Record<string, string> | undefined;
    end: RunEnd | undefined;
    /** The inbox rows handed out with the task. */
    handedOut: readonly number[];
  },
  append?: BlockToAppend,
): Promise<{ nextTask: boolean; moved: number }> {
  const ended = input.end !== undefined;
  const handedOut = input.handedOut as number[];
  const [row] = await tx<{ next_task: boolean; moved: number }[]>`
    with ${append ? tx`${appendBlockCtes(tx, append)},` : tx``} updated as (
      update dex.runs set
        history_length = ${input.historyLength},
        history_size = history_size + ${append ? tx`coalesce((select sum(size) from moved_history), 0) + ${newEventBytes(append)}` : tx`0`},
        sticky_worker_id = ${input.stickyWorkerId},
        custom_status = case when ${input.customStatus === undefined} then custom_status else ${input.customStatus ?? null} end,
        labels = labels || ${JSON.stringify(input.labels ?? {})}::text::jsonb,
        status = coalesce(${input.end?.status ?? null}, status),
        result = coalesce(${bytes(input.end?.result)}, result),
        failure = coalesce(${bytes(input.end?.failure)}, failure),
        continued_as_run_id = coalesce(${input.end?.continuedAsRunId ?? null}::uuid, continued_as_run_id),
        ended_at = case when ${ended} then now() else ended_at end
      where id = ${input.runId}
      returning id
    ), dropped_activities as (
      delete from dex.activity_tasks where ${ended} and run_id = ${input.runId}
    ), dropped_inbox as (
      delete from dex.inbox where ${ended} and run_id = ${input.runId} and id <> all(${handedOut}::bigint[])
    ), dropped_timers as (
      -- An event wait's time-out stays when an event arrives: one name, many events, and only the
      -- workflow code knows which wait an event satisfied; the SDK drops it with cancel_timer (decision 0022).
      delete from dex.timers t where ${ended} and t.run_id = ${input.runId}
    ), next_task as (
      insert into dex.workflow_tasks (queue_name, run_id, priority)
      select ${input.queue}, ${input.runId}, ${input.priority}
      -- clock_timestamp(), not now(): a row that arrived while this transaction
      -- waited for the run lock is stamped after now() and must still wake the run.
      where not ${ended} and exists (select 1 from dex.inbox where run_id = ${input.runId}
                                     and id <> all(${handedOut}::bigint[])
                                     and visible_at <= clock_timestamp() and kind <> 'child_run_started')
      on conflict do nothing
      returning run_id
    )
    select exists (select 1 from next_task) as next_task,
           ${append ? tx`(select count(*)::int from moved_history)` : tx`0`} as moved`;
  return { nextTask: row?.next_task ?? false, moved: row?.moved ?? 0 };
}
