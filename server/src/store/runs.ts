/** Runs: the start statement (hot) and the reads, hand-written like the rest of store/ (decision 0010). */
import type postgres from "postgres";
import { bytes, type Queryable } from "./db.js";
import { openStatuses, unsuccessfulStatuses } from "./vocabulary.js";
import { isUniqueViolation } from "./errors.js";

/** A dex.runs row (server/migrations/0001, 0002, 0004), camel-cased. */
export interface RunRecord {
  id: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  status: string;
  priority: number;
  labels: Record<string, string>;
  customStatus: string | null;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  /** Waiting in line for a slot of concurrency_key: CREATED without a workflow task (migration 0004). */
  concurrencyWaiting: boolean;
  requestId: string | null;
  parentRunId: string | null;
  parentSeq: number | null;
  parentClosePolicy: "cancel" | "abandon" | null;
  continuedFromRunId: string | null;
  continuedAsRunId: string | null;
  input: Uint8Array | null;
  result: Uint8Array | null;
  failure: Uint8Array | null;
  historyLength: number;
  historySize: number;
  stickyWorkerId: string | null;
  cancelRequestedAt: Date | null;
  cancelReason: string | null;
  createdAt: Date;
  startedAt: Date | null;
  endedAt: Date | null;
}

/**
 * The select list of a RunRecord: columns aliased to its field names, so a
 * row is the record as it comes (postgres.js gives timestamptz as Date, jsonb
 * parsed, bytea as Buffer); history_size is int8, which postgres.js returns as
 * a string, so it is cast (a history stays far below 2^53 bytes).
 */
const RUN_COLUMNS = `id, instance_id as "instanceId", workflow_name as "workflowName", task_queue as "taskQueue",
  status, priority, labels, custom_status as "customStatus", concurrency_key as "concurrencyKey",
  concurrency_limit as "concurrencyLimit", concurrency_waiting as "concurrencyWaiting", request_id as "requestId",
  parent_run_id as "parentRunId", parent_seq as "parentSeq", parent_close_policy as "parentClosePolicy",
  continued_from_run_id as "continuedFromRunId", continued_as_run_id as "continuedAsRunId", input, result, failure,
  history_length as "historyLength", history_size::float8 as "historySize", sticky_worker_id as "stickyWorkerId",
  cancel_requested_at as "cancelRequestedAt", cancel_reason as "cancelReason", created_at as "createdAt",
  started_at as "startedAt", ended_at as "endedAt"`;

function runColumns(sql: Queryable): postgres.PendingQuery<postgres.Row[]> {
  return sql.unsafe(RUN_COLUMNS);
}

export interface NewRun {
  id: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  priority: number;
  labels: Record<string, string>;
  requestId: string;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  /**
   * The run joins its key's line instead of getting a workflow task: true for
   * every new run with a key except continue-as-new's, which takes over the
   * slot of the run it continues. The caller must then hand the key's free
   * slots out in the same transaction (engine/concurrency-keys.ts).
   */
  concurrencyWaiting: boolean;
  input: Uint8Array | null;
  /** The run_started event (sequence 1). */
  startedEvent: Uint8Array;
  /** 'allow' | 'allow_if_failed' | 'reject' */
  reusePolicy: string;
  /** NOTIFY payload for the workflow queue, sent at commit if the run was inserted. */
  wakeupPayload: string;
  /** Child runs: the parent, the parent's command seq and what happens when the parent ends. */
  parent?: { runId: string; seq: number; closePolicy: string } | null | undefined;
  /** continue-as-new: the run this one continues. */
  continuedFromRunId?: string | null | undefined;
}

export type InsertRunOutcome =
  | { outcome: "started"; runId: string }
  | { outcome: "queue_missing" }
  | { outcome: "same_request"; runId: string }
  | { outcome: "reuse_rejected"; latestRunId: string; latestStatus: string }
  | { outcome: "open_run_exists" };

/**
 * Inserts the run, its run_started event and its first workflow task in ONE
 * statement (one round trip, atomic). The checks ride along as CTEs: the
 * queue must exist; a run of this instance created by the same request id is
 * returned instead (idempotent retry, also after that run ended); the reuse
 * policy looks at the latest run. The partial unique index
 * runs_one_open_run_per_instance decides races between concurrent starts: the
 * loser gets a 23505, reported as `open_run_exists` for the caller to resolve.
 * A run that joins its concurrency key's line (`concurrencyWaiting`) gets no
 * workflow task and sends no NOTIFY here: it waits for a slot.
 */
export async function insertRun(sql: Queryable, run: NewRun): Promise<InsertRunOutcome> {
  try {
    return await insertRunOrThrow(sql, run);
  } catch (err) {
    if (isUniqueViolation(err, "runs_one_open_run_per_instance")) return { outcome: "open_run_exists" };
    throw err;
  }
}

/** The open-run unique violation of a start inside a larger transaction (which it aborts). */
export function isOpenRunConflict(err: unknown): boolean {
  return isUniqueViolation(err, "runs_one_open_run_per_instance");
}

/**
 * insertRun for use inside a transaction: a conflict with an open run throws
 * (see isOpenRunConflict) and aborts the transaction, or the savepoint around it.
 */
export async function insertRunOrThrow(sql: Queryable, run: NewRun): Promise<Exclude<InsertRunOutcome, { outcome: "open_run_exists" }>> {
  {
    const [row] = await sql<
      {
        run_id: string | null;
        queue_exists: boolean;
        same_request_id: string | null;
        latest_id: string | null;
        latest_status: string | null;
      }[]
    >`
      with queue as (
        select 1 from dex.task_queues where type = 'workflow' and name = ${run.taskQueue}
      ), same_request as (
        select id from dex.runs
        where ${run.requestId}::text <> '' and instance_id = ${run.instanceId} and request_id = ${run.requestId}
        order by id desc limit 1
      ), latest as (
        select id, status from dex.runs where instance_id = ${run.instanceId} order by id desc limit 1
      ), allowed as (
        select exists (select 1 from queue)
          and not exists (select 1 from same_request)
          and (
            ${run.reusePolicy}::text = 'allow'
            or not exists (select 1 from latest)
            or (select status from latest) in ${openStatuses(sql)}
            or (${run.reusePolicy}::text = 'allow_if_failed'
                and (select status from latest) in ${unsuccessfulStatuses(sql)})
          ) as ok
      ), inserted as (
        insert into dex.runs (id, instance_id, workflow_name, task_queue, status, priority, labels,
                              concurrency_key, concurrency_limit, concurrency_waiting, request_id, input, history_length, history_size,
                              parent_run_id, parent_seq, parent_close_policy, continued_from_run_id)
        select ${run.id}::uuid, ${run.instanceId}, ${run.workflowName}, ${run.taskQueue}, 'CREATED', ${run.priority},
               ${JSON.stringify(run.labels)}::text::jsonb, ${run.concurrencyKey}, ${run.concurrencyLimit},
               ${run.concurrencyWaiting}, nullif(${run.requestId}::text, ''), ${bytes(run.input)}, 1, ${run.startedEvent.byteLength},
               ${run.parent?.runId ?? null}::uuid, ${run.parent?.seq ?? null}::int, ${run.parent?.closePolicy ?? null},
               ${run.continuedFromRunId ?? null}::uuid
        where (select ok from allowed)
        returning id, created_at
      ), started as (
        insert into dex.history_events (run_id, sequence, kind, event, created_at)
        select id, 1, 'run_started', ${bytes(run.startedEvent)}, created_at from inserted
      ), task as (
        insert into dex.workflow_tasks (queue_name, run_id, priority, visible_at, created_at)
        select ${run.taskQueue}, id, ${run.priority}, created_at, created_at from inserted
        where not ${run.concurrencyWaiting}
        returning run_id
      )
      select (select id from inserted) as run_id,
             exists (select 1 from queue) as queue_exists,
             (select id from same_request) as same_request_id,
             (select id from latest) as latest_id,
             (select status from latest) as latest_status,
             (select pg_notify('dex_wakeup', ${run.wakeupPayload}) from task)::text as notified`;
    if (!row) throw new Error("insertRun returned no row");
    if (row.run_id) return { outcome: "started", runId: row.run_id };
    if (!row.queue_exists) return { outcome: "queue_missing" };
    if (row.same_request_id) return { outcome: "same_request", runId: row.same_request_id };
    return { outcome: "reuse_rejected", latestRunId: row.latest_id!, latestStatus: row.latest_status! };
  }
}

/** The instance's open run, read in a fresh statement after a conflict. */
export async function findOpenRun(
  sql: Queryable,
  instanceId: string,
): Promise<{ id: string; requestId: string | null } | undefined> {
  const [row] = await sql<{ id: string; request_id: string | null }[]>`
    select id, request_id from dex.runs where instance_id = ${instanceId} and status in ${openStatuses(sql)}`;
  return row ? { id: row.id, requestId: row.request_id } : undefined;
}

/**
 * A run by id, or an instance's open run (else its latest). Every result
 * waiter reads the run this way: like every statement here it is prepared
 * (postgres.js does so by default, once per connection), so a read is one
 * round trip.
 */
export async function getRun(
  sql: Queryable,
  selector: { runId: string } | { instanceId: string },
): Promise<RunRecord | undefined> {
  if ("runId" in selector) {
    const [row] = await sql<RunRecord[]>`select ${runColumns(sql)} from dex.runs where id = ${selector.runId}::uuid`;
    return row;
  }
  // Open runs first (at most one), then the newest.
  const [row] = await sql<RunRecord[]>`
    select ${runColumns(sql)} from dex.runs where instance_id = ${selector.instanceId}
    order by (status in ${openStatuses(sql)}) desc, id desc limit 1`;
  return row;
}

/** The columns the waiters poll: cheap, by primary key. */
export async function getRunProgress(
  sql: Queryable,
  runId: string,
): Promise<{ status: string; historyLength: number } | undefined> {
  const [row] = await sql<{ status: string; history_length: number }[]>`
    select status, history_length from dex.runs where id = ${runId}`;
  return row ? { status: row.status, historyLength: row.history_length } : undefined;
}

export interface RunFilter {
  workflowName?: string | undefined;
  statuses?: string[] | undefined;
  instanceId?: string | undefined;
  labels?: Record<string, string> | undefined;
  createdAfter?: Date | undefined;
  createdBefore?: Date | undefined;
  /** Keyset: only runs with a smaller id (UUIDv7: created earlier). */
  beforeId?: string | undefined;
  limit: number;
}

/**
 * Newest first. Every filter has an index: (workflow_name, id), (status, id), (instance_id, id), GIN labels.
 * The conditions present are joined into one statement: one prepared text per combination of filters.
 */
export async function listRuns(sql: Queryable, filter: RunFilter): Promise<RunRecord[]> {
  const where: postgres.PendingQuery<postgres.Row[]>[] = [];
  if (filter.workflowName) where.push(sql`workflow_name = ${filter.workflowName}`);
  if (filter.statuses && filter.statuses.length > 0) where.push(sql`status = any(${filter.statuses}::text[])`);
  if (filter.instanceId) where.push(sql`instance_id = ${filter.instanceId}`);
  if (filter.labels && Object.keys(filter.labels).length > 0) {
    where.push(sql`labels @> ${JSON.stringify(filter.labels)}::text::jsonb`);
  }
  if (filter.createdAfter) where.push(sql`created_at >= ${filter.createdAfter}`);
  if (filter.createdBefore) where.push(sql`created_at < ${filter.createdBefore}`);
  if (filter.beforeId) where.push(sql`id < ${filter.beforeId}::uuid`);
  const condition = where.reduce((all, one) => sql`${all} and ${one}`, sql`true`);
  return sql<RunRecord[]>`
    select ${runColumns(sql)} from dex.runs where ${condition} order by id desc limit ${filter.limit}`;
}
