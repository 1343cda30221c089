/**
 * The SQL of updates (UpdateRun; docs/decisions/0024-updates.md). An update
 * is an inbox row (`update_accepted`, dedup key `update:<id>`) until a
 * workflow task's completion either moves it into history (accepted) or
 * deletes it and keeps its rejection in dex.update_rejections (rejected).
 * Its outcome is the `update_completed` history event (dedup key
 * `update-completed:<id>`), so every read here is an index probe on
 * history_events_dedup, the inbox's (run_id, dedup_key) index, or the
 * rejections' primary key.
 */
import { bytes, base64Array, type Queryable } from "./db.js";
import { insertTaskUnlessQueued } from "./lifecycle.js";

/**
 * Puts the update request in the locked, open run's inbox unless its dedup
 * key is in the inbox or history already, and gives the run a workflow task
 * unless it has one (or waits for its concurrency key's slot), in ONE
 * statement: the shape of insertExternalEvent. A rejected update id is not
 * asked again: its rejection stands.
 */
export async function insertUpdateRequest(
  tx: Queryable,
  run: { id: string; taskQueue: string; priority: number; concurrencyWaiting: boolean },
  input: { event: Uint8Array; dedupKey: string; updateId: string },
): Promise<{ inserted: boolean; taskCreated: boolean }> {
  const [row] = await tx<{ inserted: boolean; task_created: boolean }[]>`
    with inboxed as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select ${run.id}, 'update_accepted', ${bytes(input.event)}, ${input.dedupKey}
      where not exists (select 1 from dex.history_events where run_id = ${run.id} and dedup_key = ${input.dedupKey})
        and not exists (select 1 from dex.update_rejections where run_id = ${run.id} and update_id = ${input.updateId})
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
      returning id
    ), task as (${insertTaskUnlessQueued(tx, run, tx`not ${run.concurrencyWaiting} and exists (select 1 from inboxed)`)})
    select exists (select 1 from inboxed) as inserted, exists (select 1 from task) as task_created`;
  return { inserted: row?.inserted ?? false, taskCreated: row?.task_created ?? false };
}

/** What is known of one update's outcome: its `update_completed` event, or its rejection. */
export interface UpdateState {
  /** The `update_completed` HistoryEvent's bytes, once the handler settled. */
  completed: Uint8Array | null;
  /** The rejection's Failure bytes, if the worker rejected it. */
  rejection: Uint8Array | null;
}

/** One statement, two index probes (history_events_dedup, the rejections' primary key). */
export async function readUpdateState(
  sql: Queryable,
  runId: string,
  keys: { completed: string; updateId: string },
): Promise<UpdateState> {
  const [row] = await sql<{ completed: Buffer | null; rejection: Buffer | null }[]>`
    select (select event from dex.history_events where run_id = ${runId} and dedup_key = ${keys.completed}) as completed,
           (select failure from dex.update_rejections where run_id = ${runId} and update_id = ${keys.updateId}) as rejection`;
  return { completed: row?.completed ?? null, rejection: row?.rejection ?? null };
}

/**
 * A completion's rejected updates, in ONE statement: deletes their inbox rows
 * among those handed out with the task (`handedOut`) and keeps each
 * rejection. Returns the inbox ids deleted, by dedup key; a rejection whose
 * row is not among them is not recorded (the caller refuses the completion,
 * and the rollback undoes the rest).
 */
export async function removeRejectedUpdates(
  tx: Queryable,
  runId: string,
  handedOut: readonly number[],
  rejections: ReadonlyArray<{ updateId: string; dedupKey: string; failure: Uint8Array }>,
): Promise<Map<string, number>> {
  const rows = await tx<{ id: string; dedup_key: string }[]>`
    with gone as (
      delete from dex.inbox
      where run_id = ${runId} and id = any(${handedOut as number[]}::bigint[])
        and dedup_key = any(${rejections.map((r) => r.dedupKey)}::text[])
      returning id, dedup_key
    ), kept as (
      insert into dex.update_rejections (run_id, update_id, failure)
      select ${runId}, u.update_id, decode(u.failure, 'base64')
      from unnest(${rejections.map((r) => r.updateId)}::text[], ${rejections.map((r) => r.dedupKey)}::text[],
                  ${base64Array(rejections.map((r) => r.failure))}::text[]) as u(update_id, dedup_key, failure)
      join gone g on g.dedup_key = u.dedup_key
      on conflict (run_id, update_id) do nothing
    )
    select id::text, dedup_key from gone`;
  return new Map(rows.map((r) => [r.dedup_key, Number(r.id)]));
}

/**
 * For complete_update's check: whether each update was accepted (in
 * history, or handed out with this task) and whether it was completed before.
 */
export async function acceptedUpdates(
  tx: Queryable,
  runId: string,
  handedOut: readonly number[],
  updates: ReadonlyArray<{ id: string; requested: string; completed: string }>,
): Promise<Array<{ update_id: string; accepted: boolean; completed: boolean }>> {
  return tx<{ update_id: string; accepted: boolean; completed: boolean }[]>`
    select u.update_id,
           exists (select 1 from dex.history_events h where h.run_id = ${runId} and h.dedup_key = u.requested)
             or exists (select 1 from dex.inbox i where i.run_id = ${runId} and i.dedup_key = u.requested
                        and i.id = any(${handedOut as number[]}::bigint[])) as accepted,
           exists (select 1 from dex.history_events h where h.run_id = ${runId} and h.dedup_key = u.completed) as completed
    from unnest(${updates.map((u) => u.id)}::text[], ${updates.map((u) => u.requested)}::text[],
                ${updates.map((u) => u.completed)}::text[]) as u(update_id, requested, completed)`;
}
