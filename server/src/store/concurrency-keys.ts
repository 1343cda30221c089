/**
 * Concurrency-key SQL: the key's advisory lock, the hand-over of a free slot
 * to the head of the key's line, a waiting run's cancellation, and what
 * describe needs to say why a run waits. The rules, and the lock order that
 * makes them deadlock-free, are in engine/concurrency-keys.ts.
 *
 * A run with a key is in one of three states (migration 0004):
 * - waiting: CREATED, concurrency_waiting, no workflow task;
 * - holding a slot: RUNNING, or CREATED and not waiting (it has its workflow
 *   task and no worker has claimed it yet);
 * - ended: any terminal status; it holds nothing.
 */
import { bytes, type Queryable } from "./db.js";
import { openStatuses } from "./vocabulary.js";

/**
 * Namespace of the keys' advisory locks: the two-int form of
 * pg_advisory_xact_lock(class, hashtext(key)) lives in a key space of its own,
 * apart from the migrator's one-bigint lock. Two keys whose hashes collide
 * share a lock: they are serialised together, which costs throughput, never
 * correctness.
 */
const KEY_LOCK_CLASS = 0x646b6579; // "dkey"

/**
 * Takes the key's transaction-scoped advisory lock (released at commit or
 * rollback; taking it again in the same transaction is free). Every decision
 * that moves a run into or out of a key's slots is made under it, in a
 * statement that starts after it was granted, so that statement's snapshot
 * sees every earlier decision committed.
 */
export async function lockConcurrencyKey(tx: Queryable, key: string): Promise<void> {
  await tx`select pg_advisory_xact_lock(${KEY_LOCK_CLASS}::int, hashtext(${key}))`;
}

/**
 * Whether the run waits in its key's line, read WITHOUT a lock (so a caller
 * can take the key's lock before the run's). Trustworthy when it answers
 * false: concurrency_waiting never becomes true again once cleared. A `true`
 * holds only while the caller holds the key's lock.
 */
export async function waitingFor(sql: Queryable, runId: string): Promise<string | null> {
  const [row] = await sql<{ concurrency_key: string }[]>`
    select concurrency_key from dex.runs where id = ${runId} and concurrency_waiting`;
  return row?.concurrency_key ?? null;
}

export interface Admission {
  /** The run that took the slot, now with its workflow task; undefined if none did. */
  admitted: { runId: string; taskQueue: string } | undefined;
  /** Whether the run behind it in line fits too (call again). */
  nextFits: boolean;
}

/**
 * Hands one free slot of `key` to the head of its line, in ONE statement; the
 * caller holds the key's lock. The head (highest priority, then oldest) takes
 * a slot when fewer runs hold one than ITS OWN limit; a run never overtakes
 * the head, so runs with a smaller limit than the others are not starved.
 * Taking the slot clears concurrency_waiting and creates the workflow task
 * (the run stays CREATED; the claim makes it RUNNING).
 *
 * Locking: the UPDATE locks the head's row. Nobody else holds it for long:
 * a transaction that locks a waiting run took this key's lock first (which we
 * hold), or rolls back at once when it finds the run waiting, or is SendEvent,
 * which only adds to its inbox (engine/concurrency-keys.ts). No workflow task
 * of a waiting run exists, and only its slot gives it one, so the INSERT
 * waits for nobody. The holders count and the line are plain reads;
 * only a transaction holding the key's lock changes them, except claims
 * (CREATED to RUNNING: a holder either way) and continue-as-new (one holder
 * ends as its successor takes the slot, in one commit). A holder that ends
 * concurrently is still counted; its transaction hands its slot over next.
 */
export async function admitHead(tx: Queryable, key: string): Promise<Admission> {
  const [row] = await tx<{ run_id: string | null; task_queue: string | null; next_fits: boolean }[]>`
    with holders as (
      select count(*)::int as n from dex.runs
      where concurrency_key = ${key} and status in ${openStatuses(tx)} and not concurrency_waiting
    ), line as (
      select id, coalesce(concurrency_limit, 1) as lim, row_number() over (order by priority desc, id) as pos
      from (select id, priority, concurrency_limit from dex.runs
            where concurrency_key = ${key} and concurrency_waiting
            order by priority desc, id limit 2) first_two
    ), admitted as (
      update dex.runs r set concurrency_waiting = false
      where r.id = (select id from line where pos = 1 and lim > (select n from holders))
        and r.concurrency_waiting
      returning r.id, r.task_queue, r.priority
    ), task as (
      insert into dex.workflow_tasks (queue_name, run_id, priority)
      select task_queue, id, priority from admitted
      on conflict do nothing -- a backstop only: a waiting run has no task, and nobody else can give it one
      returning run_id
    )
    select (select id from admitted) as run_id, (select task_queue from admitted) as task_queue,
           exists (select 1 from task)
             and exists (select 1 from line where pos = 2 and lim > (select n from holders) + 1) as next_fits`;
  if (!row?.run_id) return { admitted: undefined, nextFits: false };
  return { admitted: { runId: row.run_id, taskQueue: row.task_queue! }, nextFits: row.next_fits };
}

/**
 * Ends a run that waits in its key's line as CANCELLED (CancelRun), in ONE
 * statement. It never ran, so there is nothing for workflow code to clean up
 * and no reason to make it wait for a slot just to end. What was delivered to
 * it stays visible: its inbox rows (external events) move into history in
 * order, followed by `cancel_requested{reason}`; like `run_started`, they are
 * inputs no workflow task consumed; its run timeout timer goes. The caller
 * holds the key's lock and the run's lock. Returns false if the run was not
 * waiting any more.
 */
export async function cancelWaitingRun(
  tx: Queryable,
  run: { id: string; historyLength: number },
  input: { reason: string; event: Uint8Array; failure: Uint8Array },
): Promise<boolean> {
  const rows = await tx`
    with target as (
      select id from dex.runs where id = ${run.id} and concurrency_waiting
    ), moved as (
      delete from dex.inbox where run_id = (select id from target)
      returning id, kind, event, dedup_key, created_at
    ), moved_history as (
      insert into dex.history_events (run_id, sequence, kind, event, dedup_key, created_at)
      select ${run.id}, ${run.historyLength} + row_number() over (order by id), kind, event, dedup_key, created_at
      from moved
      returning octet_length(event) as size
    ), requested as (
      insert into dex.history_events (run_id, sequence, kind, event)
      select ${run.id}, ${run.historyLength} + (select count(*) from moved) + 1, 'cancel_requested', ${bytes(input.event)}
      from target
    ), timers as (
      -- Its only possible timer is the run timeout (it never ran): an ended run keeps no timer.
      delete from dex.timers where run_id = (select id from target)
    )
    update dex.runs set status = 'CANCELLED', concurrency_waiting = false, failure = ${bytes(input.failure)},
                        ended_at = now(), cancel_requested_at = now(), cancel_reason = ${input.reason},
                        history_length = ${run.historyLength} + (select count(*) from moved) + 1,
                        history_size = history_size + coalesce((select sum(size) from moved_history), 0)
                                       + ${input.event.byteLength},
                        sticky_worker_id = null
    where id = (select id from target)
    returning id`;
  return rows.length > 0;
}

/** Why a run waits for its concurrency key, for DescribeRun. */
export interface KeyWaitState {
  key: string;
  /** The waiting run's own limit: it starts when fewer than this many runs hold the key's slots. */
  limit: number;
  /** Runs holding a slot of the key now (RUNNING, or CREATED with their workflow task). */
  holders: number;
  /** Runs ahead of it in the key's line (higher priority, or equal priority and older). */
  ahead: number;
}

/**
 * For a run waiting in its key's line, how the key's slots are taken and its
 * place in line; undefined for any other run. Plain reads on the partial
 * indexes of migration 0004: a consistent snapshot, never a lock.
 */
export async function keyWaitState(sql: Queryable, runId: string): Promise<KeyWaitState | undefined> {
  const [row] = await sql<{ key: string; lim: number; holders: number; ahead: number }[]>`
    select r.concurrency_key as key, coalesce(r.concurrency_limit, 1) as lim,
           (select count(*)::int from dex.runs h
            where h.concurrency_key = r.concurrency_key and h.status in ${openStatuses(sql)}
              and not h.concurrency_waiting) as holders,
           (select count(*)::int from dex.runs w
            where w.concurrency_key = r.concurrency_key and w.concurrency_waiting
              and (w.priority > r.priority or (w.priority = r.priority and w.id < r.id))) as ahead
    from dex.runs r where r.id = ${runId} and r.concurrency_waiting`;
  return row ? { key: row.key, limit: row.lim, holders: row.holders, ahead: row.ahead } : undefined;
}
