/**
 * ResetRun's SQL (engine/reset.ts): the reset chain (dex.run_resets,
 * migration 0012), the copy of the kept history and the re-delivery of
 * external events and updates, with their update-id claims. The new run itself is created by the start statement
 * (store/runs.ts insertRuns); nothing here inserts into dex.runs.
 *
 * Locking: the caller holds the OLD run's row lock (FOR UPDATE, lockRun)
 * for the whole transaction. Every writer of a run's history and inbox takes
 * that lock first (store/lifecycle.ts header), so the old history and inbox
 * read here cannot change until the commit: the copy and the re-delivery are
 * exact, and a concurrent SendEvent to the old run either committed before
 * (its event is re-delivered) or waits and then finds the run ended. The new
 * run's rows are invisible to everyone until the commit, so they need no
 * lock; the open-run unique index decides a race with a concurrent start.
 */
import { DedupKind } from "../engine/model.js";
import type { Queryable } from "./db.js";
import { dedupPrefixSql } from "./vocabulary.js";

/** The reset links of a run, for DescribeRun. */
export interface ResetLinks {
  resetFromRunId: string | null;
  resetReason: string | null;
  /** The newest run this one was reset to. */
  resetToRunId: string | null;
}

export async function readResetLinks(sql: Queryable, runId: string): Promise<ResetLinks> {
  const [row] = await sql<{ from_id: string | null; reason: string | null; to_id: string | null }[]>`
    select (select old_run_id from dex.run_resets where new_run_id = ${runId}) as from_id,
           (select reason from dex.run_resets where new_run_id = ${runId}) as reason,
           (select new_run_id from dex.run_resets where old_run_id = ${runId} order by created_at desc, new_run_id desc limit 1) as to_id`;
  return { resetFromRunId: row?.from_id ?? null, resetReason: row?.reason ?? null, resetToRunId: row?.to_id ?? null };
}

/** An earlier reset of the run with this request id (a retry); the caller holds the old run's lock. */
export async function findResetByRequest(
  sql: Queryable,
  oldRunId: string,
  requestId: string,
): Promise<{ newRunId: string; historyLength: number } | undefined> {
  const [row] = await sql<{ new_run_id: string; first_dropped_sequence: number }[]>`
    select new_run_id, first_dropped_sequence from dex.run_resets where old_run_id = ${oldRunId} and request_id = ${requestId}`;
  return row ? { newRunId: row.new_run_id, historyLength: row.first_dropped_sequence - 1 } : undefined;
}

/**
 * The reset link, and the new run's place in the old run's chain (dex.run_chains,
 * as continue-as-new's handOverInbox does): the event ids the chain claimed stay
 * claimed, so a client's retry of a named event reaches the new run as a duplicate.
 */
export async function insertResetLink(
  tx: Queryable,
  link: { newRunId: string; oldRunId: string; requestId: string; reason: string; keepThrough: number },
): Promise<void> {
  await tx`
    with chained as (
      insert into dex.run_chains (run_id, chain_id)
      values (${link.newRunId}, coalesce((select chain_id from dex.run_chains where run_id = ${link.oldRunId}), ${link.oldRunId}::uuid))
    )
    insert into dex.run_resets (new_run_id, old_run_id, request_id, reason, first_dropped_sequence)
    values (${link.newRunId}, ${link.oldRunId}, ${link.requestId === "" ? null : link.requestId}, ${link.reason},
            ${link.keepThrough + 1})`;
}

/** The timeouts the old run was started with, which the new run keeps (the caller holds its lock). */
export async function readRunTimeouts(
  tx: Queryable,
  runId: string,
): Promise<{ runTimeoutMs: number | null; workflowTaskTimeoutMs: number | null }> {
  const [row] = await tx<{ run_timeout_ms: number | null; workflow_task_timeout_ms: number | null }[]>`
    select run_timeout_ms::float8 as run_timeout_ms, workflow_task_timeout_ms from dex.runs where id = ${runId}`;
  return { runTimeoutMs: row?.run_timeout_ms ?? null, workflowTaskTimeoutMs: row?.workflow_task_timeout_ms ?? null };
}

/**
 * The kept history, events 2..keepThrough, copied row for row (bytes, kind,
 * dedup key, original time) in one INSERT .. SELECT: no event crosses the
 * wire. The new run's run_started (sequence 1) was written by the start
 * statement; history_length and history_size then count the whole history.
 */
export async function copyKeptHistory(
  tx: Queryable,
  input: { oldRunId: string; newRunId: string; keepThrough: number },
): Promise<void> {
  await tx`
    with copied as (
      insert into dex.history_events (run_id, sequence, kind, event, dedup_key, created_at)
      select ${input.newRunId}, sequence, kind, event, dedup_key, created_at from dex.history_events
      where run_id = ${input.oldRunId} and sequence between 2 and ${input.keepThrough}
      order by sequence
      returning octet_length(event) as size
    )
    update dex.runs set history_length = ${input.keepThrough},
                        history_size = history_size + (select coalesce(sum(size), 0) from copied)
    where id = ${input.newRunId}`;
}

/**
 * Re-delivery (reset-reapply), in ONE statement: the external events and
 * updates the old run received after the kept history, those in its history
 * first (in sequence order), then those still in its inbox (in arrival
 * order, unseen or handed out with a task in flight), go to the new run's
 * inbox as they were (bytes, dedup key). Inbox ids are assigned in insert
 * order, and a workflow task hands inbox rows out in id order, so the new run
 * sees them in the order the old one received them. Then every update the new
 * run now holds, those accepted in the kept history (`keptUpdateIds`) and
 * those re-delivered, is claimed for it in the chain (dex.update_ids), as
 * continue-as-new re-points what it moves: a retry through the instance id
 * reaches the new run, which answers it. An upsert: an update taken before
 * the claims existed (migration 0016) gets one. Claims of updates the old run
 * rejected stay with it (it keeps the rejection). Runs before the old run is
 * terminated (which empties its inbox). Returns how many external events
 * were re-delivered (ResetRunResponse.redelivered_events).
 */
export async function redeliverInputs(
  tx: Queryable,
  input: { oldRunId: string; newRunId: string; keepThrough: number; keptUpdateIds: readonly string[] },
): Promise<number> {
  const [row] = await tx<{ events: number }[]>`
    with redelivered as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select ${input.newRunId}, kind, event, dedup_key from (
        select 1 as source, sequence::bigint as position, kind, event, dedup_key from dex.history_events
        where run_id = ${input.oldRunId} and sequence > ${input.keepThrough}
          and kind in ('external_event_received', 'update_accepted')
        union all
        select 2, id, kind, event, dedup_key from dex.inbox
        where run_id = ${input.oldRunId} and kind in ('external_event_received', 'update_accepted')
      ) e
      order by source, position
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
      returning kind, dedup_key
    ), held as (
      select u.id as update_id from unnest(${input.keptUpdateIds as string[]}::text[]) as u(id)
      union
      select substr(r.dedup_key, length(${dedupPrefixSql(tx, DedupKind.UPDATE)}) + 1) from redelivered r
      where r.kind = 'update_accepted'
    ), reclaimed as (
      insert into dex.update_ids (chain_id, update_id, run_id)
      select coalesce((select chain_id from dex.run_chains where run_id = ${input.oldRunId}), ${input.oldRunId}::uuid),
             h.update_id, ${input.newRunId}
      from held h
      -- In id order: two resets of ended runs of one chain (the only claim writers not serialised by
      -- the chain's open run lock) then take the claim rows' locks in the same order, never a deadlock.
      order by h.update_id
      on conflict (chain_id, update_id) do update set run_id = excluded.run_id
    )
    select count(*) filter (where kind = 'external_event_received')::int as events from redelivered`;
  return row?.events ?? 0;
}

/** Activity task queues among `names` that do not exist (an activity to schedule again needs its queue). */
export async function missingActivityQueues(sql: Queryable, names: string[]): Promise<string[]> {
  if (names.length === 0) return [];
  const rows = await sql<{ name: string }[]>`
    select n as name from unnest(${names}::text[]) n
    where not exists (select 1 from dex.task_queues where type = 'activity' and name = n)`;
  return rows.map((r) => r.name);
}
