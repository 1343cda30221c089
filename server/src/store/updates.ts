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
import type postgres from "postgres";
import { DedupKind, dedupKey, RunStatus } from "../engine/model.js";
import { bytes, base64Array, type Queryable } from "./db.js";
import { insertTaskUnlessQueued } from "./lifecycle.js";
import { openStatuses } from "./vocabulary.js";

/** The chain of a run (migration 0009): the chain's first run, which has no row of its own. */
function chainOf(sql: Queryable, runId: string | postgres.Fragment) {
  return sql`coalesce((select chain_id from dex.run_chains where run_id = ${runId}), ${runId}::uuid)`;
}

/**
 * Whether a claim names a run that does not hold its update and never will:
 * the run is gone (a server before 0016 deleted it by retention and left its
 * claims), or it continued as new with the update in neither its history nor
 * its rejections (a server before 0016 ran the continue-as-new and dropped
 * the update waiting in its inbox, not knowing the claim). A server with 0016
 * never leaves either: its retention deletes a run's claims with the run, and
 * its continue-as-new re-points the claims of the updates it moves, in the
 * transaction that ends the run; an update handed out with that task is in
 * the old history or rejections, or, when the code never saw it, moved with
 * the unseen inputs (its claim re-pointed). Such a claim counts as none (docs/upgrades.md,
 * 0016). `claimRun`: the SQL expression of the claim's run_id. Three probes
 * (runs, history_events_dedup and the rejections' primary keys).
 */
function staleClaim(sql: Queryable, claimRun: postgres.Fragment, updateId: string) {
  return sql`(
    not exists (select 1 from dex.runs r where r.id = ${claimRun})
    or exists (
      select 1 from dex.runs r where r.id = ${claimRun} and r.status = ${RunStatus.CONTINUED_AS_NEW}
        and not exists (select 1 from dex.history_events h
                        where h.run_id = ${claimRun} and h.dedup_key = ${dedupKey(DedupKind.UPDATE, updateId)})
        and not exists (select 1 from dex.update_rejections x where x.run_id = ${claimRun} and x.update_id = ${updateId})))`;
}

/**
 * The claim of this update id by `runId`'s continue-as-new chain
 * (dex.update_ids, migration 0016): the run that holds the update (its inbox
 * row, its history events or its rejection), and whether that still holds
 * (`live`; see staleClaim). Null when no run of the chain claimed it.
 */
export async function updateClaim(sql: Queryable, runId: string, updateId: string): Promise<{ runId: string; live: boolean } | null> {
  const [row] = await sql<{ run_id: string; stale: boolean }[]>`
    select c.run_id, ${staleClaim(sql, sql`c.run_id`, updateId)} as stale
    from dex.update_ids c where c.chain_id = ${chainOf(sql, runId)} and c.update_id = ${updateId}`;
  return row ? { runId: row.run_id, live: !row.stale } : null;
}

/**
 * The open run of `runId`'s continue-as-new chain (the instance's open run,
 * if it is of that chain), where an update whose claim went stale is asked
 * again. The open-run index, then two run_chains primary-key probes.
 */
export async function openRunOfChain(sql: Queryable, runId: string): Promise<string | null> {
  const [row] = await sql<{ id: string }[]>`
    select o.id from dex.runs r
    join dex.runs o on o.instance_id = r.instance_id and o.status in ${openStatuses(sql)}
    where r.id = ${runId} and ${chainOf(sql, sql`o.id`)} = ${chainOf(sql, runId)}`;
  return row?.id ?? null;
}

/**
 * Claims the update id for the locked, open run's chain (dex.update_ids) and,
 * if the claim is new, puts the request in the run's inbox unless its dedup
 * key is in the inbox or history already (runs that took it before the claims
 * existed), and gives the run a workflow task unless it has one (or waits for
 * its concurrency key's slot), in ONE statement: the shape of
 * insertExternalEvent. A stale claim (staleClaim: left by a server before
 * 0016) is taken over as if there were none. The claim cannot race: every
 * claim of a chain holds its open run's lock, continue-as-new holds the old
 * run's lock while it starts the next run, and a stale claim's run has ended
 * or is gone, so nothing changes what makes it stale. A rejected update id is
 * not asked again: its claim (and its rejection) stand. `home`: the run that
 * holds the update, this one or the run of the chain that claimed it first.
 */
export async function insertUpdateRequest(
  tx: Queryable,
  run: { id: string; taskQueue: string; priority: number; concurrencyWaiting: boolean },
  input: { event: Uint8Array; dedupKey: string; updateId: string },
): Promise<{ inserted: boolean; taskCreated: boolean; home: string }> {
  const [row] = await tx<{ inserted: boolean; task_created: boolean; home: string }[]>`
    with claimed as (
      insert into dex.update_ids as c (chain_id, update_id, run_id)
      values (${chainOf(tx, run.id)}, ${input.updateId}, ${run.id})
      on conflict (chain_id, update_id) do update set run_id = excluded.run_id, created_at = now()
        where ${staleClaim(tx, tx`c.run_id`, input.updateId)}
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

/**
 * continue-as-new's undelivered updates (ContinueAsNewCommand.undelivered_update_ids):
 * the inbox ids, by dedup key, of the `update_accepted` rows among those handed
 * out with the task (`handedOut`) that have these dedup keys. The caller holds
 * the run lock and took the task, so these rows cannot change meanwhile; one
 * probe of the inbox's (run_id, dedup_key) index per key.
 */
export async function handedOutUpdates(
  tx: Queryable,
  runId: string,
  handedOut: readonly number[],
  dedupKeys: readonly string[],
): Promise<Map<string, number>> {
  const rows = await tx<{ id: string; dedup_key: string }[]>`
    select id::text, dedup_key from dex.inbox
    where run_id = ${runId} and dedup_key = any(${dedupKeys as string[]}::text[]) and kind = 'update_accepted'
      and id = any(${handedOut as number[]}::bigint[])`;
  return new Map(rows.map((r) => [r.dedup_key, Number(r.id)]));
}
