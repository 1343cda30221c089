/**
 * The reads under lock that open a workflow task completion: the run row lock
 * (after the parent's, when a child run may end), the fenced task row, alone
 * (lockRunAndTakeTask) or for a batch (lockRunsAndTasks, deleteTakenTasks),
 * and the unseen-inputs check. The writes that follow are in completion.ts.
 * Lock order as described in workflow-tasks.ts (run row first).
 */
import type { Queryable } from "./db.js";

export interface LockedRun {
  id: string;
  status: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  priority: number;
  historyLength: number;
  historySize: number;
  labels: Record<string, string>;
  parentRunId: string | null;
  parentSeq: number | null;
  parentClosePolicy: string | null;
  cancelRequested: boolean;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  /** Waiting in its key's line (CREATED, no workflow task); see store/concurrency-keys.ts. */
  concurrencyWaiting: boolean;
  /** The run's W3C trace context (migration 0014): its activity tasks, children and continuation carry it. */
  traceContext: Record<string, string> | null;
}

type RawRun = {
  id: string;
  status: string;
  instance_id: string;
  workflow_name: string;
  task_queue: string;
  priority: number;
  history_length: number;
  history_size: string;
  labels: Record<string, string>;
  parent_run_id: string | null;
  parent_seq: number | null;
  parent_close_policy: string | null;
  cancel_requested: boolean;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  concurrency_waiting: boolean;
  trace_context: Record<string, string> | null;
};

/** The columns of a LockedRun, as RawRun names them. */
function runColumns(tx: Queryable) {
  return tx`id, status, instance_id, workflow_name, task_queue, priority, history_length, history_size::text,
            labels, parent_run_id, parent_seq, parent_close_policy, cancel_requested_at is not null as cancel_requested,
            concurrency_key, concurrency_limit, concurrency_waiting, trace_context`;
}

function fromRawRun(row: RawRun): LockedRun {
  return {
    id: row.id,
    status: row.status,
    instanceId: row.instance_id,
    workflowName: row.workflow_name,
    taskQueue: row.task_queue,
    priority: row.priority,
    historyLength: row.history_length,
    historySize: Number(row.history_size),
    labels: row.labels ?? {},
    parentRunId: row.parent_run_id,
    parentSeq: row.parent_seq,
    parentClosePolicy: row.parent_close_policy,
    cancelRequested: row.cancel_requested,
    concurrencyKey: row.concurrency_key,
    concurrencyLimit: row.concurrency_limit,
    concurrencyWaiting: row.concurrency_waiting,
    traceContext: row.trace_context,
  };
}

/**
 * Locks the run row (FOR NO KEY UPDATE: other writers of this run wait;
 * readers do not). With `skipLocked` a busy run reads as absent (the reaper
 * comes back later instead of queueing behind a completion).
 */
export async function lockRun(tx: Queryable, runId: string, skipLocked = false): Promise<LockedRun | undefined> {
  const [row] = await tx<RawRun[]>`
    select ${runColumns(tx)}
    from dex.runs where id = ${runId} for no key update ${skipLocked ? tx`skip locked` : tx``}`;
  return row ? fromRawRun(row) : undefined;
}

export interface TakenWorkflowTask {
  attempt: number;
  taskTime: Date;
  workerId: string;
  inboxIds: number[];
}

/**
 * The first statement of a workflow task completion, in the lock order of
 * workflow-tasks.ts: the parent's run row (only with `lockParent`, when the
 * completion may end a child run: ancestor before descendant; the child's
 * parent_run_id never changes, so reading it unlocked is safe), then the run
 * row, then the task row, deleted if, and only if, it still carries this
 * lease (the fence). One statement instead of three or four round trips:
 * `run` is evaluated after `parent` (its WHERE needs parent's count, an
 * InitPlan run before the run row is locked), and the DELETE runs only once
 * `run` has locked its row (its WHERE needs `run`). Either lock waits as a
 * separate statement would. A run that does not exist takes no task.
 *
 * With `skipLocked` (a lone completion written inside the group commit,
 * engine/workflow-task-completions.ts, which must not stall the completions
 * queued behind it) neither run row is waited for: a busy parent or run
 * leaves the run unlocked and the task untaken, and `run` comes back
 * undefined, as for a run that does not exist; the caller then goes the
 * waiting path. The task row is still waited for (its holders wait for no
 * run row).
 */
export async function lockRunAndTakeTask(
  tx: Queryable,
  ref: { queue: string; runId: string; leaseId: string; lockVersion: number },
  lockParent: boolean,
  skipLocked = false,
): Promise<{ parent: LockedRun | undefined; run: LockedRun | undefined; task: TakenWorkflowTask | undefined }> {
  const skip = skipLocked ? tx`skip locked` : tx``;
  const rows = await tx<
    Array<RawRun & { role: "parent" | "run"; attempt: number | null; task_time: Date | null; worker_id: string | null; inbox_ids: string[] | null }>
  >`
    with parent as materialized (
      select ${runColumns(tx)} from dex.runs
      where ${lockParent} and id = (select parent_run_id from dex.runs where id = ${ref.runId})
      for no key update ${skip}
    ), run as materialized (
      select ${runColumns(tx)} from dex.runs
      where id = ${ref.runId} and (select count(*) from parent) >= 0
        ${skipLocked ? tx`and (not ${lockParent} or parent_run_id is null or exists (select 1 from parent))` : tx``}
      for no key update ${skip}
    ), task as (
      delete from dex.workflow_tasks
      where queue_name = ${ref.queue} and run_id = ${ref.runId}
        and lease_id = ${ref.leaseId} and lock_version = ${ref.lockVersion}
        and exists (select 1 from run)
      returning attempt, task_time, worker_id, inbox_ids
    )
    select 'parent' as role, p.*, null::int as attempt, null::timestamptz as task_time, null::text as worker_id,
           null::bigint[] as inbox_ids
    from parent p
    union all
    select 'run' as role, r.*, t.attempt, t.task_time, t.worker_id, t.inbox_ids
    from run r left join task t on true`;
  const parentRow = rows.find((r) => r.role === "parent");
  const runRow = rows.find((r) => r.role === "run");
  return {
    parent: parentRow ? fromRawRun(parentRow) : undefined,
    run: runRow ? fromRawRun(runRow) : undefined,
    task:
      runRow && runRow.attempt !== null
        ? { attempt: runRow.attempt, taskTime: runRow.task_time!, workerId: runRow.worker_id!, inboxIds: runRow.inbox_ids!.map(Number) }
        : undefined,
  };
}

/** One completion of a batch, as lockRunsAndTasks takes it. */
export interface BatchedTaskRef {
  queue: string;
  runId: string;
  leaseId: string;
  lockVersion: number;
  /** Whether the completion may end its run (a terminal command). */
  ends: boolean;
}

/**
 * The first statement of a batch of workflow task completions
 * (engine/workflow-task-completions.ts): locks the runs, then the fenced task
 * rows, and deletes nothing (a completion the batch refuses keeps its task;
 * deleteTakenTasks deletes the others' later in the same transaction).
 * Returns, by index into `refs`, each run it locked, with the task if the
 * fence matched. A run it did not lock (absent, or busy) has no entry: that
 * completion goes the one-by-one path (lockRunAndTakeTask), which waits.
 *
 * Locking, as store/activity-completions.ts: the runs FOR NO KEY UPDATE
 * SKIP LOCKED in id order, so the statement never waits for a run row and
 * cannot join a deadlock with the ancestor-first lockers; then the task rows
 * FOR NO KEY UPDATE in key order, whose holders (claims, releases) wait for
 * no run row we hold. A completion that may end a child run (it would have to
 * lock the parent first) or a run holding a concurrency key slot (the
 * hand-over locks other runs) is left out before its run is locked:
 * parent_run_id and concurrency_key never change, so reading them unlocked
 * is safe. Only RUNNING runs are locked: a leased task's run is RUNNING (its
 * first claim started it), and the claim updates a CREATED run's row while it
 * holds task rows, so a CREATED run locked here could close a cycle with a
 * claim holding another batch member's task row; a completion for a run in
 * any other status goes alone (and hears NOT_FOUND there). The callers pass
 * each run at most once.
 */
export async function lockRunsAndTasks(
  tx: Queryable,
  refs: readonly BatchedTaskRef[],
): Promise<Map<number, { run: LockedRun; task: TakenWorkflowTask | undefined }>> {
  const rows = await tx<
    Array<RawRun & { ord: string; attempt: number | null; task_time: Date | null; worker_id: string | null; inbox_ids: string[] | null }>
  >`
    with input as materialized (
      select * from unnest(${refs.map((r) => r.queue)}::text[], ${refs.map((r) => r.runId)}::uuid[],
                           ${refs.map((r) => r.leaseId)}::uuid[], ${refs.map((r) => r.lockVersion)}::int[])
        with ordinality as u(queue_name, run_id, lease_id, lock_version, ord)
    ), run as materialized (
      select ${runColumns(tx)} from dex.runs r
      where r.id = any(${refs.map((r) => r.runId)}::uuid[]) and r.status = 'RUNNING'
        and not (r.id = any(${refs.filter((r) => r.ends).map((r) => r.runId)}::uuid[])
                 and (r.parent_run_id is not null or r.concurrency_key is not null))
      order by r.id
      for no key update skip locked
    ), task as materialized (
      select t.run_id, t.attempt, t.task_time, t.worker_id, t.inbox_ids
      from input i
      join run r on r.id = i.run_id
      join dex.workflow_tasks t on t.queue_name = i.queue_name and t.run_id = i.run_id
       and t.lease_id = i.lease_id and t.lock_version = i.lock_version
      order by t.queue_name, t.run_id
      for no key update of t
    )
    select i.ord, r.*, t.attempt, t.task_time, t.worker_id, t.inbox_ids
    from input i join run r on r.id = i.run_id left join task t on t.run_id = i.run_id`;
  const locked = new Map<number, { run: LockedRun; task: TakenWorkflowTask | undefined }>();
  for (const row of rows) {
    locked.set(Number(row.ord) - 1, {
      run: fromRawRun(row),
      task:
        row.attempt !== null
          ? { attempt: row.attempt, taskTime: row.task_time!, workerId: row.worker_id!, inboxIds: row.inbox_ids!.map(Number) }
          : undefined,
    });
  }
  return locked;
}

/** Deletes the task rows a batch took (lockRunsAndTasks locked them: nobody changed them since). */
export async function deleteTakenTasks(tx: Queryable, tasks: ReadonlyArray<{ queue: string; runId: string }>): Promise<void> {
  if (tasks.length === 0) return;
  await tx`
    delete from dex.workflow_tasks t
    using unnest(${tasks.map((k) => k.queue)}::text[], ${tasks.map((k) => k.runId)}::uuid[]) as u(queue_name, run_id)
    where t.queue_name = u.queue_name and t.run_id = u.run_id`;
}

/**
 * Whether inputs a caller was told were delivered arrived in the run's inbox
 * after this task was handed out (`handedOut`): external events and the
 * cancellation request. A completion that would end the run must not drop
 * them (finishWorkflowTask deletes an ended run's inbox). The caller holds
 * the run row lock, and every writer of these kinds (SendEvent,
 * requestCancellation) takes it first, so the answer holds until commit.
 * Visibility is judged by clock_timestamp(), not now(): now() is when this
 * transaction began, and it may have waited for locks (a child's completion
 * waits for its parent's row) while a row arrived stamped later.
 */
export async function hasUnseenInputs(tx: Queryable, runId: string, handedOut: readonly number[]): Promise<boolean> {
  const [row] = await tx<{ unseen: boolean }[]>`
    select exists (
      select 1 from dex.inbox
      where run_id = ${runId} and kind in ('external_event_received', 'cancel_requested')
        and visible_at <= clock_timestamp() and id <> all(${handedOut as number[]}::bigint[])
    ) as unseen`;
  return row?.unseen ?? false;
}

/**
 * hasUnseenInputs for several runs in one statement (a batch's ending
 * completions): the runs among `runs` with such inputs. Inbox ids are unique
 * across runs, so one list of every handed-out id excludes each run's own.
 * Run after the batch's lock statement, never inside it: this statement's
 * snapshot must be taken after the run locks were granted (see hasUnseenInputs).
 */
export async function runsWithUnseenInputs(
  tx: Queryable,
  runs: ReadonlyArray<{ runId: string; handedOut: readonly number[] }>,
): Promise<Set<string>> {
  if (runs.length === 0) return new Set();
  const rows = await tx<{ run_id: string }[]>`
    select distinct run_id from dex.inbox
    where run_id = any(${runs.map((r) => r.runId)}::uuid[]) and kind in ('external_event_received', 'cancel_requested')
      and visible_at <= clock_timestamp() and id <> all(${runs.flatMap((r) => r.handedOut) as number[]}::bigint[])`;
  return new Set(rows.map((r) => r.run_id));
}
