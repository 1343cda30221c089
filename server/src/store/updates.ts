/**
 * The SQL of updates (UpdateRun; docs/decisions/0024-updates.md). An update
 * is an inbox row (`update_accepted`, dedup key `update:<id>`) until a
 * workflow task's completion either moves it into history (accepted) or
 * deletes it and keeps its rejection in dex.update_rejections (rejected).
 * Its outcome is the `update_completed` history event (dedup key
 * `update-completed:<id>`), so every read here is an index probe on
 * history_events_dedup, the inbox's (run_id, dedup_key) index, or the
 * rejections' primary key. The update id is claimed per continue-as-new
 * chain (dex.update_ids, migration 0016), which also says which run of the
 * chain holds the update.
 */
import { bytes, base64Array, type Queryable } from "./db.js";
import { insertTaskUnlessQueued } from "./lifecycle.js";

/** The chain of a run (migration 0009): the chain's first run, which has no row of its own. */
function chainOf(sql: Queryable, runId: string) {
  return sql`coalesce((select chain_id from dex.run_chains where run_id = ${runId}), ${runId}::uuid)`;
}

/**
 * The run of `runId`'s continue-as-new chain that holds this update id (its
 * inbox row, its history events or its rejection: dex.update_ids, migration
 * 0016), or null when no run of the chain took it. Two primary-key probes.
 */
export async function updateHome(sql: Queryable, runId: string, updateId: string): Promise<string | null> {
  const [row] = await sql<{ run_id: string }[]>`
    select run_id from dex.update_ids where chain_id = ${chainOf(sql, runId)} and update_id = ${updateId}`;
  return row?.run_id ?? null;
}

/**
 * Claims the update id for the locked, open run's chain (dex.update_ids) and,
 * if the claim is new, puts the request in the run's inbox unless its dedup
 * key is in the inbox or history already (runs that took it before the claims
 * existed), and gives the run a workflow task unless it has one (or waits for
 * its concurrency key's slot), in ONE statement: the shape of
 * insertExternalEvent. The claim cannot race: every claim of a chain holds its
 * open run's lock, and continue-as-new holds the old run's lock while it
 * starts the next run. A rejected update id is not asked again: its claim (and
 * its rejection) stand. `home`: the run that holds the update, this one or the
 * run of the chain that claimed it first.
 */
export async function insertUpdateRequest(
  tx: Queryable,
  run: { id: string; taskQueue: string; priority: number; concurrencyWaiting: boolean },
  input: { event: Uint8Array; dedupKey: string; updateId: string },
): Promise<{ inserted: boolean; taskCreated: boolean; home: string }> {
  const [row] = await tx<{ inserted: boolean; task_created: boolean; home: string }[]>`
    with claimed as (
      insert into dex.update_ids (chain_id, update_id, run_id)
      values (${chainOf(tx, run.id)}, ${input.updateId}, ${run.id})
      on conflict do nothing
      returning run_id
    ), inboxed as (
      insert into dex.inbox (run_id, kind, event, dedup_key)
      select ${run.id}, 'update_accepted', ${bytes(input.event)}, ${input.dedupKey}
      where exists (select 1 from claimed)
        and not exists (select 1 from dex.history_events where run_id = ${run.id} and dedup_key = ${input.dedupKey})
        and not exists (select 1 from dex.update_rejections where run_id = ${run.id} and update_id = ${input.updateId})
      on conflict (run_id, dedup_key) where dedup_key is not null do nothing
      returning id
    ), task as (${insertTaskUnlessQueued(tx, run, tx`not ${run.concurrencyWaiting} and exists (select 1 from inboxed)`)})
    select exists (select 1 from inboxed) as inserted, exists (select 1 from task) as task_created,
           coalesce((select run_id from claimed),
                    (select run_id from dex.update_ids where chain_id = ${chainOf(tx, run.id)} and update_id = ${input.updateId}))::text as home`;
  return { inserted: row?.inserted ?? false, taskCreated: row?.task_created ?? false, home: row?.home ?? run.id };
}

/** What is known of one update's outcome: its `update_completed` event, or its rejection. */
export interface UpdateState {
  /** Whether the run accepted it (`update_accepted` in its history). */
  accepted: boolean;
  /** The `update_completed` HistoryEvent's bytes, once the handler settled. */
  completed: Uint8Array | null;
  /** The rejection's Failure bytes, if the worker rejected it. */
  rejection: Uint8Array | null;
}

/** One statement, three index probes (history_events_dedup twice, the rejections' primary key). */
export async function readUpdateState(
  sql: Queryable,
  runId: string,
  keys: { requested: string; completed: string; updateId: string },
): Promise<UpdateState> {
  const [row] = await sql<{ accepted: boolean; completed: Buffer | null; rejection: Buffer | null }[]>`
    select exists (select 1 from dex.history_events where run_id = ${runId} and dedup_key = ${keys.requested}) as accepted,
           (select event from dex.history_events where run_id = ${runId} and dedup_key = ${keys.completed}) as completed,
           (select failure from dex.update_rejections where run_id = ${runId} and update_id = ${keys.updateId}) as rejection`;
  return { accepted: row?.accepted ?? false, completed: row?.completed ?? null, rejection: row?.rejection ?? null };
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
