/**
 * Runs: the start statement (hot; the only SQL that creates runs) and the
 * reads, hand-written like the rest of store/ (decision 0010).
 */
import type postgres from "postgres";
import { base64Array, bytes, type Queryable } from "./db.js";
import { openStatuses, unsuccessfulStatuses } from "./vocabulary.js";

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
  /** The start's run timeout and when it passes; null when none (migration 0013). */
  runTimeoutMs: number | null;
  runDeadline: Date | null;
  /** The lease of the run's workflow tasks; null for the server's default. */
  workflowTaskTimeoutMs: number | null;
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
  started_at as "startedAt", ended_at as "endedAt", run_timeout_ms::float8 as "runTimeoutMs", run_deadline as "runDeadline",
  workflow_task_timeout_ms as "workflowTaskTimeoutMs"`;

export function runColumns(sql: Queryable): postgres.PendingQuery<postgres.Row[]> {
  return sql.unsafe(RUN_COLUMNS);
}

export interface NewRun {
  id: string;
  instanceId: string;
  workflowName: string;
  taskQueue: string;
  priority: number;
  labels: Record<string, string>;
  /** '' for none (child runs, continue-as-new). */
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
  /** Child runs: the parent, the parent's command seq and what happens when the parent ends. */
  parent?: { runId: string; seq: number; closePolicy: string } | null | undefined;
  /** continue-as-new: the run this one continues. */
  continuedFromRunId?: string | null | undefined;
  /** The run timeout: the start statement writes the run's 'run_timeout' timer with it. Unset: none. */
  runTimeoutMs?: number | null | undefined;
  /** The lease of the run's workflow tasks. Unset: the server's default. */
  workflowTaskTimeoutMs?: number | null | undefined;
  /** The start's W3C trace context (migration 0014). Unset: none. */
  traceContext?: Record<string, string> | null | undefined;
}

export type InsertRunOutcome =
  | { outcome: "started"; runId: string }
  | { outcome: "queue_missing" }
  | { outcome: "same_request"; runId: string }
  | { outcome: "reuse_rejected"; latestRunId: string; latestStatus: string }
  /** Another run of the instance is open (or being inserted by a transaction that then committed). */
  | { outcome: "open_run_exists" };

/**
 * Starts runs in ONE statement (one round trip; atomic on its own, or part of
 * the caller's transaction): per run, the checks, then its row in dex.runs,
 * its run_started event and its first workflow task, unless it joins its
 * concurrency key's line (`concurrencyWaiting`: no task, it waits for a slot).
 * One outcome per run, in order. This is the only start write: client starts
 * (alone or in a group commit, engine/start-batch.ts), keyed starts,
 * SendEventWithStart, children and continue-as-new all come here. It sends no
 * NOTIFY: the caller announces the new tasks after its commit (engine/effects.ts).
 *
 * The checks, per run, read the statement's snapshot: the workflow queue must
 * exist; a run of this instance created by the same request id is returned
 * instead (idempotent retry, also after that run ended); the reuse policy
 * looks at the instance's latest run. They lock nothing.
 *
 * Conflicts. What decides a race between starts of one instance is the
 * partial unique index runs_one_open_run_per_instance, through ON CONFLICT DO
 * NOTHING: a run whose instance has an open run (committed, or inserted by a
 * transaction still in flight, which the insert waits for, as a plain insert
 * would) is not inserted and answers `open_run_exists`. Nothing aborts, so a
 * caller inside a transaction needs no savepoint (children report the
 * conflict to their parent); a client start resolves the answer in a fresh
 * statement (findOpenRun), whose snapshot sees the winner.
 * Rows are inserted in instance-id order (then input order), so two
 * multi-run statements that share instance ids (two group commits, two
 * servers, a completion starting children) wait for each other in the same
 * order, never in a cycle; and of two runs of one instance in one call, the
 * first wins and the second answers `open_run_exists`, as if serialized.
 * Callers that need more than that (a same request id, the reuse policy
 * against a run started in the same call) put one run per instance in a call.
 *
 * One definition, two shapes of input (both generated from INPUT_COLUMNS): one
 * run is a row of parameters, several are `unnest` over arrays. The single
 * row stays for planning's sake: Postgres plans the unnest shape afresh at
 * every execution (a custom plan per call), while the single row's prepared
 * statement settles on one generic plan. Measured with pg_stat_statements
 * (track_planning on), 600 starts one at a time through a dex server on a
 * loaded 2-core machine: the single row 0.25 ms execution, planned 0-2 times
 * in 600; unnest of one row 0.30-0.38 ms execution plus 0.70 ms planning at
 * every call; Postgres CPU per start 0.83-0.90 ms against 1.63-1.80 ms. Batches
 * (200 starts in flight) average about 195 runs a statement, 14-21 ms each,
 * 1 ms of it planning. server/test/start-paths.differential.test.ts runs every
 * case through both shapes.
 */
export async function insertRuns(sql: Queryable, runs: readonly NewRun[]): Promise<InsertRunOutcome[]> {
  if (runs.length === 0) return [];
  const starts = runs.length === 1 ? oneRow(sql, runs[0]!) : unnestRows(sql, runs);
  const rows = await sql<StartRow[]>`
    with starts as materialized (${starts}),
    checked as materialized (
      select s.*, q.queue_exists, same.id as same_request_id, latest.id as latest_id, latest.status as latest_status,
             q.queue_exists and same.id is null and (
               s.reuse_policy = 'allow'
               or latest.id is null
               or latest.status in ${openStatuses(sql)}
               or (s.reuse_policy = 'allow_if_failed' and latest.status in ${unsuccessfulStatuses(sql)})
             ) as ok,
             -- continue-as-new keeps the run timeout (afresh) and the workflow task timeout of the run it continues.
             coalesce(s.run_timeout_ms, prev.run_timeout_ms) as effective_run_timeout_ms,
             coalesce(s.workflow_task_timeout_ms, prev.workflow_task_timeout_ms) as effective_workflow_task_timeout_ms
      from starts s
      cross join lateral (
        select exists (select 1 from dex.task_queues where type = 'workflow' and name = s.task_queue) as queue_exists
      ) q
      left join lateral (
        select r.id from dex.runs r
        where s.request_id <> '' and r.instance_id = s.instance_id and r.request_id = s.request_id
        order by r.id desc limit 1
      ) same on true
      left join lateral (
        select r.id, r.status from dex.runs r where r.instance_id = s.instance_id order by r.id desc limit 1
      ) latest on true
      left join lateral (
        select r.run_timeout_ms, r.workflow_task_timeout_ms from dex.runs r where r.id = s.continued_from_run_id
      ) prev on true
    ), inserted as (
      insert into dex.runs (id, instance_id, workflow_name, task_queue, status, priority, labels,
                            concurrency_key, concurrency_limit, concurrency_waiting, request_id, input,
                            history_length, history_size, parent_run_id, parent_seq, parent_close_policy,
                            continued_from_run_id, run_timeout_ms, run_deadline, workflow_task_timeout_ms,
                            trace_context)
      select id, instance_id, workflow_name, task_queue, 'CREATED', priority, labels,
             concurrency_key, concurrency_limit, concurrency_waiting, nullif(request_id, ''), input,
             1, octet_length(started_event), parent_run_id, parent_seq, parent_close_policy,
             continued_from_run_id, effective_run_timeout_ms, now() + effective_run_timeout_ms * interval '1 millisecond',
             effective_workflow_task_timeout_ms, trace_context
      from checked where ok
      order by instance_id, ord
      on conflict (instance_id) where status in ${openStatuses(sql)} do nothing
      returning id, created_at, run_deadline
    ), run_timeout as (
      -- The run timeout is a timer (seq 0, kind 'run_timeout', no event: firing it ends the run, engine/run-timeouts.ts).
      insert into dex.timers (run_id, seq, kind, fire_at, workflow_queue, priority, event)
      select n.id, 0, 'run_timeout', n.run_deadline, c.task_queue, c.priority, ''::bytea
      from inserted n join checked c on c.id = n.id
      where n.run_deadline is not null
    ), started as (
      insert into dex.history_events (run_id, sequence, kind, event, created_at)
      select n.id, 1, 'run_started', c.started_event, n.created_at from inserted n join checked c on c.id = n.id
    ), task as (
      insert into dex.workflow_tasks (queue_name, run_id, priority, visible_at, created_at)
      select c.task_queue, n.id, c.priority, n.created_at, n.created_at from inserted n join checked c on c.id = n.id
      where not c.concurrency_waiting
    )
    select c.ord::int as ord, n.id is not null as started, c.queue_exists, c.same_request_id, c.latest_id,
           c.latest_status, c.ok
    from checked c left join inserted n on n.id = c.id`;
  const outcomes: Array<InsertRunOutcome | undefined> = runs.map(() => undefined);
  for (const row of rows) outcomes[row.ord - 1] = outcomeOf(row, runs[row.ord - 1]!);
  return outcomes.map((outcome, i) => {
    if (!outcome) throw new Error(`insertRuns: no row for run ${i + 1} of ${runs.length}`);
    return outcome;
  });
}

/** insertRuns for one run. */
export async function insertRun(sql: Queryable, run: NewRun): Promise<InsertRunOutcome> {
  const [outcome] = await insertRuns(sql, [run]);
  return outcome!;
}

interface StartRow {
  ord: number;
  started: boolean;
  queue_exists: boolean;
  same_request_id: string | null;
  latest_id: string | null;
  latest_status: string | null;
  ok: boolean;
}

/** One answer, the same for both shapes: the checks in the order a caller reports them. */
function outcomeOf(row: StartRow, run: NewRun): InsertRunOutcome {
  if (row.started) return { outcome: "started", runId: run.id };
  if (!row.queue_exists) return { outcome: "queue_missing" };
  if (row.same_request_id) return { outcome: "same_request", runId: row.same_request_id };
  if (!row.ok) return { outcome: "reuse_rejected", latestRunId: row.latest_id!, latestStatus: row.latest_status! };
  return { outcome: "open_run_exists" };
}

type ColumnValue = string | number | boolean | Uint8Array | null;

/**
 * The start statement's input relation, column by column: both shapes are
 * generated from this list, so they cannot disagree on a column.
 */
const INPUT_COLUMNS: ReadonlyArray<{ name: string; type: "uuid" | "text" | "int" | "int8" | "bool" | "bytea" | "jsonb"; of(run: NewRun): ColumnValue }> = [
  { name: "id", type: "uuid", of: (r) => r.id },
  { name: "instance_id", type: "text", of: (r) => r.instanceId },
  { name: "workflow_name", type: "text", of: (r) => r.workflowName },
  { name: "task_queue", type: "text", of: (r) => r.taskQueue },
  { name: "priority", type: "int", of: (r) => r.priority },
  { name: "labels", type: "jsonb", of: (r) => JSON.stringify(r.labels) },
  { name: "request_id", type: "text", of: (r) => r.requestId },
  { name: "reuse_policy", type: "text", of: (r) => r.reusePolicy },
  { name: "input", type: "bytea", of: (r) => r.input },
  { name: "started_event", type: "bytea", of: (r) => r.startedEvent },
  { name: "concurrency_key", type: "text", of: (r) => r.concurrencyKey },
  { name: "concurrency_limit", type: "int", of: (r) => r.concurrencyLimit },
  { name: "concurrency_waiting", type: "bool", of: (r) => r.concurrencyWaiting },
  { name: "parent_run_id", type: "uuid", of: (r) => r.parent?.runId ?? null },
  { name: "parent_seq", type: "int", of: (r) => r.parent?.seq ?? null },
  { name: "parent_close_policy", type: "text", of: (r) => r.parent?.closePolicy ?? null },
  { name: "continued_from_run_id", type: "uuid", of: (r) => r.continuedFromRunId ?? null },
  { name: "run_timeout_ms", type: "int8", of: (r) => r.runTimeoutMs ?? null },
  { name: "workflow_task_timeout_ms", type: "int", of: (r) => r.workflowTaskTimeoutMs ?? null },
  { name: "trace_context", type: "jsonb", of: (r) => (r.traceContext ? JSON.stringify(r.traceContext) : null) },
];

type Fragment = postgres.PendingQuery<postgres.Row[]>;

function commaSeparated(sql: Queryable, parts: Fragment[]): Fragment {
  return parts.reduce((all, part) => sql`${all}, ${part}`);
}

/** One run: `select 1 as ord, $1::uuid as id, ...`. */
function oneRow(sql: Queryable, run: NewRun): Fragment {
  const columns = INPUT_COLUMNS.map(({ name, type, of }) => {
    const value = of(run);
    const as = sql.unsafe(name);
    if (type === "bytea") return sql`${bytes(value as Uint8Array | null)}::bytea as ${as}`;
    if (type === "jsonb") return sql`${value as string}::text::jsonb as ${as}`;
    return sql`${value as string | number | boolean | null}::${sql.unsafe(type)} as ${as}`;
  });
  return sql`select 1::int8 as ord, ${commaSeparated(sql, columns)}`;
}

/**
 * Several runs: `select ... from unnest($1::text[], ...) with ordinality`. Every column travels
 * as text and is cast back (bytea as base64: postgres.js cannot send an array of Buffers, nor
 * type an array of booleans), one rule for all of them.
 */
function unnestRows(sql: Queryable, runs: readonly NewRun[]): Fragment {
  const arrays = INPUT_COLUMNS.map(({ type, of }) => {
    const values = runs.map(of);
    if (type === "bytea") return sql`${base64Array(values as Array<Uint8Array | null>)}::text[]`;
    return sql`${values.map((v) => (v === null ? null : typeof v === "boolean" ? (v ? "t" : "f") : String(v)))}::text[]`;
  });
  const columns = INPUT_COLUMNS.map(({ name, type }) => {
    const as = sql.unsafe(name);
    if (type === "bytea") return sql`decode(u.${as}, 'base64') as ${as}`;
    return sql`u.${as}::${sql.unsafe(type)} as ${as}`;
  });
  const names = sql.unsafe(INPUT_COLUMNS.map((c) => c.name).join(", "));
  return sql`
    select u.ord, ${commaSeparated(sql, columns)}
    from unnest(${commaSeparated(sql, arrays)}) with ordinality as u(${names}, ord)`;
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
