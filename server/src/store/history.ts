/** History reads and appends. History is append-only: rows are never updated or deleted. */
import { base64Array, type Queryable } from "./db.js";

export interface StoredEvent {
  sequence: number;
  event: Uint8Array;
  createdAt: Date;
}

export interface NewEvent {
  kind: string;
  event: Uint8Array;
  dedupKey?: string | undefined;
}

/** A page of a run's history after `afterSequence`, in order (primary key range scan). */
export async function readHistory(
  sql: Queryable,
  runId: string,
  afterSequence: number,
  limit: number,
): Promise<StoredEvent[]> {
  const rows = await sql<{ sequence: number; event: Buffer; created_at: Date }[]>`
    select sequence, event, created_at from dex.history_events
    where run_id = ${runId} and sequence > ${afterSequence}
    order by sequence limit ${limit}`;
  return rows.map((r) => ({ sequence: r.sequence, event: r.event, createdAt: r.created_at }));
}

/** Whole histories of several runs in one query (for the workflow tasks of one poll). */
export async function readHistories(sql: Queryable, runIds: string[]): Promise<Map<string, StoredEvent[]>> {
  const byRun = new Map<string, StoredEvent[]>();
  if (runIds.length === 0) return byRun;
  const rows = await sql<{ run_id: string; sequence: number; event: Buffer; created_at: Date }[]>`
    select run_id, sequence, event, created_at from dex.history_events
    where run_id = any(${runIds}::uuid[])
    order by run_id, sequence`;
  for (const r of rows) {
    let list = byRun.get(r.run_id);
    if (!list) byRun.set(r.run_id, (list = []));
    list.push({ sequence: r.sequence, event: r.event, createdAt: r.created_at });
  }
  return byRun;
}

/**
 * Appends one workflow task's block: first the inbox rows it was handed, in id
 * order (deleted from the inbox in the same statement), then `events` (the
 * marker and the command events). Sequences start at `afterSequence + 1` with
 * no gap; the primary key (run_id, sequence) rejects any overlap, and the
 * dedup index rejects a second result for the same activity call.
 * The caller holds the run row lock, so nobody else appends concurrently.
 * Keeps runs.history_size in step. Returns how many inbox rows moved and the bytes appended.
 */
export async function appendBlock(
  tx: Queryable,
  input: { runId: string; afterSequence: number; inboxIds: readonly number[]; events: NewEvent[] },
): Promise<{ moved: number; bytes: number }> {
  const { runId, afterSequence, inboxIds, events } = input;
  const newBytes = events.reduce((sum, e) => sum + e.event.byteLength, 0);
  const [row] = await tx<{ moved: number; moved_bytes: string | null }[]>`
    with moved as (
      delete from dex.inbox where run_id = ${runId} and id = any(${inboxIds as number[]}::bigint[])
      returning id, kind, event, dedup_key, created_at
    ), moved_history as (
      insert into dex.history_events (run_id, sequence, kind, event, dedup_key, created_at)
      select ${runId}, ${afterSequence} + row_number() over (order by id), kind, event, dedup_key, created_at
      from moved
      returning octet_length(event) as size
    ), new_history as (
      insert into dex.history_events (run_id, sequence, kind, event, dedup_key)
      select ${runId}, ${afterSequence + inboxIds.length} + ord, kind, decode(event, 'base64'), dedup_key
      from unnest(${events.map((e) => e.kind)}::text[], ${base64Array(events.map((e) => e.event))}::text[],
                  ${events.map((e) => e.dedupKey ?? null)}::text[]) with ordinality as u(kind, event, dedup_key, ord)
    ), sized as (
      update dex.runs
      set history_size = history_size + coalesce((select sum(size) from moved_history), 0) + ${newBytes}
      where id = ${runId}
    )
    select (select count(*)::int from moved_history) as moved,
           (select sum(size)::text from moved_history) as moved_bytes`;
  return { moved: row?.moved ?? 0, bytes: Number(row?.moved_bytes ?? 0) + newBytes };
}
