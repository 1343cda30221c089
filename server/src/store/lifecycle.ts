/**
 * Run lifecycle SQL beyond the workflow task: cancellation requests, external
 * events, termination, child lookups and continue-as-new's hand-over of
 * undelivered inputs.
 *
 * Lock order (extends the one in workflow-tasks.ts): when a transaction touches
 * two runs, the ANCESTOR's row is locked before the descendant's. A child that
 * ends reads its (immutable) parent_run_id first and locks the parent, then
 * itself; a parent that ends locks itself, then its open children. Runs are
 * a forest, so no two transactions can wait on each other in a cycle. Within
 * one run: run row, then task rows, then inbox rows.
 *
 * One writer breaks that order on purpose: the workflow task claim
 * (workflow-tasks.ts) locks a task row and then updates its run row while the
 * run is CREATED. A transaction that holds a CREATED run's row lock must
 * therefore never WAIT for that run's task row, or it deadlocks with a claim
 * in flight. Two rules here keep that true:
 * - creating a run's workflow task checks NOT EXISTS with a plain read before
 *   inserting (insertTaskUnlessQueued). While we hold the run lock nobody else
 *   can create or delete the task row (every such writer holds the run lock),
 *   so the read is exact, and a plain read never waits for the claim's lock,
 *   whereas INSERT .. ON CONFLICT would wait for the claiming transaction;
 * - TerminateRun, which must delete the task row, takes its lock NOWAIT
 *   (lockWorkflowTaskNoWait) and retries the whole transaction after the
 *   claim has finished (isLockNotAvailable).
 *
 * Concurrency keys add one lock, a transaction-scoped advisory lock per key,
 * taken either after all row locks (the slot hand-over ending a transaction)
 * or before any (a client call about a run waiting in its key's line);
 * engine/concurrency-keys.ts shows why that cannot deadlock. A waiting run has
 * no workflow task and must not get one here: it gets it with its slot.
 */
import type postgres from "postgres";
import { base64Array, bytes, type Queryable } from "./db.js";
import { dedupPrefixSql, openStatuses } from "./vocabulary.js";
import { DedupKind, dedupKey, dedupSeq } from "../engine/model.js";
import { pgCode } from "./errors.js";

/** The run's parent, read without a lock: parent_run_id never changes once the run exists. */
export async function parentOf(sql: Queryable, runId: string): Promise<string | null> {
  const [row] = await sql<{ parent_run_id: string | null }[]>`select parent_run_id from dex.runs where id = ${runId}`;
  return row?.parent_run_id ?? null;
}

/** A run id for a selector: the id itself, or the instance's open run (else its newest). */
export async function resolveRunId(
  sql: Queryable,
  selector: { runId: string } | { instanceId: string },
): Promise<string | undefined> {
  if ("runId" in selector) return selector.runId;
  const [row] = await sql<{ id: string }[]>`
    select id from dex.runs where instance_id = ${selector.instanceId}
    order by (status in ${openStatuses(sql)}) desc, id desc limit 1`;
  return row?.id;
}

export type CancelTarget =
  | { runIds: string[] }
  /** The open children of a parent under the CANCEL parent-close policy (the parent ended). */
  | { closingParent: string }
  /** The open run of the chain a parent started with `start_child_run` seq (request_cancel_child_run). */
  | { parent: string; seqs: number[] };

/**
 * Requests cancellation of open runs in ONE statement: marks each run
 * (cancel_requested_at), puts `cancel_requested` in its inbox (dedup
 * 'cancel-requested': once per run) and gives it a workflow task. Runs
 * already asked are left alone. Locks the target runs (after the caller's
 * own run: ancestor first). Returns the ids marked now and the queues that
 * got tasks.
 */
export async function requestCancellation(
  tx: Queryable,
  target: CancelTarget,
  input: { reason: string; event: Uint8Array },
): Promise<{ marked: string[]; queues: string[] }> {
  const where =
    "runIds" in target
      ? tx`id = any(${target.runIds}::uuid[])`
      : "closingParent" in target
        ? tx`parent_run_id = ${target.closingParent} and coalesce(parent_close_policy, 'cancel') = 'cancel'`
        : tx`parent_run_id = ${target.parent} and parent_seq = any(${target.seqs}::int[])`;
  const [row] = await tx<{ marked: string[]; queues: string[] }[]>`
    with target as (
      select id, task_queue, priority, concurrency_waiting from dex.runs
      where ${where} and status in ${openStatuses(tx)} and cancel_requested_at is null
      order by id
      for no key update
    ), marked as (
      update dex.runs r set cancel_requested_at = now(), cancel_reason = ${input.reason}
      from target t where r.id = t.id
      returning r.id
    ), inboxed as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select id, 'cancel_requested', ${bytes(input.event)}, 'cancel-requested' from target
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
    ), tasks as (
      -- NOT EXISTS first, ON CONFLICT only as a backstop: see insertTaskUnlessQueued.
      -- A run waiting for its concurrency key gets its task with its slot (no
      -- caller sends one here today: only CancelRun reaches waiting runs, and
      -- it ends them at once; children, the other targets, carry no key).
      insert into dex.workflow_tasks (queue_name, run_id, priority)
      select t.task_queue, t.id, t.priority from target t
      where not t.concurrency_waiting
        and not exists (select 1 from dex.workflow_tasks w where w.queue_name = t.task_queue and w.run_id = t.id)
      on conflict do nothing
      returning queue_name
    )
    select (select coalesce(array_agg(id), '{}') from marked) as marked,
           (select coalesce(array_agg(distinct queue_name), '{}') from tasks) as queues`;
  return { marked: row?.marked ?? [], queues: row?.queues ?? [] };
}

/**
 * Ends a run at once (TerminateRun) in ONE statement: its workflow task (any
 * lease: the holder's completion then answers NOT_FOUND), activity tasks,
 * inbox rows and timers are deleted, `run_terminated` is appended outside any
 * block, and the run is TERMINATED (a run waiting for its concurrency key
 * leaves the line). The caller holds the run lock.
 */
export async function terminateRunRows(
  tx: Queryable,
  run: { id: string; taskQueue: string; historyLength: number },
  input: {
    event: Uint8Array;
    failure: Uint8Array;
    /** A run timeout (engine/run-timeouts.ts) ends the run TIMED_OUT with `run_timed_out`; default TERMINATED, `run_terminated`. */
    ending?: { status: "TIMED_OUT"; eventKind: "run_timed_out" };
  },
): Promise<void> {
  const status = input.ending?.status ?? "TERMINATED";
  const eventKind = input.ending?.eventKind ?? "run_terminated";
  await tx`
    with dropped_task as (
      delete from dex.workflow_tasks where queue_name = ${run.taskQueue} and run_id = ${run.id}
    ), dropped_activities as (
      delete from dex.activity_tasks where run_id = ${run.id}
    ), dropped_inbox as (
      delete from dex.inbox where run_id = ${run.id}
    ), dropped_timers as (
      delete from dex.timers where run_id = ${run.id}
    ), appended as (
      insert into dex.history_events (run_id, sequence, kind, event)
      values (${run.id}, ${run.historyLength + 1}, ${eventKind}, ${bytes(input.event)})
    )
    update dex.runs set status = ${status}, concurrency_waiting = false, failure = ${bytes(input.failure)}, ended_at = now(),
                        history_length = ${run.historyLength + 1},
                        history_size = history_size + ${input.event.byteLength}, sticky_worker_id = null
    where id = ${run.id}`;
}

/**
 * request_cancel_activity in ONE statement: a task not leased is deleted at
 * once (no outcome will follow); a leased one is marked, so its heartbeats
 * answer cancel_requested and its attempt is not retried. Each row is in one
 * CTE or the other, never both (leased_until decides, in the same snapshot).
 */
export async function cancelActivities(tx: Queryable, runId: string, seqs: number[]): Promise<void> {
  if (seqs.length === 0) return;
  await tx`
    with deleted as (
      delete from dex.activity_tasks
      where run_id = ${runId} and seq = any(${seqs}::int[]) and leased_until is null
    )
    update dex.activity_tasks set cancel_requested = true
    where run_id = ${runId} and seq = any(${seqs}::int[]) and leased_until is not null`;
}

/**
 * continue-as-new, in ONE statement: the new run joins the old run's chain
 * (dex.run_chains, so the chain's event and update ids stay claimed), and its
 * inbox gets, in this order, the events the old run's code received but did
 * not consume (`carried`, from the continue_as_new command), a cancellation
 * request handed out with this task that the code was not told of
 * (`carryHandedOutCancel`, decision 0031), then the inputs a caller was
 * promised delivery of that arrived after the last task was handed out,
 * unseen by the old run: external events, updates (their chain claims now
 * name the new run, so UpdateRun finds them there) and the cancellation
 * request (CancelRun, a parent's request_cancel_child_run or parent-close
 * policy); an update handed out with the task whose code never saw it
 * (ContinueAsNewCommand.undelivered_update_ids) counts as one of them: the
 * caller leaves it out of `handedOut`. Those are re-inserted (delete + insert, keeping their time) rather
 * than re-pointed, so their inbox ids, which order delivery, follow the
 * carried events'. A row handed out with the task (`handedOut`) is the old
 * run's: the completion moves it into the old history in the same
 * transaction, before or after this statement (so a handed-out cancellation
 * is read from either place, and copied), and the exclusion keeps that true
 * whatever the statement order. Everything else in the old inbox (results of
 * the old run's own commands) is dropped when the old run ends. The new run's
 * row need not exist yet (no table here has a foreign key to it); the caller
 * holds the old run's lock, and every writer of these kinds takes it, so no
 * row of these kinds can arrive in between.
 */
export async function handOverInbox(
  tx: Queryable,
  input: {
    fromRunId: string;
    toRunId: string;
    handedOut: readonly number[];
    carried: ReadonlyArray<{ event: Uint8Array; eventId: string }>;
    /** The old run's history length before this task's block: a handed-out row moved into history is after it. */
    afterSequence: number;
    carryHandedOutCancel: boolean;
  },
): Promise<void> {
  const { carried } = input;
  await tx`
    with chain as (
      select coalesce((select chain_id from dex.run_chains where run_id = ${input.fromRunId}), ${input.fromRunId}::uuid) as id
    ), chained as (
      insert into dex.run_chains (run_id, chain_id) select ${input.toRunId}, id from chain
    ), moved as (
      delete from dex.inbox
      where run_id = ${input.fromRunId} and kind in ('external_event_received', 'update_accepted', 'cancel_requested')
        and id <> all(${input.handedOut as number[]}::bigint[])
      returning id, kind, event, dedup_key, created_at
    ), reclaimed as (
      -- Upsert, not update: an update taken before its chain's claims existed (migration 0016) gets one here.
      insert into dex.update_ids (chain_id, update_id, run_id)
      select chain.id, substr(m.dedup_key, length(${dedupPrefixSql(tx, DedupKind.UPDATE)}) + 1), ${input.toRunId}
      from moved m, chain where m.kind = 'update_accepted'
      on conflict (chain_id, update_id) do update set run_id = excluded.run_id
    ), late_cancel as (
      select event, created_at from (
        select event, created_at from dex.inbox
        where run_id = ${input.fromRunId} and kind = 'cancel_requested' and id = any(${input.handedOut as number[]}::bigint[])
        union all
        select event, created_at from dex.history_events
        where run_id = ${input.fromRunId} and kind = 'cancel_requested' and sequence > ${input.afterSequence}
      ) c
      where ${input.carryHandedOutCancel}
      limit 1
    ), handed as (
      select 0 as part, u.ord as ord, 'external_event_received' as kind, decode(u.event, 'base64') as event,
             ${dedupPrefixSql(tx, DedupKind.EVENT)} || u.event_id as dedup_key, now() as created_at
      from unnest(${base64Array(carried.map((c) => c.event))}::text[], ${carried.map((c) => c.eventId)}::text[])
        with ordinality as u(event, event_id, ord)
      union all
      select 1, 0, 'cancel_requested', l.event, 'cancel-requested', l.created_at from late_cancel l
      union all
      select 2, m.id, m.kind, m.event, m.dedup_key, m.created_at from moved m
    )
    insert into dex.inbox (run_id, kind, event, dedup_key, created_at)
    select ${input.toRunId}, kind, event, dedup_key, created_at from handed order by part, ord`;
}

/**
 * continue-as-new, once the new run exists: a cancellation request that moved
 * into its inbox (handOverInbox) marks it as requested, with
 * the old run's time and reason, so DescribeRun shows it and a second request
 * answers already_requested. The caller holds the old run's lock and inserted
 * the new run in this transaction (nobody else can see or lock it yet).
 */
export async function inheritCancelRequest(tx: Queryable, fromRunId: string, toRunId: string): Promise<boolean> {
  const rows = await tx`
    update dex.runs n set cancel_requested_at = o.cancel_requested_at, cancel_reason = o.cancel_reason
    from dex.runs o
    where n.id = ${toRunId} and o.id = ${fromRunId} and n.cancel_requested_at is null
      and exists (select 1 from dex.inbox i where i.run_id = ${toRunId} and i.kind = 'cancel_requested')
    returning n.id`;
  return rows.length > 0;
}

export interface ChildRunRow {
  id: string;
  parentSeq: number;
  instanceId: string;
  workflowName: string;
  status: string;
}

/** Every run a parent started (all runs of each child's continue-as-new chain), oldest first. */
export async function childRuns(sql: Queryable, parentRunId: string): Promise<ChildRunRow[]> {
  const rows = await sql<{ id: string; parent_seq: number; instance_id: string; workflow_name: string; status: string }[]>`
    select id, parent_seq, instance_id, workflow_name, status from dex.runs
    where parent_run_id = ${parentRunId} order by id`;
  return rows.map((r) => ({
    id: r.id,
    parentSeq: r.parent_seq,
    instanceId: r.instance_id,
    workflowName: r.workflow_name,
    status: r.status,
  }));
}

/** Seq keys already used by the run's history ('seq:<n>'), and by which command event kind. */
export async function usedSeqs(tx: Queryable, runId: string, seqs: number[]): Promise<Map<number, string>> {
  const used = new Map<number, string>();
  if (seqs.length === 0) return used;
  const rows = await tx<{ dedup_key: string; kind: string }[]>`
    select dedup_key, kind from dex.history_events
    where run_id = ${runId} and dedup_key = any(${seqs.map((s) => dedupKey(DedupKind.SEQ, s))}::text[])`;
  for (const row of rows) used.set(dedupSeq(DedupKind.SEQ, row.dedup_key)!, row.kind);
  return used;
}

/**
 * The clause that gives a locked run its workflow task unless it has one. A
 * plain NOT EXISTS read, not only ON CONFLICT: see the header for why waiting
 * on the task row must be avoided. ON CONFLICT stays as a backstop.
 */
export function insertTaskUnlessQueued(tx: Queryable, run: { id: string; taskQueue: string; priority: number }, when: postgres.Fragment): postgres.Fragment {
  return tx`
    insert into dex.workflow_tasks (queue_name, run_id, priority)
    select ${run.taskQueue}, ${run.id}, ${run.priority}
    where ${when}
      and not exists (select 1 from dex.workflow_tasks where queue_name = ${run.taskQueue} and run_id = ${run.id})
    on conflict do nothing
    returning run_id`;
}

/**
 * SendEvent in ONE statement, the caller holding the run lock (so the run is
 * open and nobody appends to its history meanwhile): claims the event id for
 * the run's continue-as-new chain (dex.event_ids; skipped for a generated id,
 * which needs no dedup), puts `external_event_received` in the inbox with
 * dedup key `event:<id>` if the claim succeeded and that key is not already
 * in the inbox (unique index) or in history (runs that received it before
 * the chain table existed), and gives the run a workflow task if it has none.
 * The claim cannot race: every delivery to a chain holds its open run's lock,
 * and continue-as-new holds the old run's lock while it starts the next run
 * (migration 0009).
 * A task in flight picks the row up when it completes (finishWorkflowTask).
 * A run waiting for its concurrency key gets no task: the event waits in its
 * inbox and is handed out with its first task, when it gets a slot.
 */
export async function insertExternalEvent(
  tx: Queryable,
  run: { id: string; taskQueue: string; priority: number; concurrencyWaiting: boolean },
  input: { event: Uint8Array; eventId: string; dedup: boolean },
): Promise<{ duplicate: boolean; taskCreated: boolean }> {
  const key = dedupKey(DedupKind.EVENT, input.eventId);
  const [row] = await tx<{ inserted: boolean; task_created: boolean }[]>`
    with claimed as (
      insert into dex.event_ids (chain_id, event_id, run_id)
      select coalesce((select chain_id from dex.run_chains where run_id = ${run.id}), ${run.id}::uuid), ${input.eventId}, ${run.id}
      where ${input.dedup}
      on conflict do nothing
      returning 1
    ), inboxed as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select ${run.id}, 'external_event_received', ${bytes(input.event)}, ${key}
      where (not ${input.dedup} or exists (select 1 from claimed))
        and not exists (select 1 from dex.history_events where run_id = ${run.id} and dedup_key = ${key})
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
      returning id
    ), task as (${insertTaskUnlessQueued(tx, run, tx`not ${run.concurrencyWaiting} and exists (select 1 from inboxed)`)})
    select exists (select 1 from inboxed) as inserted, exists (select 1 from task) as task_created`;
  return { duplicate: !(row?.inserted ?? false), taskCreated: row?.task_created ?? false };
}

/** Whether the run already received this event (inbox or history): an idempotent retry's check on an ended run. */
export async function hasEvent(sql: Queryable, runId: string, dedupKey: string): Promise<boolean> {
  const [row] = await sql<{ found: boolean }[]>`
    select exists (select 1 from dex.history_events where run_id = ${runId} and dedup_key = ${dedupKey})
        or exists (select 1 from dex.inbox where run_id = ${runId} and dedup_key = ${dedupKey}) as found`;
  return row?.found ?? false;
}

/**
 * Locks the run's workflow task row, if it has one, WITHOUT waiting (the
 * caller holds the run lock; see the header). Throws lock_not_available
 * (isLockNotAvailable) when a claim or a failing attempt holds it: the
 * caller rolls back, releasing the run lock the claim may be waiting for,
 * and tries again.
 */
export async function lockWorkflowTaskNoWait(tx: Queryable, run: { id: string; taskQueue: string }): Promise<void> {
  await tx`
    select 1 from dex.workflow_tasks where queue_name = ${run.taskQueue} and run_id = ${run.id}
    for no key update nowait`;
}

/** SQLSTATE 55P03: a NOWAIT lock was held by someone else. */
export function isLockNotAvailable(err: unknown): boolean {
  return pgCode(err) === "55P03";
}
