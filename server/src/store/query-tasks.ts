/**
 * Query task SQL (dex.query_tasks, migrations/0010_query_tasks.sql): insert,
 * claim, answer, read and delete. The table is separate from the workflow
 * tasks so a query never touches their rows, indexes or locks: a pending
 * query does not block the run's workflow task, nor the other way round, and
 * the workflow-task claim and completion are unchanged.
 */
import type { Queryable } from "./db.js";
import { bytes } from "./db.js";

export interface NewQueryTask {
  id: string;
  runId: string;
  queue: string;
  queryName: string;
  args: Uint8Array | null;
  historyLength: number;
  preferredWorkerId: string | null;
  timeoutMs: number;
}

/**
 * Inserts the task; returns its expiry (database clock). The same statement
 * sweeps a few rows whose caller went away without deleting them (a server
 * that died mid-wait): no loop of its own, and the table stays as small as
 * the queries in flight.
 */
export async function insertQueryTask(sql: Queryable, task: NewQueryTask): Promise<Date> {
  const [row] = await sql<{ expires_at: Date }[]>`
    with swept as (
      delete from dex.query_tasks
      where id in (select id from dex.query_tasks where expires_at < now() - interval '1 minute' limit 100)
    )
    insert into dex.query_tasks (id, run_id, queue, query_name, args, history_length, preferred_worker_id, expires_at)
    values (${task.id}::uuid, ${task.runId}::uuid, ${task.queue}, ${task.queryName}, ${bytes(task.args)}::bytea,
            ${task.historyLength}, ${task.preferredWorkerId},
            now() + make_interval(secs => ${task.timeoutMs / 1000}))
    returning expires_at`;
  return row!.expires_at;
}

export interface ClaimedQueryTask {
  id: string;
  runId: string;
  queue: string;
  queryName: string;
  args: Uint8Array | null;
  historyLength: number;
  expiresAt: Date;
  instanceId: string;
  workflowName: string;
}

/**
 * Claims up to `limit` unanswered, unclaimed, unexpired query tasks of the
 * queue: those preferring this worker or none, and those whose preferred
 * worker has had `stickyFallbackMs` to take them (the same rule as sticky
 * workflow tasks, store/workflow-tasks.ts). FOR UPDATE SKIP LOCKED: two polls
 * never take the same task and never wait for each other. A claimed task is
 * never handed out again: a query is cheap to ask again, and its caller's
 * timeout ends it.
 *
 * A picked task whose run no longer exists (DeleteRun or retention deleted it
 * after the query was asked; query_tasks has no foreign key, being UNLOGGED)
 * is not claimed but deleted, and its id comes back in `runGone`: the caller,
 * woken by id, finds its row gone and answers NOT_FOUND. (Claiming it instead
 * handed the worker nothing, as the run is needed for the task, and the caller
 * waited out its timeout for an answer that could never come.) Both halves
 * read the runs in the statement's one snapshot, so each picked task is
 * either claimed or deleted.
 */
export async function claimQueryTasks(
  sql: Queryable,
  input: { queue: string; workerId: string; limit: number; stickyFallbackMs: number },
): Promise<{ tasks: ClaimedQueryTask[]; runGone: string[] }> {
  const rows = await sql<
    {
      id: string;
      run_gone: boolean;
      run_id: string;
      queue: string;
      query_name: string;
      args: Buffer | null;
      history_length: string | null;
      expires_at: Date;
      instance_id: string | null;
      workflow_name: string | null;
    }[]
  >`
    with picked as (
      select id from dex.query_tasks
      where queue = ${input.queue} and claimed_by is null and expires_at > now()
        and (preferred_worker_id is null or preferred_worker_id = ${input.workerId}
             or created_at <= now() - make_interval(secs => ${input.stickyFallbackMs / 1000}))
      order by created_at
      limit ${input.limit}
      for update skip locked
    ), claimed as (
      update dex.query_tasks q set claimed_by = ${input.workerId}
      from picked where q.id = picked.id and exists (select 1 from dex.runs r where r.id = q.run_id)
      returning q.*
    ), gone as (
      delete from dex.query_tasks q
      using picked where q.id = picked.id and not exists (select 1 from dex.runs r where r.id = q.run_id)
      returning q.id, q.run_id, q.queue, q.query_name, q.expires_at, q.created_at
    )
    select c.id, false as run_gone, c.run_id, c.queue, c.query_name, c.args, c.history_length::text, c.expires_at,
           r.instance_id, r.workflow_name, c.created_at
    from claimed c join dex.runs r on r.id = c.run_id
    union all
    select g.id, true, g.run_id, g.queue, g.query_name, null, null, g.expires_at, null, null, g.created_at from gone g
    order by created_at`;
  const tasks: ClaimedQueryTask[] = [];
  const runGone: string[] = [];
  for (const r of rows) {
    if (r.run_gone) {
      runGone.push(r.id);
      continue;
    }
    tasks.push({
      id: r.id,
      runId: r.run_id,
      queue: r.queue,
      queryName: r.query_name,
      args: r.args,
      historyLength: Number(r.history_length),
      expiresAt: r.expires_at,
      instanceId: r.instance_id!,
      workflowName: r.workflow_name!,
    });
  }
  return { tasks, runGone };
}

/** Records the answer of a claimed, unexpired, unanswered task; false when there is none (NOT_FOUND). */
export async function answerQueryTask(
  sql: Queryable,
  input: { id: string; result: Uint8Array | null; failure: Uint8Array | null; workerError: boolean },
): Promise<boolean> {
  const rows = await sql`
    update dex.query_tasks
    set answered = true, result = ${bytes(input.result)}::bytea, failure = ${bytes(input.failure)}::bytea,
        worker_error = ${input.workerError}
    where id = ${input.id}::uuid and claimed_by is not null and not answered and expires_at > now()
    returning id`;
  return rows.length === 1;
}

export interface QueryTaskState {
  claimedBy: string | null;
  answered: boolean;
  result: Uint8Array | null;
  failure: Uint8Array | null;
  workerError: boolean;
}

export async function readQueryTask(sql: Queryable, id: string): Promise<QueryTaskState | undefined> {
  const [row] = await sql<
    { claimed_by: string | null; answered: boolean; result: Buffer | null; failure: Buffer | null; worker_error: boolean }[]
  >`select claimed_by, answered, result, failure, worker_error from dex.query_tasks where id = ${id}::uuid`;
  if (!row) return undefined;
  return { claimedBy: row.claimed_by, answered: row.answered, result: row.result, failure: row.failure, workerError: row.worker_error };
}

/** The caller is done (answered or gave up): the row goes, and a late answer finds nothing. */
export async function deleteQueryTask(sql: Queryable, id: string): Promise<QueryTaskState | undefined> {
  const [row] = await sql<
    { claimed_by: string | null; answered: boolean; result: Buffer | null; failure: Buffer | null; worker_error: boolean }[]
  >`delete from dex.query_tasks where id = ${id}::uuid returning claimed_by, answered, result, failure, worker_error`;
  if (!row) return undefined;
  return { claimedBy: row.claimed_by, answered: row.answered, result: row.result, failure: row.failure, workerError: row.worker_error };
}

/** Workers other than `workerId` that unclaimed tasks of the queue still wait for (to wake them by name). */
export async function preferredWorkersWaiting(sql: Queryable, input: { queue: string; workerId: string }): Promise<string[]> {
  const rows = await sql<{ worker_id: string }[]>`
    select distinct preferred_worker_id as worker_id from dex.query_tasks
    where queue = ${input.queue} and claimed_by is null and expires_at > now()
      and preferred_worker_id is not null and preferred_worker_id <> ${input.workerId}`;
  return rows.map((r) => r.worker_id);
}

/** The workflow queue of a query task, if it still exists. */
export async function queryTaskQueue(sql: Queryable, id: string): Promise<string | undefined> {
  const [row] = await sql<{ queue: string }[]>`select queue from dex.query_tasks where id = ${id}::uuid`;
  return row?.queue;
}
